/* Layers to connect: the smallest k such that after k stacked layers of the
 * pattern every position has heard from every position it may hear from
 * (every earlier one when all heads are causal, every one otherwise). A
 * layer is the union of its heads, and each position keeps its own state
 * (the residual stream), so reach only grows: the answer is the largest
 * shortest-path distance dist(i, s) over the required pairs of the graph
 * "i attends j", or -1 when some pair is never joined.
 *
 * sp_layers_to_connect reads the answer off the plan's structure, cheapest
 * case first; each case is exact:
 *   - a hub: a position every row attends (a non-causal column) that
 *     attends every key (a non-causal row) joins any pair in two layers;
 *     one when every row attends every key;
 *   - reach sets that stay intervals: when row i's keys with i itself form
 *     one interval [a(i), b(i)] with a and b non-decreasing (bands holding
 *     the diagonal, block bands, segments, dense, causal or not), the reach
 *     after k layers is [a^k(i), b^k(i)], so the last row's left end and
 *     the first row's right end tell everything in O(answer) steps;
 *   - all heads causal: every earlier position is reached iff every row
 *     attends the one before it (a path down cannot come back up);
 *     translation-invariant forms alone (bands, dilations, strides, offset
 *     lists) make dist(i, s) = f(i - s), a shortest sum of the offsets,
 *     found by one pass over d with a sliding minimum per offset family;
 *     forms periodic with period P (segments, block bands, summary columns
 *     of period dividing P) make every pair a translate of one whose key is
 *     below P, so propagation from P sources suffices;
 *   - non-causal: offsets all in mZ, m >= 2, or a row or key with no other
 *     position attached can never connect;
 *   - anything else (random blocks without a hub, non-causal mixes of
 *     dilations, strides and offset lists) by exhaustive propagation, only
 *     up to n = SP_LAYERS_EXHAUSTIVE_MAX.
 *
 * Exhaustive propagation (sp_layers_exhaustive, also the tests' check of
 * the cases above): sources go in batches of up to 512, each position holds
 * a bitset of the batch's sources that reached it, and one layer ORs into
 * position i the bitsets of every key it attends. Contiguous key ranges are
 * ORed through per-64-position prefix/suffix ORs and a sparse table over
 * the 64-position blocks (O(1) per range); strided and short ranges are read
 * directly. Gathered columns, the same set for every row, are one running
 * OR. Cost: batches x layers x (n + ranges) x words. */
#include "comp.h"
#include "stats.h"

#include <stdlib.h>
#include <string.h>

enum { MAXW = 8, SEG = 64 };

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* ---- the union of the heads ----------------------------------------------- */

/* One view per distinct class of heads; per head when random draws differ. */
typedef struct graph {
    int64_t n;
    bool all_causal, random;
    int nviews;
    sp_view *views;
} graph;

static void graph_free(graph *g)
{
    for (int k = 0; k < g->nviews; k++)
        sp_view_free(&g->views[k]);
    free(g->views);
    g->views = NULL;
    g->nviews = 0;
}

static int graph_init(graph *g, const sp_plan *p, int64_t heads, int64_t n)
{
    *g = (graph){.n = n, .all_causal = true};
    g->views = calloc((size_t)heads, sizeof *g->views);
    if (!g->views)
        return -1;
    for (int64_t h = 0; h < heads; h++) {
        const sp_headplan *hp = sp_plan_head(p, h);
        bool dup = false, rnd = false;
        for (int c = 0; c < hp->ncomps; c++)
            rnd |= hp->comps[c].kind == SP_C_RANDOM;
        for (int k = 0; k < g->nviews && !rnd; k++)
            dup |= g->views[k].hp == hp;
        if (dup)
            continue;
        if (sp_view_init(&g->views[g->nviews], p, h, n)) {
            graph_free(g);
            return -1;
        }
        g->nviews++;
        g->all_causal &= hp->causal;
        g->random |= rnd;
    }
    return 0;
}

/* Does some head attend (i, j)? */
static bool attends(graph *g, int64_t i, int64_t j)
{
    for (int k = 0; k < g->nviews; k++) {
        sp_view *v = &g->views[k];
        if ((v->hp->causal && j > i) || (v->hp->anticausal && j < i))
            continue;
        for (int c = 0; c < v->hp->ncomps; c++)
            if (sp_view_has(v, c, i, j))
                return true;
    }
    return false;
}

/* The keys of row i over every head (columns included unless skip_cols), as
 * ranges; returns their count, which may exceed cap (then only cap are
 * written), or -1 when out of memory. */
static int64_t row_ranges(graph *g, int64_t i, sp_krange *out, int cap, bool skip_cols)
{
    int64_t n = 0;
    for (int k = 0; k < g->nviews; k++)
        for (int c = 0; c < g->views[k].hp->ncomps; c++) {
            if (skip_cols && g->views[k].hp->comps[c].kind == SP_C_COLS)
                continue;
            int room = n < cap ? cap - (int)n : 0;
            int m = sp_view_ranges(&g->views[k], c, i, out + (n < cap ? n : 0), room);
            if (m < 0)
                return -1;
            n += m;
        }
    return n;
}

static int cmp_start(const void *x, const void *y)
{
    const sp_krange *a = x, *b = y;
    return (a->start > b->start) - (a->start < b->start);
}

enum { RCAP = 256 };

/* ---- hub and completeness ------------------------------------------------ */

/* Is there a position that every row attends and that attends every key? */
static bool has_hub(const graph *g)
{
    for (int a = 0; a < g->nviews; a++) {
        const sp_view *r = &g->views[a];
        if (r->hp->causal || r->hp->anticausal)
            continue;
        for (int c = 0; c < r->hp->ncomps; c++) {
            if (r->hp->comps[c].kind != SP_C_ROWS)
                continue;
            for (int b = 0; b < g->nviews; b++) {
                const sp_view *w = &g->views[b];
                if (w->hp->causal || w->hp->anticausal)
                    continue;
                for (int d = 0; d < w->hp->ncomps; d++) {
                    if (w->hp->comps[d].kind != SP_C_COLS)
                        continue;
                    const sp_cview *x = &r->c[c], *y = &w->c[d];
                    for (int s = 0, t = 0; s < x->nspans && t < y->nspans;) {
                        if (x->spans[s].hi < y->spans[t].lo)
                            s++;
                        else if (y->spans[t].hi < x->spans[s].lo)
                            t++;
                        else
                            return true;
                    }
                }
            }
        }
    }
    return false;
}

/* Does every row attend every key it may hear from? Stops at the first row
 * that does not. Returns 1, 0, or -1 when out of memory. */
static int complete(graph *g)
{
    sp_krange *r = malloc(sizeof *r * RCAP);
    if (!r)
        return -1;
    int ok = 1;
    for (int64_t i = 0; i < g->n && ok == 1; i++) {
        int64_t want = g->all_causal ? i : g->n - 1, m = row_ranges(g, i, r, RCAP, false);
        if (m < 0 || m > RCAP) {
            ok = m < 0 ? -1 : 0; /* that many ranges never cover a row */
            break;
        }
        qsort(r, (size_t)m, sizeof *r, cmp_start);
        /* Sweep the contiguous ranges; a key they miss may still be in a
         * strided one, so it is tested by itself. */
        int64_t next = 0; /* keys below next are attended */
        for (int64_t k = 0; k <= m && next <= want && ok == 1; k++) {
            int64_t upto = k < m ? min64(r[k].start, want + 1) : want + 1;
            for (; next < upto && ok == 1; next++)
                if (next != i && !attends(g, i, next))
                    ok = 0;
            if (k < m && r[k].step == 1 && r[k].end >= next)
                next = r[k].end + 1;
        }
    }
    free(r);
    return ok;
}

/* ---- reach sets that stay intervals --------------------------------------- */

/* The answer when every row's keys with the row form one interval whose
 * ends are non-decreasing in the row; -2 when they do not; -3: no memory. */
static int64_t intervals(graph *g)
{
    const int64_t n = g->n;
    int64_t *a = malloc(sizeof *a * (size_t)n), *b = malloc(sizeof *b * (size_t)n), res = -2;
    sp_krange *r = malloc(sizeof *r * RCAP);
    if (!a || !b || !r) {
        res = -3;
        goto out;
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t m = row_ranges(g, i, r, RCAP, false);
        if (m < 0) {
            res = -3;
            goto out;
        }
        if (m > RCAP)
            goto out;
        if (m == RCAP)
            goto out;
        r[m++] = (sp_krange){i, i, 1};
        qsort(r, (size_t)m, sizeof *r, cmp_start);
        int64_t hi = r[0].end;
        for (int64_t k = 0; k < m; k++) {
            if ((r[k].step > 1 && r[k].start < r[k].end) || r[k].start > hi + 1)
                goto out;
            hi = max64(hi, r[k].end);
        }
        a[i] = r[0].start;
        b[i] = hi;
        if (i > 0 && (a[i] < a[i - 1] || b[i] < b[i - 1]))
            goto out;
    }
    /* The last row's left end falls slowest, the first row's right end
     * rises slowest. */
    int64_t kl = 0, kr = 0;
    for (int64_t x = n - 1; x > 0; x = a[x], kl++)
        if (a[x] == x) {
            res = -1;
            goto out;
        }
    for (int64_t x = 0; x < n - 1 && !g->all_causal; x = b[x], kr++)
        if (b[x] == x) {
            res = -1;
            goto out;
        }
    res = max64(kl, kr);
out:
    free(a);
    free(b);
    free(r);
    return res;
}

/* ---- causal, translation-invariant: a shortest sum of offsets -------------- */

/* A family of distances u = i - j >= 1 a row may step down by: [lo, hi] in
 * mZ (hi may be SP_DFORM_INF), or the single value lo when m == 0. */
typedef struct family {
    int64_t lo, hi, m;
    int64_t *head, *tail, *q; /* sliding minimum: a deque per class mod m */
    int64_t qlen;
} family;

/* Adds the families of a causal q = 1 form; returns the new count. */
static int add_families(family *fam, int nf, int cap, const sp_dform *f)
{
    if (f->list) {
        for (int k = 0; k < f->nlist && nf < cap; k++)
            if (f->list[k] <= -1)
                fam[nf++] = (family){.lo = -f->list[k], .hi = -f->list[k], .m = 0};
        return nf;
    }
    int64_t lo = max64(1, -f->hi), hi = -f->lo;
    lo += (f->m - lo % f->m) % f->m;
    if (lo <= hi && nf < cap)
        fam[nf++] = (family){.lo = lo, .hi = hi, .m = f->m};
    return nf;
}

/* f(d) = 1 + min over families of f(d - u), d = 1 .. n-1; the answer is the
 * largest f. Each class of d mod m keeps a deque of candidates x = d - u,
 * increasing in x and in f(x). */
static int64_t offsets_dp(family *fam, int nf, int64_t n)
{
    int64_t *f = malloc(sizeof *f * (size_t)n), res = 0;
    bool oom = !f;
    for (int k = 0; k < nf && !oom; k++) {
        family *F = &fam[k];
        if (!F->m)
            continue;
        F->qlen = n / F->m + 1;
        F->head = calloc((size_t)min64(F->m, n), sizeof *F->head);
        F->tail = calloc((size_t)min64(F->m, n), sizeof *F->tail);
        F->q = malloc(sizeof *F->q * (size_t)(F->qlen * min64(F->m, n)));
        oom = !F->head || !F->tail || !F->q;
    }
    if (oom) {
        res = -3;
        goto out;
    }
    const int64_t INF = INT64_MAX / 2;
    f[0] = 0;
    for (int64_t d = 1; d < n; d++) {
        int64_t best = INF;
        for (int k = 0; k < nf; k++) {
            family *F = &fam[k];
            if (!F->m) {
                if (F->lo <= d && f[d - F->lo] < best)
                    best = f[d - F->lo];
                continue;
            }
            int64_t c = d % F->m, *q = F->q + c * F->qlen;
            int64_t x = d - F->lo; /* joins the window of d now */
            if (x >= 0) {
                while (F->tail[c] > F->head[c] && f[q[F->tail[c] - 1]] >= f[x])
                    F->tail[c]--;
                q[F->tail[c]++] = x;
            }
            while (F->tail[c] > F->head[c] && q[F->head[c]] < d - F->hi)
                F->head[c]++;
            if (F->tail[c] > F->head[c] && f[q[F->head[c]]] < best)
                best = f[q[F->head[c]]];
        }
        f[d] = best == INF ? INF : best + 1;
        if (f[d] == INF) {
            res = -1;
            break;
        }
        res = max64(res, f[d]);
    }
out:
    for (int k = 0; k < nf; k++) {
        free(fam[k].head);
        free(fam[k].tail);
        free(fam[k].q);
    }
    free(f);
    return res;
}

static int64_t gcd64(int64_t a, int64_t b)
{
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a < 0 ? -a : a;
}

/* The period of the graph: the smallest P > 0 such that (i, j) is attended
 * iff (i + P, j + P) is, from its segments, block bands and periodic
 * columns; 0 when a position set or random blocks break the translation.
 * *ti: every component a translation-invariant q = 1 form. */
static int64_t period(const graph *g, int64_t cap, bool *ti)
{
    int64_t P = 1;
    *ti = true;
    for (int k = 0; k < g->nviews; k++)
        for (int c = 0; c < g->views[k].hp->ncomps; c++) {
            const sp_comp *comp = &g->views[k].hp->comps[c];
            sp_dform f;
            int64_t q = 1;
            if (sp_comp_dform(comp, g->views[k].B, &f)) {
                q = f.q;
            } else if (comp->kind == SP_C_COLS && comp->u.cols.spans.n == 0) {
                for (int x = 0; x < comp->u.cols.nper; x++)
                    q = q / gcd64(q, comp->u.cols.per[x].s) * comp->u.cols.per[x].s;
            } else {
                *ti = false;
                return 0;
            }
            *ti &= q == 1 && comp->kind != SP_C_COLS;
            P = P / gcd64(P, q) * q;
            if (P > cap)
                return 0;
        }
    return P;
}

/* ---- exhaustive propagation ------------------------------------------------ */

typedef struct reach {
    int64_t n, nseg, levels, W; /* W words of sources per position */
    uint64_t *cur, *next, *pre, *suf, *table; /* table[(lvl * nseg + s) * W] */
    /* Ranges of every row (all heads, COLS aside), CSR-style. */
    sp_krange *ranges;
    int64_t *first; /* ranges of row i: first[i] .. first[i+1]-1 */
    /* The gathered columns of every head, merged: [0] of non-causal heads
     * (heard by every row), [1] of causal heads (heard by later rows). */
    sp_span *cols[2];
    int ncols[2];
    bool all_causal;
} reach;

static void or_into(const reach *r, uint64_t *a, const uint64_t *b)
{
    for (int64_t k = 0; k < r->W; k++)
        a[k] |= b[k];
}

static void copy(const reach *r, uint64_t *a, const uint64_t *b)
{
    for (int64_t k = 0; k < r->W; k++)
        a[k] = b[k];
}

#define AT(arr, x) ((arr) + (x) * r->W)

static void build_index(reach *r)
{
    for (int64_t s = 0; s < r->nseg; s++) {
        int64_t lo = s * SEG, hi = min64(lo + SEG - 1, r->n - 1);
        uint64_t acc[MAXW] = {0};
        for (int64_t x = lo; x <= hi; x++) {
            or_into(r, acc, AT(r->cur, x));
            copy(r, AT(r->pre, x), acc);
        }
        memset(acc, 0, sizeof acc);
        for (int64_t x = hi; x >= lo; x--) {
            or_into(r, acc, AT(r->cur, x));
            copy(r, AT(r->suf, x), acc);
        }
        copy(r, AT(r->table, s), acc);
    }
    for (int64_t l = 1; l < r->levels; l++)
        for (int64_t s = 0; s + ((int64_t)1 << l) <= r->nseg; s++) {
            memcpy(AT(r->table, l * r->nseg + s), AT(r->table, (l - 1) * r->nseg + s),
                   sizeof(uint64_t) * (size_t)r->W);
            or_into(r, AT(r->table, l * r->nseg + s), AT(r->table, (l - 1) * r->nseg + s + ((int64_t)1 << (l - 1))));
        }
}

static void or_range(const reach *r, uint64_t *acc, int64_t a, int64_t b, int64_t step)
{
    if (step > 1 || b - a < SEG) {
        for (int64_t x = a; x <= b; x += step)
            or_into(r, acc, AT(r->cur, x));
        return;
    }
    int64_t sa = a / SEG, sb = b / SEG;
    or_into(r, acc, AT(r->suf, a));
    or_into(r, acc, AT(r->pre, b));
    if (sb - sa >= 2) {
        int64_t lo = sa + 1, len = sb - 1 - lo + 1, l = 63 - __builtin_clzll((unsigned long long)len);
        or_into(r, acc, AT(r->table, l * r->nseg + lo));
        or_into(r, acc, AT(r->table, l * r->nseg + sb - 1 - ((int64_t)1 << l) + 1));
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
    uint64_t all_cols[MAXW] = {0}, run[MAXW] = {0}, acc[MAXW];
    for (int k = 0; k < r->ncols[0]; k++)
        or_range(r, all_cols, r->cols[0][k].lo, r->cols[0][k].hi, 1);
    for (int64_t i = 0; i < r->n; i++) {
        copy(r, acc, AT(r->cur, i));
        for (int64_t k = r->first[i]; k < r->first[i + 1]; k++)
            or_range(r, acc, r->ranges[k].start, r->ranges[k].end, r->ranges[k].step);
        if (r->ncols[1]) {
            if (in_cols(r, i))
                or_into(r, run, AT(r->cur, i));
            or_into(r, acc, run);
        }
        or_into(r, acc, all_cols);
        copy(r, AT(r->next, i), acc);
    }
    uint64_t *t = r->cur;
    r->cur = r->next;
    r->next = t;
}

/* Has every position heard from every source of the batch s0 .. s0+ns-1
 * it should? Compared a word at a time. */
static bool done(const reach *r, int64_t s0, int64_t ns)
{
    for (int64_t i = 0; i < r->n; i++) {
        int64_t upto = r->all_causal ? min64(i - s0 + 1, ns) : ns;
        const uint64_t *w = AT(r->cur, i);
        for (int64_t k = 0; k * 64 < upto; k++) {
            int64_t bits = min64(upto - k * 64, 64);
            uint64_t want = bits == 64 ? ~0ull : (1ull << bits) - 1;
            if ((w[k] & want) != want)
                return false;
        }
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
    if (cv->nspans)
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

static int gather(reach *r, graph *g)
{
    int64_t cap = r->n + 16, nr = 0;
    r->ranges = malloc(sizeof *r->ranges * (size_t)cap);
    r->first = malloc(sizeof *r->first * (size_t)(r->n + 1));
    if (!r->ranges || !r->first)
        return -1;
    r->all_causal = g->all_causal;
    for (int k = 0; k < g->nviews; k++)
        for (int c = 0; c < g->views[k].hp->ncomps; c++)
            if (g->views[k].hp->comps[c].kind == SP_C_COLS &&
                add_cols(r, &g->views[k].c[c], g->views[k].hp->causal))
                return -1;
    for (int64_t i = 0; i < r->n; i++) {
        r->first[i] = nr;
        int64_t m;
        while ((m = row_ranges(g, i, r->ranges + nr, (int)min64(cap - nr, INT32_MAX), true)) > cap - nr) {
            cap = 2 * (nr + m);
            sp_krange *x = realloc(r->ranges, sizeof *x * (size_t)cap);
            if (!x)
                return -1;
            r->ranges = x;
        }
        if (m < 0)
            return -1;
        nr += m;
    }
    r->first[r->n] = nr;
    return 0;
}

/* Propagates from the sources 0 .. nsrc-1 and returns the largest number
 * of layers one of them needs, -1 when one never reaches all it should,
 * -3 when out of memory, -5 when the work would pass max_work words
 * (max_work <= 0: no limit). */
static int64_t propagate(graph *g, int64_t nsrc, double max_work)
{
    const int64_t n = g->n;
    reach r = {.n = n, .nseg = (n + SEG - 1) / SEG, .W = (min64(nsrc, 64 * MAXW) + 63) / 64};
    r.levels = 1;
    while ((int64_t)1 << r.levels <= r.nseg)
        r.levels++;
    int64_t result = 0;
    const size_t row = sizeof(uint64_t) * (size_t)r.W;
    r.cur = malloc(row * (size_t)n);
    r.next = malloc(row * (size_t)n);
    r.pre = malloc(row * (size_t)n);
    r.suf = malloc(row * (size_t)n);
    r.table = malloc(row * (size_t)(r.levels * r.nseg));
    if (!r.cur || !r.next || !r.pre || !r.suf || !r.table || gather(&r, g)) {
        result = -3;
        goto out;
    }
    /* A layer's work in words: the index, every row's ranges (a strided or
     * short one read key by key), the checks. */
    double work = 0, layer = 4.0 * (double)n + (double)(r.levels * r.nseg);
    for (int64_t k = 0; k < r.first[n]; k++) {
        const sp_krange *x = &r.ranges[k];
        layer += x->step > 1 || x->end - x->start < SEG ? (double)((x->end - x->start) / x->step + 1) : 4.0;
    }
    layer *= (double)r.W;
    for (int64_t s0 = 0; s0 < nsrc && result >= 0; s0 += 64 * r.W) {
        int64_t ns = min64(nsrc - s0, 64 * r.W);
        memset(r.cur, 0, row * (size_t)n);
        for (int64_t s = 0; s < ns; s++)
            r.cur[(s0 + s) * r.W + s / 64] |= 1ull << (s % 64);
        /* A layer that adds nothing means the rest is never reached. */
        for (int64_t k = 0;; k++) {
            if (done(&r, s0, ns)) {
                result = max64(result, k);
                break;
            }
            if (max_work > 0 && (work += layer) > max_work) {
                result = -5;
                break;
            }
            step(&r);
            if (!memcmp(r.cur, r.next, row * (size_t)n)) {
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

int64_t sp_layers_exhaustive(const sp_plan *p, int64_t n, int64_t heads)
{
    graph g;
    if (graph_init(&g, p, heads, n))
        return -3;
    int64_t res = propagate(&g, n, 0);
    graph_free(&g);
    return res;
}

/* ---- no path at all ---------------------------------------------------------- */

/* Non-causal heads: is some pair never joined for a reason seen at once?
 * Every offset j - i of every edge in mZ, m >= 2 (dilations and strides
 * alone), or a row that attends no other position. Returns 1, 0, or -1
 * when out of memory. */
static int disconnected(graph *g)
{
    int64_t m = 0;
    for (int k = 0; k < g->nviews && m != 1; k++)
        for (int c = 0; c < g->views[k].hp->ncomps && m != 1; c++) {
            sp_dform f;
            if (!sp_comp_dform(&g->views[k].hp->comps[c], g->views[k].B, &f) || f.q > 1) {
                m = 1;
            } else if (f.list) {
                for (int x = 0; x < f.nlist; x++)
                    m = gcd64(m, f.list[x]);
            } else if (f.lo < 0 || f.hi > 0) {
                m = gcd64(m, f.m);
            }
        }
    if (m != 1)
        return 1; /* 0: no edge at all */
    sp_krange *r = malloc(sizeof *r * RCAP);
    if (!r)
        return -1;
    int res = 0;
    for (int64_t i = 0; i < g->n && !res; i++) {
        /* Columns, many spans at long lengths, are looked at by themselves. */
        int64_t n = row_ranges(g, i, r, RCAP, true);
        if (n < 0) {
            res = -1;
            break;
        }
        bool other = n > RCAP;
        for (int64_t k = 0; k < n && k < RCAP && !other; k++)
            other = r[k].start != i || r[k].end != i;
        for (int k = 0; k < g->nviews && !other; k++)
            for (int c = 0; c < g->views[k].hp->ncomps && !other; c++) {
                const sp_cview *cv = &g->views[k].c[c];
                if (g->views[k].hp->comps[c].kind != SP_C_COLS || !cv->nspans)
                    continue;
                if (g->views[k].hp->causal)
                    other = cv->spans[0].lo < i;
                else
                    other = cv->nspans > 1 || cv->spans[0].lo != i || cv->spans[0].hi != i;
            }
        res = !other;
    }
    free(r);
    return res;
}

/* Causal heads: does every row attend the one before it? */
static bool chain(graph *g)
{
    for (int64_t i = 1; i < g->n; i++)
        if (!attends(g, i, i - 1))
            return false;
    return true;
}

int64_t sp_layers_to_connect(const sp_plan *p, int64_t n, int64_t heads)
{
    if (n <= 1)
        return 0;
    graph g;
    if (graph_init(&g, p, heads, n))
        return -3;
    int64_t res = -2;
    int c;
    if (has_hub(&g)) {
        res = (c = complete(&g)) < 0 ? -3 : c ? 1 : 2;
        goto out;
    }
    if (g.random && n > SP_LAYERS_EXHAUSTIVE_MAX) {
        res = -4;
        goto out;
    }
    if ((res = intervals(&g)) != -2)
        goto out;
    if (g.all_causal) {
        if (!chain(&g)) {
            res = -1;
            goto out;
        }
        bool ti;
        int64_t P = period(&g, 64 * MAXW, &ti);
        if (ti) {
            family fam[64];
            int nf = 0;
            for (int k = 0; k < g.nviews; k++)
                for (int x = 0; x < g.views[k].hp->ncomps; x++) {
                    sp_dform f;
                    sp_comp_dform(&g.views[k].hp->comps[x], g.views[k].B, &f);
                    nf = add_families(fam, nf, 64, &f);
                }
            if (nf < 64) {
                res = offsets_dp(fam, nf, n);
                goto out;
            }
        }
        if (P > 0) {
            /* Every pair, moved down by a multiple of P, has its key below P
             * and the same paths (they only go down). */
            res = propagate(&g, min64(P, n), SP_LAYERS_MAX_WORK);
            goto out;
        }
    } else if ((c = disconnected(&g)) != 0) {
        res = c < 0 ? -3 : -1;
        goto out;
    }
    res = n > SP_LAYERS_EXHAUSTIVE_MAX ? -4 : propagate(&g, n, SP_LAYERS_MAX_WORK);
out:
    graph_free(&g);
    return res;
}
