/* Pattern IR -> kernel plan. For each class of heads (heads with the same
 * rules) the rules become components, simplified where that keeps the set
 * of pairs exact (causal cuts, merged bands, subsumed residues), then put in
 * owner order: the cheapest ownership test first (whole rows, gathered
 * columns), diagonal structures next, random blocks last (they are disjoint
 * from everything by construction). Each component then learns which earlier
 * components it may overlap, so kernels test ownership only where needed. */
#include "plan.h"
#include "comp.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

typedef struct band {
    int64_t lo, hi, dil;
} band;

typedef struct builder {
    sp_arena *a;
    sp_diag *d;
    const sp_pattern *p;
    sp_loc loc;
    bool causal;
    bool dense;
    sp_setitem *rows, *cols;
    int nrows, ncols;
    sp_period *per;
    int nper;
    band *bands;
    int nbands;
    band *bbands; /* dil unused */
    int nbbands;
    int64_t *segs, *res, *offs;
    int nsegs, nres, noffs;
    const sp_rule *random;
} builder;

/* Arrays grow by doubling in the arena; a rule adds at most a few entries. */
#define PUSH(b, arr, n, val)                                                           \
    do {                                                                               \
        if (((n) & ((n) - 1)) == 0) {                                                  \
            size_t sz_ = sizeof *(arr);                                                \
            void *g_ = sp_arena_grow((b)->a, (arr), sz_ * (size_t)(n),                 \
                                     sz_ * (size_t)((n) ? 2 * (n) : 1));               \
            if (!g_)                                                                   \
                return -1;                                                             \
            (arr) = g_;                                                                \
        }                                                                              \
        (arr)[(n)++] = (val);                                                          \
    } while (0)

static int64_t floordiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }
static int64_t ceildiv(int64_t a, int64_t b) { return -floordiv(-a, b); }

static int add_set(builder *b, const sp_set *s, bool rows, bool cols)
{
    for (int k = 0; k < s->n; k++) {
        if (rows)
            PUSH(b, b->rows, b->nrows, s->items[k]);
        if (cols)
            PUSH(b, b->cols, b->ncols, s->items[k]);
    }
    return 0;
}

static int add_band(builder *b, int64_t lo, int64_t hi, int64_t dil)
{
    if (b->causal && hi > 0)
        hi = 0;
    /* Only multiples of the dilation are attended: tighten the ends to them. */
    lo = ceildiv(lo, dil) * dil;
    hi = floordiv(hi, dil) * dil;
    if (lo > hi)
        return 0;
    if (lo == hi)
        dil = 1;
    band bd = {lo, hi, dil};
    PUSH(b, b->bands, b->nbands, bd);
    return 0;
}

static int add_rule(builder *b, const sp_rule *r)
{
    switch (r->kind) {
    case SP_R_DENSE:
        b->dense = true;
        return 0;
    case SP_R_WINDOW:
        return add_band(b, r->u.window.lo, r->u.window.hi, r->u.window.dil);
    case SP_R_WINDOW_EXP:
        PUSH(b, b->offs, b->noffs, 0);
        for (int64_t g = 1; g <= r->u.wexp.w; g *= 2) {
            PUSH(b, b->offs, b->noffs, -g);
            if (!b->causal)
                PUSH(b, b->offs, b->noffs, g);
        }
        return 0;
    case SP_R_BLOCK_WINDOW: {
        int64_t lo = r->u.bwindow.lo, hi = r->u.bwindow.hi;
        if (b->causal && hi > 0)
            hi = 0;
        if (lo <= hi) {
            band bb = {lo, hi, 1};
            PUSH(b, b->bbands, b->nbbands, bb);
        }
        return 0;
    }
    case SP_R_STRIDE:
        if (r->u.stride.s == 1)
            b->dense = true;
        else
            PUSH(b, b->res, b->nres, r->u.stride.s);
        return 0;
    case SP_R_SEGMENT:
        PUSH(b, b->segs, b->nsegs, r->u.segment.s);
        return 0;
    case SP_R_COLUMNS: {
        sp_period per = {r->u.columns.a, r->u.columns.b, r->u.columns.s};
        if (per.a == 0 && per.b == per.s - 1)
            b->dense = true;
        else
            PUSH(b, b->per, b->nper, per);
        return 0;
    }
    case SP_R_GLOBAL:
        return add_set(b, &r->u.set, true, true);
    case SP_R_GLOBAL_ROWS:
        return add_set(b, &r->u.set, true, false);
    case SP_R_GLOBAL_COLS:
        return add_set(b, &r->u.set, false, true);
    case SP_R_RANDOM:
        b->random = r;
        return 0;
    }
    return 0;
}

static int cmp_i64(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, c = *(const int64_t *)y;
    return (a > c) - (a < c);
}

/* Sorts and removes duplicates; returns the new count. */
static int uniq_i64(int64_t *v, int n)
{
    if (n == 0)
        return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_i64);
    int m = 0;
    for (int k = 0; k < n; k++)
        if (m == 0 || v[m - 1] != v[k])
            v[m++] = v[k];
    return m;
}

static int cmp_band(const void *x, const void *y)
{
    const band *a = x, *c = y;
    if (a->dil != c->dil)
        return (a->dil > c->dil) - (a->dil < c->dil);
    return (a->lo > c->lo) - (a->lo < c->lo);
}

/* Bands of the same dilation whose ends are multiples of it (add_band made
 * them so) and that overlap or are one step apart are one band. */
static int merge_bands(band *v, int n)
{
    if (n == 0)
        return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_band);
    int m = 0;
    for (int k = 0; k < n; k++) {
        if (m > 0 && v[m - 1].dil == v[k].dil && v[k].lo <= v[m - 1].hi + v[k].dil) {
            if (v[k].hi > v[m - 1].hi)
                v[m - 1].hi = v[k].hi;
        } else {
            v[m++] = v[k];
        }
    }
    return m;
}

/* A residue class mod s2 lies inside the class mod s1 when s1 divides s2. */
static void prune_residues(builder *b)
{
    b->nres = uniq_i64(b->res, b->nres);
    int m = 0;
    for (int k = 0; k < b->nres; k++) {
        bool sub = false;
        for (int x = 0; x < m; x++)
            sub |= b->res[k] % b->res[x] == 0;
        if (!sub)
            b->res[m++] = b->res[k];
    }
    b->nres = m;
}

/* Offsets inside a plain band are that band's pairs already. */
static void prune_offsets(builder *b)
{
    b->noffs = uniq_i64(b->offs, b->noffs);
    int m = 0;
    for (int k = 0; k < b->noffs; k++) {
        bool in = false;
        for (int x = 0; x < b->nbands; x++)
            in |= b->bands[x].dil == 1 && b->bands[x].lo <= b->offs[k] && b->offs[k] <= b->bands[x].hi;
        if (!in)
            b->offs[m++] = b->offs[k];
    }
    b->noffs = m;
}

/* ---- which components may share pairs ---------------------------------- */

/* The offsets j-i a diagonal component can have (comp.h, sp_dform_offsets):
 * [lo, hi] and multiples of mod, or exactly pts. Components that are not
 * diagonals return false. */
typedef struct dset {
    int64_t lo, hi, mod;
    const int64_t *pts; /* OFFSETS: the exact offsets */
    int npts;
} dset;

static bool diag_set(const sp_comp *c, int64_t B, bool causal, dset *s)
{
    sp_dform f;
    memset(s, 0, sizeof *s);
    if (!sp_comp_dform(c, B, &f))
        return false;
    sp_dform_offsets(&f, &s->lo, &s->hi, &s->mod);
    s->pts = f.list; /* a list only with q = 1: exact offsets */
    s->npts = f.nlist;
    if (causal && s->hi > 0)
        s->hi = 0;
    return true;
}

static int64_t gcd64(int64_t a, int64_t b)
{
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static bool has_multiple(int64_t lo, int64_t hi, int64_t m)
{
    return lo <= hi && floordiv(hi, m) * m >= lo;
}

static bool in_dset(const dset *s, int64_t x)
{
    if (x < s->lo || x > s->hi || x % s->mod != 0)
        return false;
    if (!s->pts)
        return true;
    return bsearch(&x, s->pts, (size_t)s->npts, sizeof x, cmp_i64) != NULL;
}

static bool dsets_meet(const dset *x, const dset *y)
{
    int64_t lo = x->lo > y->lo ? x->lo : y->lo, hi = x->hi < y->hi ? x->hi : y->hi;
    if (lo > hi)
        return false;
    if (x->pts || y->pts) {
        const dset *p = x->pts ? x : y, *o = x->pts ? y : x;
        for (int k = 0; k < p->npts; k++)
            if (in_dset(o, p->pts[k]))
                return true;
        return false;
    }
    /* lcm(mx, my) beyond the width of any offset range means only 0 is common. */
    int64_t g = gcd64(x->mod, y->mod), l = x->mod / g;
    if (l > 8 * SP_MAX_VALUE / y->mod)
        return lo <= 0 && 0 <= hi;
    return has_multiple(lo, hi, l * y->mod);
}

static bool may_overlap(const sp_comp *x, const sp_comp *y, int64_t B, bool causal)
{
    if (x->kind == SP_C_RANDOM || y->kind == SP_C_RANDOM)
        return false; /* random blocks are drawn among untouched blocks */
    dset dx, dy;
    if (diag_set(x, B, causal, &dx) && diag_set(y, B, causal, &dy))
        return dsets_meet(&dx, &dy);
    return true;
}

/* ---- assembling a class ------------------------------------------------ */

static sp_comp *new_comp(builder *b, sp_headplan *hp, sp_comp_kind kind)
{
    if (hp->ncomps == SP_MAX_COMPS) {
        sp_diag_error(b->d, b->loc,
                      "pattern '%s' needs more than %d components for one head; merge some rules",
                      b->p->name, SP_MAX_COMPS);
        return NULL;
    }
    sp_comp *c = &hp->comps[hp->ncomps++];
    memset(c, 0, sizeof *c);
    c->kind = kind;
    return c;
}

static int add_bands(builder *b, sp_headplan *hp, bool dilated)
{
    for (int k = 0; k < b->nbands; k++) {
        if ((b->bands[k].dil > 1) != dilated)
            continue;
        sp_comp *c = new_comp(b, hp, SP_C_BAND);
        if (!c)
            return -1;
        c->u.band.lo = b->bands[k].lo;
        c->u.band.hi = b->bands[k].hi;
        c->u.band.dil = b->bands[k].dil;
    }
    return 0;
}

static int emit_comps(builder *b, sp_headplan *hp)
{
    sp_comp *c;
    hp->causal = b->causal;
    if (b->dense) {
        /* Every pair: the other rules add nothing, and every block is
         * touched, so random blocks have no candidates. */
        return new_comp(b, hp, SP_C_DENSE) ? 0 : -1;
    }
    if (b->nrows) {
        if (!(c = new_comp(b, hp, SP_C_ROWS)))
            return -1;
        c->u.rows.spans = (sp_set){b->rows, b->nrows};
    }
    if (b->ncols || b->nper) {
        if (!(c = new_comp(b, hp, SP_C_COLS)))
            return -1;
        c->u.cols.spans = (sp_set){b->cols, b->ncols};
        c->u.cols.per = b->per;
        c->u.cols.nper = b->nper;
    }
    if (add_bands(b, hp, false))
        return -1;
    for (int k = 0; k < b->nbbands; k++) {
        if (!(c = new_comp(b, hp, SP_C_BLOCKBAND)))
            return -1;
        c->u.bband.lo = b->bbands[k].lo;
        c->u.bband.hi = b->bbands[k].hi;
    }
    for (int k = 0; k < b->nsegs; k++) {
        if (!(c = new_comp(b, hp, SP_C_SEGMENT)))
            return -1;
        c->u.segment = b->segs[k];
    }
    if (add_bands(b, hp, true))
        return -1;
    for (int k = 0; k < b->nres; k++) {
        if (!(c = new_comp(b, hp, SP_C_RESIDUE)))
            return -1;
        c->u.residue = b->res[k];
    }
    if (b->noffs) {
        if (!(c = new_comp(b, hp, SP_C_OFFSETS)))
            return -1;
        c->u.offsets.off = b->offs;
        c->u.offsets.n = b->noffs;
    }
    if (b->random) {
        if (!(c = new_comp(b, hp, SP_C_RANDOM)))
            return -1;
        c->u.random.r = b->random->u.random.r;
        c->u.random.seed = b->random->u.random.seed;
    }
    for (int k = 0; k < hp->ncomps; k++)
        for (int e = 0; e < k; e++)
            if (may_overlap(&hp->comps[e], &hp->comps[k], b->p->block, hp->causal))
                hp->comps[k].excl |= 1u << e;
    return 0;
}

static int build_class(sp_arena *a, sp_diag *d, const sp_pattern *p, const sp_group *g,
                       sp_headplan *hp)
{
    builder b = {.a = a, .d = d, .p = p, .loc = g ? g->loc : p->loc};
    b.causal = p->causal || (g && g->causal);
    for (int k = 0; k < p->nrules; k++)
        if (add_rule(&b, &p->rules[k]))
            return -1;
    for (int k = 0; g && k < g->nrules; k++)
        if (add_rule(&b, &g->rules[k]))
            return -1;
    b.nbands = merge_bands(b.bands, b.nbands);
    b.nbbands = merge_bands(b.bbands, b.nbbands);
    b.nsegs = uniq_i64(b.segs, b.nsegs);
    prune_residues(&b);
    prune_offsets(&b);
    return emit_comps(&b, hp);
}

int sp_plan_build(const sp_pattern *p, sp_arena *a, sp_diag *d, sp_plan **out)
{
    sp_plan *pl = SP_NEW(a, sp_plan);
    if (!pl)
        return -1;
    pl->name = p->name;
    pl->block = p->block;
    pl->nheads = p->nheads;
    /* Class k < ngroups is group k; class ngroups holds the heads of no group
     * (all heads, when there are no groups). */
    int64_t grouped = 0;
    for (int g = 0; g < p->ngroups; g++)
        grouped += p->groups[g].h1 - p->groups[g].h0 + 1;
    bool ungrouped = p->ngroups == 0 || grouped < p->nheads;
    pl->nclasses = p->ngroups + (ungrouped ? 1 : 0);
    pl->classes = SP_NEWN(a, sp_headplan, pl->nclasses);
    if (!pl->classes)
        return -1;
    for (int g = 0; g < p->ngroups; g++)
        if (build_class(a, d, p, &p->groups[g], &pl->classes[g]))
            return -1;
    if (ungrouped && build_class(a, d, p, NULL, &pl->classes[p->ngroups]))
        return -1;
    if (p->nheads > 0) {
        pl->head_class = SP_NEWN(a, int, p->nheads);
        if (!pl->head_class)
            return -1;
        for (int64_t h = 0; h < p->nheads; h++)
            pl->head_class[h] = p->ngroups;
        for (int g = 0; g < p->ngroups; g++)
            for (int64_t h = p->groups[g].h0; h <= p->groups[g].h1; h++)
                pl->head_class[h] = g;
    }
    assert(!sp_plan_verify(pl));
    *out = pl;
    return 0;
}

const sp_headplan *sp_plan_head(const sp_plan *p, int64_t h)
{
    if (p->nheads == 0)
        return &p->classes[0];
    return &p->classes[p->head_class[h]];
}
