/* Views: one head's plan at one sequence length. Everything that enumerates
 * pairs (the reference backend, stats, the mask picture, the tests) goes
 * through here, so the meaning of each component is written once. */
#include "plan.h"
#include "rng.h"

#include <stdlib.h>
#include <string.h>

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
static int64_t floordiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

static int64_t resolve(int64_t v, bool from_end, int64_t L) { return from_end ? L - v : v; }

static int cmp_span(const void *x, const void *y)
{
    const sp_span *a = x, *b = y;
    return (a->lo > b->lo) - (a->lo < b->lo);
}

/* Sorts, merges touching spans; returns the count. */
static int normalise(sp_span *s, int n)
{
    qsort(s, (size_t)n, sizeof *s, cmp_span);
    int m = 0;
    for (int k = 0; k < n; k++) {
        if (m > 0 && s[k].lo <= s[m - 1].hi + 1)
            s[m - 1].hi = max64(s[m - 1].hi, s[k].hi);
        else
            s[m++] = s[k];
    }
    return m;
}

/* Appends set items clipped to 0..L-1 (room for s->n is given). */
static int add_items(sp_span *out, int n, const sp_set *s, int64_t L)
{
    for (int k = 0; k < s->n; k++) {
        int64_t lo = max64(0, resolve(s->items[k].lo, s->items[k].lo_end, L));
        int64_t hi = min64(L - 1, resolve(s->items[k].hi, s->items[k].hi_end, L));
        if (lo <= hi)
            out[n++] = (sp_span){lo, hi};
    }
    return n;
}

/* The gathered keys of a COLS component: its spans and, for each period,
 * the runs s*p+a .. s*p+b, as one sorted list of disjoint runs below L. */
static int resolve_cols(sp_cview *cv, const sp_comp *c, int64_t L)
{
    int64_t n = c->u.cols.spans.n;
    for (int k = 0; k < c->u.cols.nper; k++)
        n += L / c->u.cols.per[k].s + 1;
    if (n > (int64_t)1 << 30)
        return -1;
    cv->spans = malloc(sizeof *cv->spans * (size_t)(n ? n : 1));
    if (!cv->spans)
        return -1;
    int m = add_items(cv->spans, 0, &c->u.cols.spans, L);
    for (int k = 0; k < c->u.cols.nper; k++) {
        const sp_period *p = &c->u.cols.per[k];
        for (int64_t base = 0; base + p->a < L; base += p->s)
            cv->spans[m++] = (sp_span){base + p->a, min64(L - 1, base + p->b)};
    }
    cv->nspans = normalise(cv->spans, m);
    return 0;
}

int sp_view_init(sp_view *v, const sp_plan *p, int64_t head, int64_t L)
{
    memset(v, 0, sizeof *v);
    v->plan = p;
    v->hp = sp_plan_head(p, head);
    v->head = head;
    v->L = L;
    v->B = p->block;
    v->nblocks = (L + p->block - 1) / p->block;
    v->rnd_qb = -1;
    for (int c = 0; c < v->hp->ncomps; c++) {
        const sp_comp *comp = &v->hp->comps[c];
        sp_cview *cv = &v->c[c];
        if (comp->kind == SP_C_ROWS) {
            cv->spans = malloc(sizeof *cv->spans * (size_t)comp->u.rows.n);
            if (!cv->spans)
                goto oom;
            cv->nspans = normalise(cv->spans, add_items(cv->spans, 0, &comp->u.rows, L));
        } else if (comp->kind == SP_C_COLS) {
            if (resolve_cols(cv, comp, L))
                goto oom;
        } else if (comp->kind == SP_C_RANDOM) {
            v->rnd_kb = malloc(sizeof *v->rnd_kb * (size_t)(2 * v->nblocks + 1));
            if (!v->rnd_kb)
                goto oom;
            v->rnd_scratch = v->rnd_kb + v->nblocks;
        }
    }
    return 0;
oom:
    sp_view_free(v);
    return -1;
}

void sp_view_free(sp_view *v)
{
    for (int c = 0; c < SP_MAX_COMPS; c++) {
        free(v->c[c].spans);
        v->c[c].spans = NULL;
    }
    free(v->rnd_kb);
    v->rnd_kb = NULL;
}

static bool in_spans(const sp_cview *cv, int64_t x)
{
    int lo = 0, hi = cv->nspans - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (x < cv->spans[mid].lo)
            hi = mid - 1;
        else if (x > cv->spans[mid].hi)
            lo = mid + 1;
        else
            return true;
    }
    return false;
}

/* Is there a value of s's spans in [lo, hi]? */
static bool spans_meet(const sp_cview *cv, int64_t lo, int64_t hi)
{
    for (int k = 0; k < cv->nspans; k++)
        if (cv->spans[k].lo <= hi && cv->spans[k].hi >= lo)
            return true;
    return false;
}

static bool has_offset(const sp_comp *c, int64_t d)
{
    int lo = 0, hi = c->u.offsets.n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (c->u.offsets.off[mid] == d)
            return true;
        if (c->u.offsets.off[mid] < d)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return false;
}

bool sp_view_has(sp_view *v, int c, int64_t i, int64_t j)
{
    const sp_comp *comp = &v->hp->comps[c];
    int64_t d = j - i;
    switch (comp->kind) {
    case SP_C_ROWS:
        return in_spans(&v->c[c], i);
    case SP_C_COLS:
        if (j < v->L)
            return in_spans(&v->c[c], j);
        /* Beyond L (whole-block touch tests): only the periodic classes. */
        for (int k = 0; k < comp->u.cols.nper; k++) {
            int64_t r = j % comp->u.cols.per[k].s;
            if (comp->u.cols.per[k].a <= r && r <= comp->u.cols.per[k].b)
                return true;
        }
        return false;
    case SP_C_DENSE:
        return true;
    case SP_C_BAND:
        return comp->u.band.lo <= d && d <= comp->u.band.hi && d % comp->u.band.dil == 0;
    case SP_C_BLOCKBAND: {
        int64_t bd = j / v->B - i / v->B;
        return comp->u.bband.lo <= bd && bd <= comp->u.bband.hi;
    }
    case SP_C_SEGMENT:
        return i / comp->u.segment == j / comp->u.segment;
    case SP_C_RESIDUE:
        return d % comp->u.residue == 0;
    case SP_C_OFFSETS:
        return has_offset(comp, d);
    case SP_C_RANDOM: {
        const int64_t *kb;
        int n = sp_view_random_blocks(v, c, i / v->B, &kb);
        for (int k = 0; k < n; k++)
            if (kb[k] == j / v->B)
                return true;
        return false;
    }
    }
    return false;
}

bool sp_view_owns(sp_view *v, int c, int64_t i, int64_t j)
{
    if (v->hp->causal && j > i)
        return false;
    if (!sp_view_has(v, c, i, j))
        return false;
    for (uint32_t m = v->hp->comps[c].excl; m; m &= m - 1)
        if (sp_view_has(v, __builtin_ctz(m), i, j))
            return false;
    return true;
}

/* Appends [lo, hi] by step to out when non-empty. */
static int put(sp_krange *out, int n, int cap, int64_t lo, int64_t hi, int64_t step)
{
    if (lo <= hi) {
        if (n < cap)
            out[n] = (sp_krange){lo, hi, step};
        n++;
    }
    return n;
}

int sp_view_ranges(sp_view *v, int c, int64_t i, sp_krange *out, int cap)
{
    const sp_comp *comp = &v->hp->comps[c];
    const int64_t jmax = v->hp->causal ? min64(i, v->L - 1) : v->L - 1;
    int n = 0;
    switch (comp->kind) {
    case SP_C_ROWS:
        if (in_spans(&v->c[c], i))
            n = put(out, n, cap, 0, jmax, 1);
        break;
    case SP_C_COLS:
        for (int k = 0; k < v->c[c].nspans && v->c[c].spans[k].lo <= jmax; k++)
            n = put(out, n, cap, v->c[c].spans[k].lo, min64(v->c[c].spans[k].hi, jmax), 1);
        break;
    case SP_C_DENSE:
        n = put(out, n, cap, 0, jmax, 1);
        break;
    case SP_C_BAND: {
        int64_t dil = comp->u.band.dil, lo = i + comp->u.band.lo;
        if (lo < 0) /* first key >= 0 in the class of i mod dil */
            lo += (floordiv(-lo - 1, dil) + 1) * dil;
        n = put(out, n, cap, lo, min64(i + comp->u.band.hi, jmax), dil);
        break;
    }
    case SP_C_BLOCKBAND: {
        int64_t qb = i / v->B;
        int64_t k0 = max64(0, qb + comp->u.bband.lo), k1 = min64(v->nblocks - 1, qb + comp->u.bband.hi);
        if (k0 <= k1)
            n = put(out, n, cap, k0 * v->B, min64((k1 + 1) * v->B - 1, jmax), 1);
        break;
    }
    case SP_C_SEGMENT: {
        int64_t s0 = i / comp->u.segment * comp->u.segment;
        n = put(out, n, cap, s0, min64(s0 + comp->u.segment - 1, jmax), 1);
        break;
    }
    case SP_C_RESIDUE:
        n = put(out, n, cap, i % comp->u.residue, jmax, comp->u.residue);
        break;
    case SP_C_OFFSETS:
        for (int k = 0; k < comp->u.offsets.n; k++) {
            int64_t j = i + comp->u.offsets.off[k];
            if (j >= 0 && j <= jmax)
                n = put(out, n, cap, j, j, 1);
        }
        break;
    case SP_C_RANDOM: {
        const int64_t *kb;
        int nb = sp_view_random_blocks(v, c, i / v->B, &kb);
        if (nb < 0)
            return -1;
        for (int k = 0; k < nb; k++)
            n = put(out, n, cap, kb[k] * v->B, min64(kb[k] * v->B + v->B - 1, jmax), 1);
        break;
    }
    }
    return n;
}

int64_t sp_view_row(sp_view *v, int64_t i, sp_pair_fn fn, void *arg)
{
    sp_krange stack[64], *r = stack;
    int cap = 64;
    int64_t count = 0;
    for (int c = 0; c < v->hp->ncomps; c++) {
        int n = sp_view_ranges(v, c, i, r, cap);
        if (n < 0)
            goto oom;
        if (n > cap) {
            if (r != stack)
                free(r);
            r = malloc(sizeof *r * (size_t)n);
            if (!r)
                return -1;
            cap = n;
            n = sp_view_ranges(v, c, i, r, cap);
        }
        bool test = v->hp->comps[c].excl != 0;
        for (int k = 0; k < n; k++)
            for (int64_t j = r[k].start; j <= r[k].end; j += r[k].step)
                if (!test || sp_view_owns(v, c, i, j)) {
                    if (fn)
                        fn(arg, c, i, j);
                    count++;
                }
    }
    if (r != stack)
        free(r);
    return count;
oom:
    if (r != stack)
        free(r);
    return -1;
}

/* ---- random blocks ------------------------------------------------------ */

/* Exists a multiple of m in [lo, hi]? */
static bool has_multiple(int64_t lo, int64_t hi, int64_t m)
{
    return lo <= hi && floordiv(hi, m) * m >= lo;
}

bool sp_view_touches_block(sp_view *v, int c, int64_t qb, int64_t kb)
{
    const sp_comp *comp = &v->hp->comps[c];
    const bool causal = v->hp->causal;
    const int64_t B = v->B;
    const int64_t i0 = qb * B, i1 = i0 + B - 1, j0 = kb * B, j1 = j0 + B - 1;
    if (causal && j0 > i1)
        return false;
    /* Offsets j-i the block reaches, every value in between being reached. */
    const int64_t dlo = j0 - i1, dhi = causal ? min64(0, j1 - i0) : j1 - i0;
    switch (comp->kind) {
    case SP_C_ROWS:
        return spans_meet(&v->c[c], causal ? max64(i0, j0) : i0, i1);
    case SP_C_COLS: {
        int64_t hi = causal ? min64(j1, i1) : j1;
        if (spans_meet(&v->c[c], j0, hi))
            return true;
        for (int64_t j = max64(j0, v->L); j <= hi; j++)
            if (sp_view_has(v, c, i0, j))
                return true;
        return false;
    }
    case SP_C_DENSE:
        return true;
    case SP_C_BAND:
        return has_multiple(max64(dlo, comp->u.band.lo), min64(dhi, comp->u.band.hi), comp->u.band.dil);
    case SP_C_BLOCKBAND:
        return comp->u.bband.lo <= kb - qb && kb - qb <= comp->u.bband.hi;
    case SP_C_SEGMENT:
        /* A segment that meets both blocks holds a pair of them, and under
         * causal one with j <= i, given j0 <= i1 (checked above). */
        return max64(i0, j0) / comp->u.segment <= min64(i1, j1) / comp->u.segment;
    case SP_C_RESIDUE:
        return has_multiple(dlo, dhi, comp->u.residue);
    case SP_C_OFFSETS:
        for (int k = 0; k < comp->u.offsets.n; k++)
            if (dlo <= comp->u.offsets.off[k] && comp->u.offsets.off[k] <= dhi)
                return true;
        return false;
    case SP_C_RANDOM:
        return false;
    }
    return false;
}

int sp_view_random_blocks(sp_view *v, int c, int64_t qb, const int64_t **kb)
{
    const sp_comp *comp = &v->hp->comps[c];
    if (v->rnd_qb != qb) {
        int64_t last = v->hp->causal ? min64(qb, v->nblocks - 1) : v->nblocks - 1;
        int64_t ncand = 0;
        for (int64_t b = 0; b <= last; b++) {
            bool touched = false;
            for (int o = 0; o < v->hp->ncomps && !touched; o++)
                touched = o != c && sp_view_touches_block(v, o, qb, b);
            if (!touched)
                v->rnd_scratch[ncand++] = b;
        }
        uint64_t key = sp_rng_key(comp->u.random.seed, (uint64_t)v->head, (uint64_t)qb);
        int n = sp_rng_choose(key, ncand, comp->u.random.r, v->rnd_kb);
        for (int k = 0; k < n; k++)
            v->rnd_kb[k] = v->rnd_scratch[v->rnd_kb[k]];
        v->rnd_n = n;
        v->rnd_qb = qb;
    }
    *kb = v->rnd_kb;
    return v->rnd_n;
}
