/* Pair and block counts, and the stats JSON. Counting works on the
 * component ranges of each row, so a wide component costs O(1) per row;
 * only keys that an earlier component may also own are tested one by one,
 * and the common exclusions (whole global rows, gathered columns) are
 * subtracted arithmetically. */
#include "stats.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int64_t range_len(const sp_krange *r) { return (r->end - r->start) / r->step + 1; }

/* |[a, b] ∩ spans| for sorted disjoint spans. */
static int64_t overlap(const sp_cview *cv, int64_t a, int64_t b)
{
    int lo = 0, hi = cv->nspans;
    while (lo < hi) { /* first span ending at or after a */
        int mid = lo + (hi - lo) / 2;
        if (cv->spans[mid].hi < a)
            lo = mid + 1;
        else
            hi = mid;
    }
    int64_t n = 0;
    for (int k = lo; k < cv->nspans && cv->spans[k].lo <= b; k++) {
        int64_t x = cv->spans[k].lo > a ? cv->spans[k].lo : a;
        int64_t y = cv->spans[k].hi < b ? cv->spans[k].hi : b;
        n += y - x + 1;
    }
    return n;
}

static bool in_row_set(const sp_cview *cv, int64_t i) { return overlap(cv, i, i) > 0; }

/* Owned keys among the range r of component c in row i. */
static int64_t owned(sp_view *v, int c, int64_t i, const sp_krange *r)
{
    uint32_t excl = v->hp->comps[c].excl, rest = 0;
    int cols = -1;
    for (uint32_t m = excl; m; m &= m - 1) {
        int e = __builtin_ctz(m);
        sp_comp_kind k = v->hp->comps[e].kind;
        if (k == SP_C_ROWS || k == SP_C_DENSE) {
            /* These own every key of the rows they hold. */
            if (k == SP_C_DENSE || in_row_set(&v->c[e], i))
                return 0;
        } else if (k == SP_C_COLS && r->step == 1) {
            cols = e;
        } else {
            rest |= 1u << e;
        }
    }
    if (!rest)
        return range_len(r) - (cols >= 0 ? overlap(&v->c[cols], r->start, r->end) : 0);
    int64_t n = 0;
    for (int64_t j = r->start; j <= r->end; j += r->step) {
        bool mine = !(cols >= 0 && sp_view_has(v, cols, i, j));
        for (uint32_t m = rest; m && mine; m &= m - 1)
            mine = !sp_view_has(v, __builtin_ctz(m), i, j);
        n += mine;
    }
    return n;
}

/* The key blocks of one query block: short ranges stamp their blocks, wide
 * ones (dense rows, long windows) are kept as intervals of block indices
 * and merged once per query block, so a row costs O(1) per range. */
typedef struct kblocks {
    int64_t *stamp; /* [nblocks]: the query block that last stamped it */
    int64_t *hit, nhit; /* the blocks stamped for this query block */
    sp_span *iv;
    int64_t niv, cap;
} kblocks;

static int kb_wide(kblocks *k, int64_t lo, int64_t hi)
{
    if (k->niv == k->cap) {
        int64_t cap = 2 * k->cap + 64;
        sp_span *m = realloc(k->iv, sizeof *m * (size_t)cap);
        if (!m)
            return -1;
        k->iv = m;
        k->cap = cap;
    }
    k->iv[k->niv++] = (sp_span){lo, hi};
    return 0;
}

static void kb_stamp(kblocks *k, int64_t qb, int64_t b)
{
    if (k->stamp[b] != qb) {
        k->stamp[b] = qb;
        k->hit[k->nhit++] = b;
    }
}

static int cmp_lo(const void *x, const void *y)
{
    const sp_span *a = x, *b = y;
    return (a->lo > b->lo) - (a->lo < b->lo);
}

/* The blocks of this query block, stamped or in an interval; empties both. */
static int64_t kb_flush(kblocks *k)
{
    if (k->niv > 1) /* qsort must not be given NULL, even for no items */
        qsort(k->iv, (size_t)k->niv, sizeof *k->iv, cmp_lo);
    int64_t count = 0, m = 0;
    for (int64_t x = 0; x < k->niv; x++) /* merge into disjoint intervals */
        if (m && k->iv[x].lo <= k->iv[m - 1].hi + 1) {
            if (k->iv[x].hi > k->iv[m - 1].hi)
                k->iv[m - 1].hi = k->iv[x].hi;
        } else {
            k->iv[m++] = k->iv[x];
        }
    for (int64_t x = 0; x < m; x++)
        count += k->iv[x].hi - k->iv[x].lo + 1;
    for (int64_t h = 0; h < k->nhit; h++) { /* stamped blocks outside them */
        int64_t lo = 0, hi = m - 1, b = k->hit[h];
        bool in = false;
        while (lo <= hi && !in) {
            int64_t mid = lo + (hi - lo) / 2;
            if (b < k->iv[mid].lo)
                hi = mid - 1;
            else if (b > k->iv[mid].hi)
                lo = mid + 1;
            else
                in = true;
        }
        count += !in;
    }
    k->niv = k->nhit = 0;
    return count;
}

int64_t sp_count_pairs(sp_view *v, int64_t *blocks)
{
    const int64_t nb = v->nblocks ? v->nblocks : 1;
    kblocks kb = {.stamp = malloc(sizeof(int64_t) * (size_t)nb), .hit = malloc(sizeof(int64_t) * (size_t)nb)};
    sp_krange stack[64], *r = stack;
    int cap = 64;
    int64_t pairs = 0, nblk = 0;
    if (!kb.stamp || !kb.hit)
        goto oom;
    memset(kb.stamp, 0xff, sizeof(int64_t) * (size_t)nb);
    for (int64_t i = 0; i < v->L; i++) {
        const int64_t qb = i / v->B;
        if (i > 0 && i % v->B == 0)
            nblk += kb_flush(&kb);
        for (int c = 0; c < v->hp->ncomps; c++) {
            int n = sp_view_ranges(v, c, i, r, cap);
            if (n > cap) {
                if (r != stack)
                    free(r);
                if (!(r = malloc(sizeof *r * (size_t)n)))
                    goto oom;
                cap = n;
                n = sp_view_ranges(v, c, i, r, cap);
            }
            if (n < 0)
                goto oom;
            for (int k = 0; k < n; k++) {
                pairs += v->hp->comps[c].excl ? owned(v, c, i, &r[k]) : range_len(&r[k]);
                /* A block holds a pair of the pattern iff some component has
                 * one there, owner or not. With a step up to B every block
                 * between the ends holds a key. */
                int64_t b0 = r[k].start / v->B, b1 = r[k].end / v->B;
                if (r[k].step <= v->B && b1 - b0 >= 4) {
                    if (kb_wide(&kb, b0, b1))
                        goto oom;
                } else if (r[k].step <= v->B) {
                    for (int64_t b = b0; b <= b1; b++)
                        kb_stamp(&kb, qb, b);
                } else {
                    for (int64_t j = r[k].start; j <= r[k].end; j += r[k].step)
                        kb_stamp(&kb, qb, j / v->B);
                }
            }
        }
    }
    nblk += kb_flush(&kb);
    if (r != stack)
        free(r);
    free(kb.stamp);
    free(kb.hit);
    free(kb.iv);
    *blocks = nblk;
    return pairs;
oom:
    if (r != stack)
        free(r);
    free(kb.stamp);
    free(kb.hit);
    free(kb.iv);
    return -1;
}

static bool has_random(const sp_headplan *hp)
{
    for (int c = 0; c < hp->ncomps; c++)
        if (hp->comps[c].kind == SP_C_RANDOM)
            return true;
    return false;
}

int sp_stats_compute(const sp_plan *p, int64_t n, int64_t heads, int64_t head_dim, bool want_layers,
                     sp_stats *st)
{
    memset(st, 0, sizeof *st);
    st->n = n;
    st->heads = heads;
    st->head_dim = head_dim;
    st->block = p->block;
    st->head_pairs = calloc((size_t)heads, sizeof *st->head_pairs);
    int64_t *head_blocks = calloc((size_t)heads, sizeof *head_blocks);
    if (!st->head_pairs || !head_blocks)
        goto oom;
    for (int64_t h = 0; h < heads; h++) {
        const sp_headplan *hp = sp_plan_head(p, h);
        /* Heads of one class count alike, unless their random draws differ. */
        int64_t same = -1;
        for (int64_t g = 0; g < h && same < 0 && !has_random(hp); g++)
            if (sp_plan_head(p, g) == hp)
                same = g;
        if (same >= 0) {
            st->head_pairs[h] = st->head_pairs[same];
            head_blocks[h] = head_blocks[same];
        } else {
            sp_view v;
            if (sp_view_init(&v, p, h, n))
                goto oom;
            st->head_pairs[h] = sp_count_pairs(&v, &head_blocks[h]);
            sp_view_free(&v);
            if (st->head_pairs[h] < 0)
                goto oom;
        }
        st->pairs += st->head_pairs[h];
        st->blocks += head_blocks[h];
    }
    free(head_blocks);
    head_blocks = NULL;
    int64_t nb = (n + p->block - 1) / p->block;
    st->density = (double)st->pairs / ((double)heads * (double)n * (double)n);
    st->block_density = (double)st->blocks / ((double)heads * (double)nb * (double)nb);
    st->flops = 4.0 * (double)head_dim * (double)st->pairs;
    st->layers = -2;
    if (want_layers && (st->layers = sp_layers_to_connect(p, n, heads)) == -3)
        goto oom;
    return 0;
oom:
    free(head_blocks);
    sp_stats_free(st);
    return -1;
}

void sp_stats_free(sp_stats *st)
{
    free(st->head_pairs);
    st->head_pairs = NULL;
}

void sp_stats_json(const sp_stats *st, const char *name, FILE *f)
{
    /* Pattern names are identifiers, so they need no JSON escaping. */
    fprintf(f, "{\"name\": \"%s\", \"n\": %" PRId64 ", \"block\": %" PRId64 ", \"head_dim\": %" PRId64
               ", \"heads\": [",
            name, st->n, st->block, st->head_dim);
    for (int64_t h = 0; h < st->heads; h++)
        fprintf(f, "%s{\"head\": %" PRId64 ", \"pairs\": %" PRId64 "}", h ? ", " : "", h,
                st->head_pairs[h]);
    fprintf(f, "], \"pairs\": %" PRId64 ", \"density\": %.6g, \"block_density\": %.6g"
               ", \"flops_forward\": %.6g, \"flops_backward\": %.6g",
            st->pairs, st->density, st->block_density, st->flops, 2.5 * st->flops);
    /* Q, K, V, O in fp32 and LSE, read or written once: the least memory
     * traffic a forward pass can have. */
    double bytes = (double)st->heads * (double)st->n * (4.0 * 4.0 * (double)st->head_dim + 4.0);
    fprintf(f, ", \"bytes_forward_fp32\": %.6g", bytes);
    if (st->layers >= 0)
        fprintf(f, ", \"layers_to_connect\": %" PRId64, st->layers);
    else if (st->layers == -1)
        fputs(", \"layers_to_connect\": null", f);
    else if (st->layers == -4)
        fprintf(f, ", \"layers_to_connect\": \"not computed above n = %d\"", SP_LAYERS_EXHAUSTIVE_MAX);
    else if (st->layers == -5)
        fputs(", \"layers_to_connect\": \"not computed: over the work limit\"", f);
    fputc('}', f);
}
