/* Views: one head's plan at one sequence length. Everything that enumerates
 * pairs (the reference backend, stats, the mask picture, the tests) goes
 * through here; what each diagonal kind holds comes from its form
 * (comp.h), so the meaning of each component is written once. A view of a
 * transposed plan enumerates, for each key, the rows that attend it. */
#include "comp.h"
#include "plan.h"
#include "rng.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

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

/* The positions of a set below L: its spans and, for each period, the
 * runs s*p+a .. s*p+b, as one sorted list of disjoint runs. */
static int resolve_posset(sp_cview *cv, const sp_posset *ps, int64_t L)
{
    int64_t n = ps->spans.n;
    for (int k = 0; k < ps->nper; k++)
        n += L / ps->per[k].s + 1;
    if (n > (int64_t)1 << 30)
        return -1;
    cv->spans = malloc(sizeof *cv->spans * (size_t)(n ? n : 1));
    if (!cv->spans)
        return -1;
    int m = add_items(cv->spans, 0, &ps->spans, L);
    for (int k = 0; k < ps->nper; k++) {
        const sp_period *p = &ps->per[k];
        for (int64_t base = 0; base + p->a < L; base += p->s)
            cv->spans[m++] = (sp_span){base + p->a, min64(L - 1, base + p->b)};
    }
    cv->nspans = normalise(cv->spans, m);
    return 0;
}

static int invert_random(sp_view *v, int c);

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
        if (comp->kind == SP_C_ROWS || comp->kind == SP_C_COLS) {
            if (resolve_posset(cv, comp->kind == SP_C_ROWS ? &comp->u.rows : &comp->u.cols, L))
                goto oom;
        } else if (comp->kind == SP_C_RANDOM) {
            v->rnd_kb = malloc(sizeof *v->rnd_kb * (size_t)(2 * v->nblocks + 1));
            if (!v->rnd_kb)
                goto oom;
            v->rnd_scratch = v->rnd_kb + v->nblocks;
            if (p->transposed_of && invert_random(v, c))
                goto oom;
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
    free(v->inv_start);
    free(v->inv);
    v->rnd_kb = v->inv_start = v->inv = NULL;
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

/* Is x in the position set (whose view is cv)? Beyond L, where whole-block
 * touch tests look, only the periodic classes hold positions. */
static bool posset_has(const sp_cview *cv, const sp_posset *ps, int64_t x, int64_t L)
{
    if (x < L)
        return in_spans(cv, x);
    for (int k = 0; k < ps->nper; k++) {
        int64_t r = x % ps->per[k].s;
        if (ps->per[k].a <= r && r <= ps->per[k].b)
            return true;
    }
    return false;
}

bool sp_view_has(sp_view *v, int c, int64_t i, int64_t j)
{
    const sp_comp *comp = &v->hp->comps[c];
    sp_dform f;
    if (sp_comp_dform(comp, v->B, &f))
        return sp_dform_has(&f, i, j);
    switch (comp->kind) {
    case SP_C_ROWS:
        return posset_has(&v->c[c], &comp->u.rows, i, v->L);
    case SP_C_COLS:
        return posset_has(&v->c[c], &comp->u.cols, j, v->L);
    case SP_C_RANDOM: {
        const int64_t *kb;
        int n = sp_view_random_blocks(v, c, i / v->B, &kb);
        for (int k = 0; k < n; k++)
            if (kb[k] == j / v->B)
                return true;
        return false;
    }
    default:
        assert(!"a diagonal kind without a form");
        return false;
    }
}

bool sp_view_owns(sp_view *v, int c, int64_t i, int64_t j)
{
    if ((v->hp->causal && j > i) || (v->hp->anticausal && j < i))
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

/* The keys jmin..jmax of row i that a diagonal form holds. */
static int diag_ranges(const sp_dform *f, int64_t i, int64_t jmin, int64_t jmax, sp_krange *out,
                       int cap)
{
    int n = 0;
    if (f->list) {
        for (int k = 0; k < f->nlist; k++) {
            int64_t j = i + f->list[k];
            if (jmin <= j && j <= jmax)
                n = put(out, n, cap, j, j, 1);
        }
        return n;
    }
    if (f->q > 1) {
        int64_t b = i / f->q;
        return put(out, n, cap, max64((b + f->lo) * f->q, jmin),
                   min64((b + f->hi) * f->q + f->q - 1, jmax), 1);
    }
    /* The first key >= jmin in the class of i mod m. */
    int64_t lo = max64(i + f->lo, jmin), r = (i - lo) % f->m;
    lo += r < 0 ? r + f->m : r;
    return put(out, n, cap, lo, min64(i + f->hi, jmax), f->m);
}

int sp_view_ranges(sp_view *v, int c, int64_t i, sp_krange *out, int cap)
{
    const sp_comp *comp = &v->hp->comps[c];
    const int64_t jmax = v->hp->causal ? min64(i, v->L - 1) : v->L - 1;
    const int64_t jmin = v->hp->anticausal ? max64(i, 0) : 0;
    sp_dform f;
    if (sp_comp_dform(comp, v->B, &f))
        return diag_ranges(&f, i, jmin, jmax, out, cap);
    int n = 0;
    switch (comp->kind) {
    case SP_C_ROWS:
        if (in_spans(&v->c[c], i))
            n = put(out, n, cap, jmin, jmax, 1);
        break;
    case SP_C_COLS:
        for (int k = 0; k < v->c[c].nspans && v->c[c].spans[k].lo <= jmax; k++)
            n = put(out, n, cap, max64(v->c[c].spans[k].lo, jmin), min64(v->c[c].spans[k].hi, jmax), 1);
        break;
    case SP_C_RANDOM: {
        const int64_t *kb;
        int nb = sp_view_random_blocks(v, c, i / v->B, &kb);
        if (nb < 0)
            return -1;
        for (int k = 0; k < nb; k++)
            n = put(out, n, cap, max64(kb[k] * v->B, jmin), min64(kb[k] * v->B + v->B - 1, jmax), 1);
        break;
    }
    default:
        assert(!"a diagonal kind without a form");
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

/* Does the position set of component c hold a position in [lo, hi]? */
static bool posset_meets(sp_view *v, int c, const sp_posset *ps, int64_t lo, int64_t hi)
{
    if (spans_meet(&v->c[c], lo, hi))
        return true;
    for (int64_t x = max64(lo, v->L); x <= hi; x++)
        if (posset_has(&v->c[c], ps, x, v->L))
            return true;
    return false;
}

bool sp_view_touches_block(sp_view *v, int c, int64_t qb, int64_t kb)
{
    const sp_comp *comp = &v->hp->comps[c];
    const bool causal = v->hp->causal, anti = v->hp->anticausal;
    const int64_t B = v->B;
    const int64_t i0 = qb * B, i1 = i0 + B - 1, j0 = kb * B, j1 = j0 + B - 1;
    if ((causal && j0 > i1) || (anti && i0 > j1))
        return false;
    sp_dform f;
    if (sp_comp_dform(comp, B, &f)) {
        /* The cut is t <= 0 (t >= 0): exact where q = 1; where q > 1 (block
         * bands, q = B, and segments) a form that meets both whole blocks
         * holds a pair on the cut's side, given the test above. */
        int64_t tlo, thi;
        sp_dform_box(&f, i0, i1, j0, j1, &tlo, &thi);
        if (causal)
            thi = min64(thi, 0);
        if (anti)
            tlo = max64(tlo, 0);
        return sp_dform_meets(&f, tlo, thi);
    }
    switch (comp->kind) {
    case SP_C_ROWS:
        return posset_meets(v, c, &comp->u.rows, causal ? max64(i0, j0) : i0, anti ? min64(i1, j1) : i1);
    case SP_C_COLS:
        return posset_meets(v, c, &comp->u.cols, anti ? max64(j0, i0) : j0, causal ? min64(j1, i1) : j1);
    default: /* random: drawn among the blocks no other component touches */
        return false;
    }
}

int sp_view_random_blocks(sp_view *v, int c, int64_t qb, const int64_t **kb)
{
    const sp_comp *comp = &v->hp->comps[c];
    if (v->inv_start) {
        *kb = v->inv + v->inv_start[qb];
        return (int)(v->inv_start[qb + 1] - v->inv_start[qb]);
    }
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

/* Inverts the draws of the plan that v's plan transposes: for each key
 * block, the query blocks whose draw holds it. */
static int invert_random(sp_view *v, int c)
{
    const int64_t nb = v->nblocks;
    sp_view o;
    if (sp_view_init(&o, v->plan->transposed_of, v->head, v->L) != 0)
        return -1;
    int rc = -1;
    int64_t *count = calloc((size_t)nb + 1, sizeof *count);
    v->inv_start = calloc((size_t)nb + 2, sizeof *v->inv_start);
    if (!count || !v->inv_start)
        goto done;
    for (int pass = 0; pass < 2; pass++) {
        for (int64_t qb = 0; qb < nb; qb++) {
            const int64_t *kb;
            int n = sp_view_random_blocks(&o, c, qb, &kb);
            if (n < 0)
                goto done;
            for (int k = 0; k < n; k++) {
                if (pass == 0)
                    v->inv_start[kb[k] + 1]++;
                else
                    v->inv[v->inv_start[kb[k]] + count[kb[k]]++] = qb;
            }
        }
        if (pass == 0) {
            for (int64_t b = 0; b < nb; b++)
                v->inv_start[b + 1] += v->inv_start[b];
            v->inv_start[nb + 1] = v->inv_start[nb];
            if (!(v->inv = malloc(sizeof *v->inv * (size_t)(v->inv_start[nb] + 1))))
                goto done;
        }
    }
    rc = 0;
done:
    free(count);
    sp_view_free(&o);
    return rc;
}
