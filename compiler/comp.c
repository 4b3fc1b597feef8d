/* Component kinds: the diagonal form, the pass, the transpose and the
 * plan's invariants (comp.h says what each means). */
#include "comp.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(SP_MAX_COMPS <= 32, "excl is a 32-bit mask of earlier components");
_Static_assert(SP_DFORM_INF < INT64_MAX / 4, "an unbounded end plus two positions must not overflow");

static int64_t floordiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* ------------------------------------------------------------ diagonal */

bool sp_comp_dform(const sp_comp *c, int64_t B, sp_dform *f)
{
    const int64_t inf = SP_DFORM_INF;
    *f = (sp_dform){.q = 1, .lo = -inf, .hi = inf, .m = 1};
    switch (c->kind) {
    case SP_C_DENSE:
        return true;
    case SP_C_BAND:
        f->lo = c->u.band.lo, f->hi = c->u.band.hi, f->m = c->u.band.dil;
        return true;
    case SP_C_BLOCKBAND:
        f->q = B, f->lo = c->u.bband.lo, f->hi = c->u.bband.hi;
        return true;
    case SP_C_SEGMENT:
        f->q = c->u.segment, f->lo = 0, f->hi = 0;
        return true;
    case SP_C_RESIDUE:
        f->m = c->u.residue;
        return true;
    case SP_C_OFFSETS:
        f->list = c->u.offsets.off, f->nlist = c->u.offsets.n;
        f->lo = f->list[0], f->hi = f->list[f->nlist - 1];
        return true;
    case SP_C_ROWS:
    case SP_C_COLS:
    case SP_C_RANDOM:
        return false;
    }
    return false;
}

bool sp_dform_has_t(const sp_dform *f, int64_t t)
{
    if (t < f->lo || t > f->hi || t % f->m != 0)
        return false;
    if (!f->list)
        return true;
    int lo = 0, hi = f->nlist - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (f->list[mid] == t)
            return true;
        if (f->list[mid] < t)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return false;
}

bool sp_dform_has(const sp_dform *f, int64_t i, int64_t j)
{
    return sp_dform_has_t(f, f->q == 1 ? j - i : j / f->q - i / f->q);
}

void sp_dform_box(const sp_dform *f, int64_t i0, int64_t i1, int64_t j0, int64_t j1, int64_t *tlo,
                  int64_t *thi)
{
    /* floor(j/q) - floor(i/q) is monotone in each of j and -i, and steps
     * by at most one as either moves by one: every value between is taken. */
    *tlo = j0 / f->q - i1 / f->q;
    *thi = j1 / f->q - i0 / f->q;
}

static bool has_multiple(int64_t lo, int64_t hi, int64_t m)
{
    return lo <= hi && floordiv(hi, m) * m >= lo;
}

bool sp_dform_meets(const sp_dform *f, int64_t tlo, int64_t thi)
{
    tlo = max64(tlo, f->lo), thi = min64(thi, f->hi);
    if (!f->list)
        return has_multiple(tlo, thi, f->m);
    for (int k = 0; k < f->nlist; k++)
        if (tlo <= f->list[k] && f->list[k] <= thi)
            return true;
    return false;
}

void sp_dform_offsets(const sp_dform *f, int64_t *lo, int64_t *hi, int64_t *m)
{
    assert(f->q == 1 || f->m == 1);
    /* Blocks t apart hold the offsets from t*q - (q-1) to t*q + (q-1). */
    bool blo = f->lo > -SP_DFORM_INF, bhi = f->hi < SP_DFORM_INF;
    *lo = blo ? f->lo * f->q - (f->q - 1) : -SP_DFORM_INF;
    *hi = bhi ? f->hi * f->q + (f->q - 1) : SP_DFORM_INF;
    *m = f->m;
}

/* ---------------------------------------------------------------- pass */

sp_pass sp_comp_pass(const sp_comp *c)
{
    if (c->kind == SP_C_ROWS)
        return SP_PASS_ROWS;
    if ((c->kind == SP_C_BAND && c->u.band.dil > 1) || c->kind == SP_C_RESIDUE)
        return SP_PASS_REMAP;
    return SP_PASS_DIRECT;
}

int64_t sp_comp_step(const sp_comp *c)
{
    if (sp_comp_pass(c) != SP_PASS_REMAP)
        return 1;
    return c->kind == SP_C_BAND ? c->u.band.dil : c->u.residue;
}

int64_t sp_plan_max_random(const sp_plan *p)
{
    int64_t r = 0;
    for (int c = 0; c < p->nclasses; c++)
        for (int k = 0; k < p->classes[c].ncomps; k++)
            if (p->classes[c].comps[k].kind == SP_C_RANDOM && p->classes[c].comps[k].u.random.r > r)
                r = p->classes[c].comps[k].u.random.r;
    return r;
}

/* ------------------------------------------------------------- lowering */

int sp_plan_lower(const sp_plan *p, sp_direction dir, sp_arena *a, sp_lowered **out)
{
    assert((dir == SP_DIR_DKDV) == (p->transposed_of != NULL));
    sp_lowered *l = SP_NEW(a, sp_lowered);
    int cap = 0;
    for (int cls = 0; cls < p->nclasses; cls++)
        cap += p->classes[cls].ncomps + 1;
    if (!l || !(l->pass = SP_NEWN(a, sp_passdef, cap > 0 ? cap : 1)))
        return -1;
    l->plan = p;
    l->dir = dir;
    const sp_combine combine = dir == SP_DIR_FORWARD ? SP_COMBINE_LSE : SP_COMBINE_SUM;
    for (int cls = 0; cls < p->nclasses; cls++) {
        const sp_headplan *hp = &p->classes[cls];
        bool direct = false;
        for (int k = 0; k < hp->ncomps; k++)
            direct |= sp_comp_pass(&hp->comps[k]) == SP_PASS_DIRECT;
        if (direct)
            l->pass[l->npasses++] = (sp_passdef){SP_PASS_DIRECT, cls, -1, 1, combine};
        for (int pass = SP_PASS_REMAP; pass <= SP_PASS_ROWS; pass++)
            for (int k = 0; k < hp->ncomps; k++)
                if (sp_comp_pass(&hp->comps[k]) == (sp_pass)pass)
                    l->pass[l->npasses++] =
                        (sp_passdef){(sp_pass)pass, cls, k, sp_comp_step(&hp->comps[k]), combine};
    }
    assert(l->npasses <= cap);
    *out = l;
    return 0;
}

int sp_lowered_find(const sp_lowered *l, sp_pass kind, int cls, int comp)
{
    for (int x = 0; x < l->npasses; x++)
        if (l->pass[x].kind == kind && l->pass[x].cls == cls &&
            (kind == SP_PASS_DIRECT || l->pass[x].comp == comp))
            return x;
    return -1;
}

/* ------------------------------------------------------------ transpose */

static int transpose_comp(const sp_comp *c, sp_arena *a, sp_comp *t)
{
    *t = *c;
    switch (c->kind) {
    case SP_C_ROWS: /* i in S: every key   ->  j in S: every row */
        t->kind = SP_C_COLS;
        t->u.cols = c->u.rows;
        break;
    case SP_C_COLS:
        t->kind = SP_C_ROWS;
        t->u.rows = c->u.cols;
        break;
    case SP_C_DENSE:
    case SP_C_SEGMENT:
    case SP_C_RESIDUE:
    case SP_C_RANDOM: /* symmetric, or inverted by the views from transposed_of */
        break;
    case SP_C_BAND:
        t->u.band.lo = -c->u.band.hi;
        t->u.band.hi = -c->u.band.lo;
        break;
    case SP_C_BLOCKBAND:
        t->u.bband.lo = -c->u.bband.hi;
        t->u.bband.hi = -c->u.bband.lo;
        break;
    case SP_C_OFFSETS: {
        int n = c->u.offsets.n;
        int64_t *off = SP_NEWN(a, int64_t, n);
        if (!off)
            return -1;
        for (int k = 0; k < n; k++)
            off[k] = -c->u.offsets.off[n - 1 - k];
        t->u.offsets.off = off;
        break;
    }
    }
    return 0;
}

int sp_plan_transpose(const sp_plan *p, sp_arena *a, sp_plan **out)
{
    assert(!p->transposed_of);
    sp_plan *t = SP_NEW(a, sp_plan);
    if (!t)
        return -1;
    *t = *p;
    t->transposed_of = p;
    t->classes = SP_NEWN(a, sp_headplan, p->nclasses);
    if (!t->classes)
        return -1;
    for (int cls = 0; cls < p->nclasses; cls++) {
        const sp_headplan *hp = &p->classes[cls];
        sp_headplan *th = &t->classes[cls];
        *th = *hp;
        th->causal = hp->anticausal;
        th->anticausal = hp->causal;
        for (int k = 0; k < hp->ncomps; k++)
            if (transpose_comp(&hp->comps[k], a, &th->comps[k]))
                return -1;
    }
    assert(!sp_plan_verify(t));
    *out = t;
    return 0;
}

/* ------------------------------------------------------------ verifier */

static const char *verify_posset(const sp_posset *s, bool periods_allowed)
{
    if (s->spans.n < 0 || s->nper < 0 || (s->spans.n == 0 && s->nper == 0))
        return "a position set is empty";
    if (s->nper > 0 && !periods_allowed)
        return "global rows have periodic classes outside a transposed plan";
    for (int k = 0; k < s->nper; k++)
        if (s->per[k].s < 1 || s->per[k].a < 0 || s->per[k].a > s->per[k].b ||
            s->per[k].b >= s->per[k].s)
            return "a periodic class is not a..b mod s with 0 <= a <= b < s";
    return NULL;
}

static const char *verify_comp(const sp_plan *p, const sp_headplan *hp, int k)
{
    const sp_comp *c = &hp->comps[k];
    if (c->excl >> k)
        return "a component excludes itself or a later component";
    switch (c->kind) {
    case SP_C_ROWS:
        if (!p->transposed_of && (k != 0 || c->excl))
            return "global rows are not the first component, or exclude another";
        return verify_posset(&c->u.rows, p->transposed_of != NULL);
    case SP_C_COLS:
        return verify_posset(&c->u.cols, true);
    case SP_C_DENSE:
        return NULL;
    case SP_C_BAND:
        if (c->u.band.dil < 1 || c->u.band.lo > c->u.band.hi)
            return "a band is empty or its dilation is below 1";
        if (c->u.band.lo % c->u.band.dil || c->u.band.hi % c->u.band.dil)
            return "a dilated band's ends are not multiples of its dilation";
        return NULL;
    case SP_C_BLOCKBAND:
        return c->u.bband.lo > c->u.bband.hi ? "a block band is empty" : NULL;
    case SP_C_SEGMENT:
        return c->u.segment < 1 ? "a segment length is below 1" : NULL;
    case SP_C_RESIDUE:
        return c->u.residue < 2 ? "a residue class has a step below 2" : NULL;
    case SP_C_OFFSETS:
        if (c->u.offsets.n < 1 || !c->u.offsets.off)
            return "an offset list is empty";
        for (int x = 1; x < c->u.offsets.n; x++)
            if (c->u.offsets.off[x - 1] >= c->u.offsets.off[x])
                return "an offset list is not ascending and distinct";
        return NULL;
    case SP_C_RANDOM:
        return c->u.random.r < 1 ? "a random rule draws no block" : NULL;
    }
    return "a component of unknown kind";
}

const char *sp_plan_verify(const sp_plan *p)
{
    if (p->block < 1)
        return "the block size is below 1";
    if (p->nclasses < 1 || !p->classes)
        return "the plan has no class of heads";
    if (p->transposed_of && p->transposed_of->nclasses != p->nclasses)
        return "a transposed plan's classes differ from its plan's";
    for (int cls = 0; cls < p->nclasses; cls++) {
        const sp_headplan *hp = &p->classes[cls];
        if (hp->ncomps < 0 || hp->ncomps > SP_MAX_COMPS)
            return "a class has more than SP_MAX_COMPS components";
        if (hp->causal && hp->anticausal)
            return "a class is cut both ways";
        if (hp->anticausal && !p->transposed_of)
            return "an anticausal cut outside a transposed plan";
        int random = 0;
        for (int k = 0; k < hp->ncomps; k++) {
            const char *e = verify_comp(p, hp, k);
            if (e)
                return e;
            random += hp->comps[k].kind == SP_C_RANDOM;
        }
        if (random > 1)
            return "a class has two random components";
    }
    if (p->nheads < 0 || (p->nheads > 0 && !p->head_class))
        return "the head map is missing";
    for (int64_t h = 0; h < p->nheads; h++)
        if (p->head_class[h] < 0 || p->head_class[h] >= p->nclasses)
            return "a head maps outside the classes";
    return NULL;
}
