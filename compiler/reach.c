/* Layers to connect: the smallest k such that after k stacked layers of the
 * pattern every position has heard from every position it may hear from
 * (every earlier one when all heads are causal, every one otherwise). A
 * layer is the union of its heads, and each position keeps its own state
 * (the residual stream), so reach only grows.
 *
 * Exact, by propagation: sources go in batches of 64*W, each position holds
 * a W-word bitset of the batch's sources that reached it, and one layer ORs
 * into position i the bitsets of every key it attends. Contiguous key ranges
 * are ORed through per-64-position prefix/suffix ORs and a sparse table over
 * the 64-position blocks (O(1) per range); strided and short ranges are read
 * directly. Gathered columns, the same set for every row, are one running
 * OR. Cost: batches x layers x (n + ranges) x W words. */
#include "stats.h"

#include <stdlib.h>
#include <string.h>

enum { W = 8, SEG = 64 };

typedef struct bits {
    uint64_t w[W];
} bits;

static void or_into(bits *a, const bits *b)
{
    for (int k = 0; k < W; k++)
        a->w[k] |= b->w[k];
}

typedef struct rrow {
    int64_t start, end, step;
} rrow;

typedef struct reach {
    int64_t n, nseg, levels;
    bits *cur, *next, *pre, *suf, *table; /* table[lvl * nseg + s] */
    /* Ranges of every row (all heads, COLS aside), CSR-style. */
    rrow *ranges;
    int64_t *first; /* ranges of row i: first[i] .. first[i+1]-1 */
    /* The gathered columns of every head, merged: [0] of non-causal heads
     * (heard by every row), [1] of causal heads (heard by later rows). */
    sp_span *cols[2];
    int ncols[2];
    bool all_causal;
} reach;

static void build_index(reach *r)
{
    for (int64_t s = 0; s < r->nseg; s++) {
        int64_t lo = s * SEG, hi = lo + SEG - 1 < r->n - 1 ? lo + SEG - 1 : r->n - 1;
        bits acc = {{0}};
        for (int64_t x = lo; x <= hi; x++) {
            or_into(&acc, &r->cur[x]);
            r->pre[x] = acc;
        }
        memset(&acc, 0, sizeof acc);
        for (int64_t x = hi; x >= lo; x--) {
            or_into(&acc, &r->cur[x]);
            r->suf[x] = acc;
        }
        r->table[s] = acc;
    }
    for (int64_t l = 1; l < r->levels; l++)
        for (int64_t s = 0; s + (1 << l) <= r->nseg; s++) {
            r->table[l * r->nseg + s] = r->table[(l - 1) * r->nseg + s];
            or_into(&r->table[l * r->nseg + s], &r->table[(l - 1) * r->nseg + s + (1 << (l - 1))]);
        }
}

static void or_range(const reach *r, bits *acc, int64_t a, int64_t b, int64_t step)
{
    if (step > 1 || b - a < SEG) {
        for (int64_t x = a; x <= b; x += step)
            or_into(acc, &r->cur[x]);
        return;
    }
    int64_t sa = a / SEG, sb = b / SEG;
    or_into(acc, &r->suf[a]);
    or_into(acc, &r->pre[b]);
    if (sb - sa >= 2) {
        int64_t lo = sa + 1, len = sb - 1 - lo + 1, l = 63 - __builtin_clzll((unsigned long long)len);
        or_into(acc, &r->table[l * r->nseg + lo]);
        or_into(acc, &r->table[l * r->nseg + sb - 1 - (1 << l) + 1]);
    }
}

static bool in_cols(const reach *r, int64_t j)
{
    int lo = 0, hi = r->ncols[1] - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (j < r->cols[1][mid].lo)
            hi = mid - 1;
        else if (j > r->cols[1][mid].hi)
            lo = mid + 1;
        else
            return true;
    }
    return false;
}

/* One layer: next = cur | what every position hears. */
static void step(reach *r)
{
    build_index(r);
    bits all_cols = {{0}}, run = {{0}};
    for (int k = 0; k < r->ncols[0]; k++)
        or_range(r, &all_cols, r->cols[0][k].lo, r->cols[0][k].hi, 1);
    for (int64_t i = 0; i < r->n; i++) {
        bits acc = r->cur[i];
        for (int64_t k = r->first[i]; k < r->first[i + 1]; k++)
            or_range(r, &acc, r->ranges[k].start, r->ranges[k].end, r->ranges[k].step);
        if (r->ncols[1]) {
            if (in_cols(r, i))
                or_into(&run, &r->cur[i]);
            or_into(&acc, &run);
        }
        or_into(&acc, &all_cols);
        r->next[i] = acc;
    }
    bits *t = r->cur;
    r->cur = r->next;
    r->next = t;
}

/* Has every position heard from every source of the batch it should? */
static bool done(const reach *r, int64_t s0, int64_t ns)
{
    for (int64_t i = 0; i < r->n; i++) {
        int64_t upto = r->all_causal ? (i - s0 + 1 < ns ? i - s0 + 1 : ns) : ns;
        for (int64_t s = 0; s < upto; s++)
            if (!(r->cur[i].w[s / 64] >> (s % 64) & 1))
                return false;
    }
    return true;
}

static int cmp_span(const void *x, const void *y)
{
    const sp_span *a = x, *b = y;
    return (a->lo > b->lo) - (a->lo < b->lo);
}

/* Adds a head's columns to the merged, sorted, disjoint list of its kind. */
static int add_cols(reach *r, const sp_cview *cv, bool causal)
{
    int k = causal, n = r->ncols[k] + cv->nspans;
    sp_span *m = realloc(r->cols[k], sizeof *m * (size_t)(n + 1));
    if (!m)
        return -1;
    memcpy(m + r->ncols[k], cv->spans, sizeof *m * (size_t)cv->nspans);
    qsort(m, (size_t)n, sizeof *m, cmp_span);
    int o = 0;
    for (int a = 0; a < n; a++)
        if (o && m[a].lo <= m[o - 1].hi + 1) {
            if (m[a].hi > m[o - 1].hi)
                m[o - 1].hi = m[a].hi;
        } else {
            m[o++] = m[a];
        }
    r->cols[k] = m;
    r->ncols[k] = o;
    return 0;
}

static int gather(reach *r, const sp_plan *p, int64_t heads)
{
    int64_t cap = 4 * r->n + 16, nr = 0;
    r->ranges = malloc(sizeof *r->ranges * (size_t)cap);
    r->first = malloc(sizeof *r->first * (size_t)(r->n + 1));
    sp_view *views = calloc((size_t)heads, sizeof *views);
    int nviews = 0;
    if (!r->ranges || !r->first || !views)
        goto oom;
    r->all_causal = true;
    /* One view per distinct class; per head when random draws differ. */
    for (int64_t h = 0; h < heads; h++) {
        const sp_headplan *hp = sp_plan_head(p, h);
        bool dup = false, rnd = false;
        for (int c = 0; c < hp->ncomps; c++)
            rnd |= hp->comps[c].kind == SP_C_RANDOM;
        for (int k = 0; k < nviews && !rnd; k++)
            dup |= views[k].hp == hp;
        if (dup)
            continue;
        if (sp_view_init(&views[nviews], p, h, r->n))
            goto oom;
        nviews++;
        r->all_causal &= hp->causal;
    }
    for (int k = 0; k < nviews; k++)
        for (int c = 0; c < views[k].hp->ncomps; c++)
            if (views[k].hp->comps[c].kind == SP_C_COLS && add_cols(r, &views[k].c[c], views[k].hp->causal))
                goto oom;
    sp_krange buf[256];
    for (int64_t i = 0; i < r->n; i++) {
        r->first[i] = nr;
        for (int k = 0; k < nviews; k++)
            for (int c = 0; c < views[k].hp->ncomps; c++) {
                if (views[k].hp->comps[c].kind == SP_C_COLS)
                    continue;
                int n = sp_view_ranges(&views[k], c, i, buf, 256);
                if (n < 0 || n > 256)
                    goto oom; /* no other component has that many ranges */
                if (nr + n > cap) {
                    cap = 2 * (nr + n);
                    rrow *g = realloc(r->ranges, sizeof *g * (size_t)cap);
                    if (!g)
                        goto oom;
                    r->ranges = g;
                }
                for (int x = 0; x < n; x++)
                    r->ranges[nr++] = (rrow){buf[x].start, buf[x].end, buf[x].step};
            }
    }
    r->first[r->n] = nr;
    for (int k = 0; k < nviews; k++)
        sp_view_free(&views[k]);
    free(views);
    return 0;
oom:
    for (int k = 0; k < nviews; k++)
        sp_view_free(&views[k]);
    free(views);
    return -1;
}

int64_t sp_layers_to_connect(const sp_plan *p, int64_t n, int64_t heads)
{
    reach r = {.n = n, .nseg = (n + SEG - 1) / SEG};
    r.levels = 1;
    while ((int64_t)1 << r.levels <= r.nseg)
        r.levels++;
    int64_t result = 0;
    r.cur = malloc(sizeof(bits) * (size_t)n);
    r.next = malloc(sizeof(bits) * (size_t)n);
    r.pre = malloc(sizeof(bits) * (size_t)n);
    r.suf = malloc(sizeof(bits) * (size_t)n);
    r.table = malloc(sizeof(bits) * (size_t)(r.levels * r.nseg));
    if (!r.cur || !r.next || !r.pre || !r.suf || !r.table || gather(&r, p, heads)) {
        result = -3;
        goto out;
    }
    for (int64_t s0 = 0; s0 < n && result >= 0; s0 += 64 * W) {
        int64_t ns = n - s0 < 64 * W ? n - s0 : 64 * W;
        memset(r.cur, 0, sizeof(bits) * (size_t)n);
        for (int64_t s = 0; s < ns; s++)
            r.cur[s0 + s].w[s / 64] |= 1ull << (s % 64);
        /* A layer that adds nothing means the rest is never reached. */
        for (int64_t k = 0;; k++) {
            if (done(&r, s0, ns)) {
                if (k > result)
                    result = k;
                break;
            }
            step(&r);
            if (!memcmp(r.cur, r.next, sizeof(bits) * (size_t)n)) {
                result = -1;
                break;
            }
        }
    }
out:
    free(r.cur);
    free(r.next);
    free(r.pre);
    free(r.suf);
    free(r.table);
    free(r.ranges);
    free(r.first);
    free(r.cols[0]);
    free(r.cols[1]);
    return result;
}
