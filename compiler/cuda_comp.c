/* What each kind of plan component contributes to a generated CUDA source:
 * its membership test (has), its conservative box test (meets), its
 * whole-block touch test for the random rule's candidates (touch, exactly
 * sp_view_touches_block), and its schedule step, with every constant of
 * the component folded into the text. The diagonal kinds' text comes from
 * their form (comp.h), by its shape; rows, columns and random blocks have
 * their own. */
#include "cuda_gen.h"

#include <assert.h>
#include <inttypes.h>

#include "comp.h"

#define P(...) fprintf(g->f, __VA_ARGS__)

void cg_i64(cuda_gen *g, int64_t v)
{
    if (v == INT64_MIN)
        P("(-9223372036854775807LL - 1)");
    else
        P("%" PRId64 "LL", v);
}

static void lit(cuda_gen *g, int64_t v)
{
    if (v < 0)
        P("(");
    cg_i64(g, v);
    if (v < 0)
        P(")");
}

bool cg_has_set(const sp_comp *c)
{
    return (c->kind == SP_C_ROWS && c->u.rows.spans.n > 0) ||
           (c->kind == SP_C_COLS && c->u.cols.spans.n > 0);
}

int cg_cols_subs(const sp_comp *c) { return (c->u.cols.spans.n > 0) + c->u.cols.nper; }

void cg_describe(cuda_gen *g, int cls, int c)
{
    const sp_comp *k = cg_comp(g, cls, c);
    P("#%d %s", c, sp_comp_kind_name(k->kind));
    switch (k->kind) {
    case SP_C_BAND:
        P(" %" PRId64 " <= j-i <= %" PRId64, k->u.band.lo, k->u.band.hi);
        if (k->u.band.dil > 1)
            P(", dilation %" PRId64, k->u.band.dil);
        break;
    case SP_C_BLOCKBAND:
        P(" %" PRId64 " <= j/B-i/B <= %" PRId64, k->u.bband.lo, k->u.bband.hi);
        break;
    case SP_C_SEGMENT:
        P(" %" PRId64, k->u.segment);
        break;
    case SP_C_RESIDUE:
        P(" i-j = 0 mod %" PRId64, k->u.residue);
        break;
    case SP_C_RANDOM:
        P(" %" PRId64 " blocks per query block, seed %" PRIu64, k->u.random.r, k->u.random.seed);
        break;
    default:
        break;
    }
    if (k->excl) {
        P(", skips pairs of");
        for (int e = 0; e < SP_MAX_COMPS; e++)
            if (k->excl >> e & 1)
                P(" #%d", e);
    }
}

/* ------------------------------------------------------ diagonal forms */

/* The diagonal kinds' text is written from their form (comp.h) alone, by
 * its shape: an offset list (off<gid> helpers), blocks of q > 1 (block
 * bands, segments: intervals of t), or q = 1 by residue m (bands,
 * residues, dense: sp_has_multiple by m). The form of component c of class
 * cls, or false for rows, cols, random. */
static bool form_of(const cuda_gen *g, int cls, int c, sp_dform *f)
{
    return sp_comp_dform(cg_comp(g, cls, c), g->p->block, f);
}

static bool bounded_lo(const sp_dform *f) { return f->lo > -SP_DFORM_INF; }
static bool bounded_hi(const sp_dform *f) { return f->hi < SP_DFORM_INF; }
/* Does T hold every t (dense)? */
static bool everything(const sp_dform *f) { return !f->list && !bounded_lo(f) && !bounded_hi(f) && f->m == 1; }

/* The form's term for row i and key j (text): j - i, or j / q - i / q. */
static const char *term(char *buf, size_t cap, const sp_dform *f, const char *i, const char *j)
{
    if (f->q == 1)
        snprintf(buf, cap, "%s - %s", j, i);
    else
        snprintf(buf, cap, "%s / %" PRId64 "LL - %s / %" PRId64 "LL", j, f->q, i, f->q);
    return buf;
}

/* tlo >= lo && thi <= hi, for the bounds T has; false when it has none. */
static bool within(cuda_gen *g, const sp_dform *f, const char *tlo, const char *thi)
{
    if (bounded_lo(f)) {
        P("%s >= ", tlo);
        lit(g, f->lo);
    }
    if (bounded_hi(f)) {
        P("%s%s <= ", bounded_lo(f) ? " && " : "", thi);
        lit(g, f->hi);
    }
    return bounded_lo(f) || bounded_hi(f);
}

/* Is the term t in T? */
static void form_has_t(cuda_gen *g, const sp_dform *f, int gid, const char *t)
{
    if (f->list) {
        P("off%d_has(%s)", gid, t);
        return;
    }
    if (everything(f)) {
        P("true");
        return;
    }
    P("(");
    if (f->lo == f->hi) { /* one value, a multiple of m */
        P("%s == ", t);
        lit(g, f->lo);
    } else {
        const bool bounds = within(g, f, t, t);
        if (f->m > 1)
            P("%s(%s) %% %" PRId64 "LL == 0", bounds ? " && " : "", t, f->m);
    }
    P(")");
}

/* t clipped to T's bound v on one side (fn: sp_max or sp_min), where it
 * has one. */
static void clip(cuda_gen *g, const char *fn, const char *t, bool bounded, int64_t v)
{
    if (!bounded) {
        P("%s", t);
        return;
    }
    P("%s(%s, ", fn, t);
    cg_i64(g, v);
    P(")");
}

/* Does T hold a value of tlo..thi (sp_dform_meets)? */
static void form_meets(cuda_gen *g, const sp_dform *f, int gid, const char *tlo, const char *thi)
{
    if (f->list) {
        P("off%d_meets(%s, %s)", gid, tlo, thi);
        return;
    }
    if (everything(f)) {
        P("true");
        return;
    }
    if (f->q > 1) { /* m is 1: [tlo, thi] and [lo, hi] overlap */
        P("(");
        within(g, f, thi, tlo);
        P(")");
        return;
    }
    P("sp_has_multiple(");
    clip(g, "sp_max", tlo, bounded_lo(f), f->lo);
    P(", ");
    clip(g, "sp_min", thi, bounded_hi(f), f->hi);
    P(", %" PRId64 "LL)", f->m);
}

/* v.hc = ...: does the visit's box, terms tlo..thi, reach past T's
 * bounds (its pairs then need the test per element)? Nothing when T has
 * none (the step lists only pairs of the form). */
static void form_hc(cuda_gen *g, const sp_dform *f, const char *tlo, const char *thi)
{
    if (!bounded_lo(f) && !bounded_hi(f))
        return;
    P("        v.hc = !(");
    within(g, f, tlo, thi);
    P(");\n");
}

/* ------------------------------------------------------------- tests */

/* A gathered-columns component's test, over its spans and each period:
 * sp_set_<op>(e.s<gid>, set) || sp_period_<op>(per, a, b, s) ... */
static void cols_test(cuda_gen *g, int gid, const sp_comp *k, const char *op, const char *set,
                      const char *per)
{
    const char *sep = "";
    P("(");
    if (k->u.cols.spans.n) {
        P("sp_set_%s(e.s%d, %s)", op, gid, set);
        sep = " || ";
    }
    for (int p = 0; p < k->u.cols.nper; p++) {
        const sp_period *q = &k->u.cols.per[p];
        P("%ssp_period_%s(%s, %" PRId64 "LL, %" PRId64 "LL, %" PRId64 "LL)", sep, op, per, q->a, q->b,
          q->s);
        sep = " || ";
    }
    P(")");
}

void cg_has(cuda_gen *g, int cls, int c, const char *i, const char *j)
{
    const sp_comp *k = cg_comp(g, cls, c);
    const int gid = cg_gid(g, cls, c);
    sp_dform f;
    char t[160];
    if (form_of(g, cls, c, &f)) {
        form_has_t(g, &f, gid, term(t, sizeof t, &f, i, j));
        return;
    }
    switch (k->kind) {
    case SP_C_ROWS:
        P("sp_set_has(e.s%d, %s)", gid, i);
        break;
    case SP_C_COLS:
        cols_test(g, gid, k, "has", j, j);
        break;
    default: /* random */
        P("true");
        break;
    }
}

void cg_meets(cuda_gen *g, int cls, int c, const char *i0, const char *i1, const char *j0,
              const char *j1)
{
    const sp_comp *k = cg_comp(g, cls, c);
    const int gid = cg_gid(g, cls, c);
    sp_dform f;
    char tlo[160], thi[160];
    if (form_of(g, cls, c, &f)) {
        /* The box's terms run from (i1, j0)'s to (i0, j1)'s (sp_dform_box). */
        form_meets(g, &f, gid, term(tlo, sizeof tlo, &f, i1, j0), term(thi, sizeof thi, &f, i0, j1));
        return;
    }
    switch (k->kind) {
    case SP_C_ROWS:
        P("sp_set_meets(e.s%d, %s, %s)", gid, i0, i1);
        break;
    case SP_C_COLS:
        snprintf(tlo, sizeof tlo, "%s, %s", j0, j1);
        cols_test(g, gid, k, "meets", tlo, tlo);
        break;
    default: /* random */
        P("true");
        break;
    }
}

void cg_touch(cuda_gen *g, int cls, int c)
{
    const sp_comp *k = cg_comp(g, cls, c);
    const int gid = cg_gid(g, cls, c);
    const bool causal = g->p->classes[cls].causal;
    sp_dform f;
    char tlo[200], thi[200], t[160];
    if (form_of(g, cls, c, &f)) {
        /* The terms of the block pair's box (sp_view_touches_block), cut
         * to t <= 0 under causal where T reaches above 0. */
        if (f.q == 1) { /* in scope: dlo..dhi, cut */
            form_meets(g, &f, gid, "dlo", "dhi");
        } else if (f.q == g->p->block) { /* whole blocks of q: t is kb - qb (the cut tested above) */
            form_has_t(g, &f, gid, "kb - qb");
        } else {
            term(t, sizeof t, &f, "i0", "j1");
            if (causal && f.hi > 0)
                snprintf(thi, sizeof thi, "sp_min(0, %s)", t);
            else
                snprintf(thi, sizeof thi, "%s", t);
            form_meets(g, &f, gid, term(tlo, sizeof tlo, &f, "i1", "j0"), thi);
        }
        return;
    }
    switch (k->kind) {
    case SP_C_ROWS:
        P("sp_set_meets(e.s%d, %s, i1)", gid, causal ? "sp_max(i0, j0)" : "i0");
        break;
    case SP_C_COLS: {
        const char *hi = causal ? "sp_min(j1, i1)" : "j1";
        snprintf(tlo, sizeof tlo, "j0, sp_min(%s, L - 1)", hi);
        snprintf(thi, sizeof thi, "j0, %s", hi);
        cols_test(g, gid, k, "meets", tlo, thi);
        break;
    }
    default: /* random: drawn among the blocks no other component touches */
        P("false");
        break;
    }
}

void cg_helpers(cuda_gen *g, int cls, int c)
{
    sp_dform f;
    if (!form_of(g, cls, c, &f) || !f.list)
        return;
    const int gid = cg_gid(g, cls, c);
    const int n = f.nlist;
    P("    /* offsets of #%d (class %d), ascending */\n", c, cls);
    P("    SP_HD static i64 off%d(int x)\n    {\n        switch (x) {\n", gid);
    for (int x = 0; x < n; x++) {
        P("        case %d: return ", x);
        cg_i64(g, f.list[x]);
        P(";\n");
    }
    P("        }\n        return 0;\n    }\n");
    P("    SP_HD static bool off%d_has(i64 d)\n    {\n        switch (d) {\n", gid);
    for (int x = 0; x < n; x++) {
        P("        case ");
        cg_i64(g, f.list[x]);
        P(":\n");
    }
    P("            return true;\n        }\n        return false;\n    }\n");
    P("    SP_HD static bool off%d_meets(i64 lo, i64 hi)\n    {\n", gid);
    P("        for (int x = 0; x < %d; x++)\n", n);
    P("            if (lo <= off%d(x) && off%d(x) <= hi)\n                return true;\n", gid, gid);
    P("        return false;\n    }\n");
}

/* ------------------------------------------------------------ schedules */

void cg_xm(cuda_gen *g, int cls, int c, const char *indent, bool may_end)
{
    const sp_comp *k = cg_comp(g, cls, c);
    /* An excluded global rows set (a class has one at most, its first
     * component) takes whole rows: a visit whose rows meet it has them
     * trimmed off it at both ends, and only a hole left in the middle takes
     * the test per element. Untrimmed, such a visit took 8x the time of a
     * band-masked one: longformer's and bigbird's first row tiles (global
     * rows 0..15, 0..127) took 90-150 us against 22 for the others at
     * d = 64 (H100, a trace per item), and as the last items of each head's
     * order they made a tail of 55 us in 280. The trim runs only where the
     * rows meet the set: trimming every visit cost the producer 7 % a tile
     * at d = 128. The bounds are the tile's own in every visit that gets
     * here (random blocks, which narrow them, exclude nothing), so they
     * trim alike for every tile of the component: when nothing is left,
     * the component has nothing in this tile and ends (may_end). */
    for (int e = 0; e < SP_MAX_COMPS; e++) {
        if (!(k->excl >> e & 1))
            continue;
        if (cg_comp(g, cls, e)->kind == SP_C_ROWS) {
            const int s = cg_gid(g, cls, e);
            P("%sif (sp_set_meets(e.s%d, v.ilo, v.ihi)) {\n", indent, s);
            P("%s    sp_set_trim(e.s%d, v.ilo, v.ihi);\n", indent, s);
            if (may_end)
                P("%s    if (v.ilo > v.ihi)\n%s        return false;\n", indent, indent);
            P("%s    if (sp_set_meets(e.s%d, v.ilo, v.ihi))\n%s        v.xm |= %uu;\n%s}\n", indent, s,
              indent, 1u << e, indent);
            continue;
        }
        P("%sif (", indent);
        cg_meets(g, cls, e, "v.ilo", "v.ihi", "v.j0", "v.j1");
        P(")\n%s    v.xm |= %uu;\n", indent, 1u << e);
    }
}

/* The count of a COLS sub-run's keys up to position x, and its t-th key. */
static void cols_sub_count(cuda_gen *g, int gid, const sp_comp *k, int sub, const char *x)
{
    if (k->u.cols.spans.n && sub == 0) {
        P("sp_set_count(e.s%d, %s)", gid, x);
        return;
    }
    const sp_period *q = &k->u.cols.per[sub - (k->u.cols.spans.n > 0)];
    P("sp_period_count(%s, %" PRId64 "LL, %" PRId64 "LL, %" PRId64 "LL)", x, q->a, q->b, q->s);
}

void cg_gather_cases(cuda_gen *g, int cls, int c)
{
    const sp_comp *k = cg_comp(g, cls, c);
    if (k->kind != SP_C_COLS)
        return;
    const int gid = cg_gid(g, cls, c);
    P("        case %d: /* class %d #%d cols */\n            switch (v.sub) {\n", gid, cls, c);
    for (int s = 0; s < cg_cols_subs(k); s++) {
        P("            case %d:\n                return ", s);
        if (k->u.cols.spans.n && s == 0) {
            P("sp_set_elem(e.s%d, t);\n", gid);
        } else {
            const sp_period *q = &k->u.cols.per[s - (k->u.cols.spans.n > 0)];
            P("sp_period_elem(t, %" PRId64 "LL, %" PRId64 "LL, %" PRId64 "LL);\n", q->a, q->b, q->s);
        }
    }
    P("            }\n            return -1;\n");
}

static void step_head(cuda_gen *g, int cls, int c, char kind)
{
    P("    /* class %d ", cls);
    cg_describe(g, cls, c);
    P(" */\n");
    P("    template <int BN>\n    SP_HD static bool %c%d(sp_sched &s, sp_visit &v, const sp_tile &T, "
      "const env &e%s)\n    {\n",
      kind, cg_gid(g, cls, c), kind == 'd' ? ", sp_rnd<NRND> &rnd" : "");
    if (kind == 'd')
        P("        (void)rnd;\n");
    P("        (void)e;\n");
}

/* The end of a step that tiles a contiguous range: gid, hc (expression
 * text or NULL), xm, flags. */
static void step_yield(cuda_gen *g, int cls, int c, const char *indent)
{
    P("%sv.gid = %d;\n", indent, cg_gid(g, cls, c));
    cg_xm(g, cls, c, indent, true);
    P("%ssp_flags(v, T, %s, BN);\n%sreturn true;\n", indent,
      g->p->classes[cls].causal ? "true" : "false", indent);
}

/* Starts tiling [lo, hi] (expressions) on the first call, after the
 * statements of prelude; returns when the range is done. wrap: the bounds
 * take a line each. */
static void range_step(cuda_gen *g, const char *prelude, const char *lo, const char *hi, bool wrap)
{
    P("        if (!s.ph) {\n            s.ph = 1;\n%s", prelude);
    P("            sp_range(s, %s,%s%s, 0, BN);\n        }\n", lo, wrap ? "\n                     " : " ", hi);
    P("        if (!sp_tiles(s, v, BN))\n            return false;\n");
}

/* The keys of a form without a list (m = 1) for rows ilo..ihi, up to jmax
 * (names in the text): every key of the blocks of q that T's bounds reach
 * from the rows' blocks, or the offsets lo..hi from the rows; then hc,
 * for keys j0..j1 of the visit. */
static void form_step(cuda_gen *g, const sp_dform *f, const char *prelude, const char *ilo, const char *ihi,
                      const char *jmax, const char *j0, const char *j1)
{
    assert(!f->list && f->m == 1);
    char lo[160] = "0", hi[160], tlo[160], thi[160];
    snprintf(hi, sizeof hi, "%s", jmax);
    /* Rows are >= 0, so keys from lo >= 0 on need no clamp. */
    if (f->q == 1) {
        if (bounded_lo(f) && f->lo >= 0)
            snprintf(lo, sizeof lo, "%s + (%" PRId64 "LL)", ilo, f->lo);
        else if (bounded_lo(f))
            snprintf(lo, sizeof lo, "sp_max(0, %s + (%" PRId64 "LL))", ilo, f->lo);
        if (bounded_hi(f))
            snprintf(hi, sizeof hi, "sp_min(%s, %s + (%" PRId64 "LL))", jmax, ihi, f->hi);
    } else {
        if (bounded_lo(f) && f->lo >= 0)
            snprintf(lo, sizeof lo, "(%s / %" PRId64 "LL + (%" PRId64 "LL)) * %" PRId64 "LL", ilo, f->q, f->lo,
                     f->q);
        else if (bounded_lo(f))
            snprintf(lo, sizeof lo, "sp_max(0, (%s / %" PRId64 "LL + (%" PRId64 "LL)) * %" PRId64 "LL)", ilo,
                     f->q, f->lo, f->q);
        if (bounded_hi(f))
            snprintf(hi, sizeof hi, "sp_min(%s, (%s / %" PRId64 "LL + (%" PRId64 "LL) + 1) * %" PRId64 "LL - 1)",
                     jmax, ihi, f->q, f->hi, f->q);
    }
    range_step(g, prelude, lo, hi, f->q > 1);
    form_hc(g, f, term(tlo, sizeof tlo, f, ihi, j0), term(thi, sizeof thi, f, ilo, j1));
}

/* The keys of an offset list: runs of its diagonals whose key ranges
 * overlap or touch, one range each. */
static void list_step(cuda_gen *g, int cls, int c, const sp_dform *f)
{
    const int gid = cg_gid(g, cls, c);
    const int n = f->nlist;
    P("        for (;;) {\n            if (s.ph && sp_tiles(s, v, BN)) {\n                v.hc = 1;\n");
    step_yield(g, cls, c, "                ");
    P("            }\n");
    P("            /* the next run of offsets whose key ranges overlap or touch */\n");
    P("            if (s.x >= %d)\n                return false;\n", n);
    P("            i64 a = T.ilo + off%d((int)s.x), b = T.ihi + off%d((int)s.x);\n", gid, gid);
    P("            for (s.x++; s.x < %d && T.ilo + off%d((int)s.x) <= b + 1; s.x++)\n", n, gid);
    P("                b = T.ihi + off%d((int)s.x);\n", gid);
    P("            s.ph = 1;\n            sp_range(s, sp_max(a, 0), sp_min(b, T.jmax), 0, BN);\n");
    P("        }\n");
}

/* The keys of a gathered-columns component: one span as a range, else
 * each sub-run (cg_cols_subs) gathered. */
static void cols_step(cuda_gen *g, int cls, int c)
{
    const sp_comp *k = cg_comp(g, cls, c);
    const int gid = cg_gid(g, cls, c);
    const bool causal = g->p->classes[cls].causal;
    if (k->u.cols.spans.n == 1 && k->u.cols.nper == 0) {
        /* One span: its keys are consecutive, tiled as a range from
         * its first (the tiles of the gathered path below), so that
         * the producer copies rows a fixed step apart instead of
         * working out each row's position (ncu, bigbird at d = 64:
         * ~460 producer instructions a gathered tile). */
        P("        if (!s.ph) {\n            s.ph = 1;\n            if (e.s%d.mn > 0)\n", gid);
        P("                sp_range(s, e.s%d.mlo[0], sp_min(e.s%d.mhi[0], T.jmax), e.s%d.mlo[0], BN);\n",
          gid, gid, gid);
        P("            else\n                sp_range(s, 1, 0, 0, BN);\n        }\n");
        P("        if (!sp_tiles(s, v, BN))\n            return false;\n");
        step_yield(g, cls, c, "        ");
        return;
    }
    const int nsub = cg_cols_subs(k);
    P("        for (;;) {\n            if (!s.ph) {\n");
    P("                if (s.sub >= %d)\n                    return false;\n", nsub);
    P("                s.ph = 1;\n                i64 n = 0;\n                switch (s.sub) {\n");
    for (int sub = 0; sub < nsub; sub++) {
        P("                case %d:\n                    n = ", sub);
        cols_sub_count(g, gid, k, sub, "T.jmax");
        P(";\n                    break;\n");
    }
    P("                }\n                s.b = n - 1;\n                s.t = 0;\n");
    P("                s.tend = n > 0 ? (n - 1) / BN : -1;\n            }\n");
    P("            if (sp_gather_tiles(s, v, BN)) {\n");
    P("                v.sub = s.sub;\n                v.gid = %d;\n", gid);
    P("                v.j0 = gather(v, v.klo, e);\n                v.j1 = gather(v, v.khi, e);\n");
    P("                v.hc = s.sub > 0; /* keys of earlier sub-runs are theirs */\n");
    cg_xm(g, cls, c, "                ", true);
    P("                sp_flags(v, T, %s, BN);\n                return true;\n            }\n",
      causal ? "true" : "false");
    P("            s.sub++;\n            s.ph = 0;\n        }\n");
}

/* The keys of random blocks: for each query block of the tile, its
 * draws among the key blocks no other component touches (cg_touch). */
static void random_step(cuda_gen *g, int cls, int c)
{
    const sp_comp *k = cg_comp(g, cls, c);
    const int gid = cg_gid(g, cls, c);
    const int64_t B = g->p->block;
    const bool causal = g->p->classes[cls].causal;
    /* State: s.w the query block, s.y the next draw, s.ph 0 (start),
     * 1 (drawn), 2 (tiling a drawn block). */
    P("        for (;;) {\n");
    P("            if (s.ph == 2 && sp_tiles(s, v, BN)) {\n");
    P("                v.gid = %d;\n", gid);
    P("                v.ilo = sp_max(T.ilo, s.w * %" PRId64 "LL);\n", B);
    P("                v.ihi = sp_min(T.ihi, s.w * %" PRId64 "LL + %" PRId64 "LL);\n", B, B - 1);
    P("                sp_flags(v, T, %s, BN);\n                return true;\n            }\n",
      causal ? "true" : "false");
    P("            if (s.ph >= 1 && s.y < rnd.n) {\n");
    P("                const i64 kb = rnd.kb[s.y++];\n");
    P("                sp_range(s, kb * %" PRId64 "LL, sp_min(kb * %" PRId64 "LL + %" PRId64
      "LL, T.nk - 1), kb * %" PRId64 "LL, BN);\n",
      B, B, B - 1, B);
    P("                s.ph = 2;\n                continue;\n            }\n");
    P("            s.w = s.ph ? s.w + 1 : T.ilo / %" PRId64 "LL;\n            s.ph = 1;\n", B);
    P("            if (s.w > T.ihi / %" PRId64 "LL)\n                return false;\n", B);
    P("            const i64 qb = s.w, L = T.nk, nb = (L + %" PRId64 "LL) / %" PRId64 "LL;\n", B - 1, B);
    P("            const i64 last = %s;\n", causal ? "sp_min(qb, nb - 1)" : "nb - 1");
    P("            /* the candidates: blocks no other component touches */\n");
    P("            sp_random_draw(rnd, last, sp_rng_key(%" PRIu64 "ull, (u64)T.h, (u64)qb), %" PRId64
      "LL, [&](i64 kb) -> bool {\n",
      k->u.random.seed, k->u.random.r);
    P("                const i64 i0 = qb * %" PRId64 "LL, i1 = i0 + %" PRId64 "LL, j0 = kb * %" PRId64
      "LL, j1 = j0 + %" PRId64 "LL;\n",
      B, B - 1, B, B - 1);
    P("                (void)i0; (void)i1; (void)j0; (void)j1; (void)L;\n");
    if (causal)
        P("                if (j0 > i1)\n                    return true;\n");
    P("                const i64 dlo = j0 - i1, dhi = %s;\n", causal ? "sp_min(0, j1 - i0)" : "j1 - i0");
    P("                (void)dlo; (void)dhi;\n                return !(false");
    for (int o = 0; o < g->p->classes[cls].ncomps; o++) {
        if (o == c)
            continue;
        P("\n                         || ");
        cg_touch(g, cls, o);
    }
    P(");\n            });\n            s.y = 0;\n        }\n");
}

void cg_direct_step(cuda_gen *g, int cls, int c)
{
    const sp_comp *k = cg_comp(g, cls, c);
    sp_dform f;
    step_head(g, cls, c, 'd');
    if (sp_comp_pass(k) != SP_PASS_DIRECT) {
        P("        return false; /* not a direct component */\n");
    } else if (form_of(g, cls, c, &f) && f.list) {
        list_step(g, cls, c, &f);
    } else if (form_of(g, cls, c, &f)) {
        form_step(g, &f, "", "T.ilo", "T.ihi", "T.jmax", "v.j0", "v.j1");
        step_yield(g, cls, c, "        ");
    } else if (k->kind == SP_C_COLS) {
        cols_step(g, cls, c);
    } else {
        random_step(g, cls, c);
    }
    P("    }\n");
}

void cg_remap_step(cuda_gen *g, int cls, int c)
{
    sp_dform f;
    const bool form = form_of(g, cls, c, &f);
    assert(form && f.q == 1 && !f.list && f.m == sp_comp_step(cg_comp(g, cls, c)));
    (void)form;
    step_head(g, cls, c, 'r');
    const int64_t D = f.m;
    P("        /* keys r + %" PRId64 "*k of the rows' class: a dense band in k */\n", D);
    P("        v.D = %" PRId64 "LL;\n        v.r = T.r;\n", D);
    char prelude[96];
    snprintf(prelude, sizeof prelude, "            const i64 kmax = sp_fdiv(T.jmax - T.r, %" PRId64 "LL);\n", D);
    /* In k the form is t = k - m for rows m, its bounds divided by D
     * (multiples of it), every t of them taken. */
    sp_dform k = f;
    k.m = 1;
    if (bounded_lo(&f))
        k.lo = f.lo / D;
    if (bounded_hi(&f))
        k.hi = f.hi / D;
    form_step(g, &k, prelude, "T.m0", "T.m1", "kmax", "v.klo", "v.khi");
    step_yield(g, cls, c, "        ");
    P("    }\n");
}

void cg_band_case(cuda_gen *g, int cls, int c)
{
    const sp_comp *k = cg_comp(g, cls, c);
    const int gid = cg_gid(g, cls, c);
    sp_dform f;
    if (form_of(g, cls, c, &f)) {
        if (f.list || f.q > 1) /* not a band of j - i */
            return;
        if (!bounded_lo(&f) && !bounded_hi(&f)) {
            /* own tests nothing of these (dense; a residue's pass lists
             * only its class) but the causal cut */
            P("        case %d:\n            return true;\n", gid);
            return;
        }
        P("        case %d:\n            if (v.hc) {\n", gid);
        if (bounded_lo(&f)) {
            P("                lo = ");
            lit(g, f.lo);
            P(";\n");
        }
        if (bounded_hi(&f)) {
            P("                hi = ");
            lit(g, f.hi);
            P(";\n");
        }
        P("                m = %" PRId64 "LL;\n            }\n            return true;\n", f.m);
        return;
    }
    switch (k->kind) {
    case SP_C_COLS:
        /* A range of one span's keys (D = 1; gathered visits have D = 0
         * and keep the test per element): own tests only sub-runs' repeats,
         * which need hc. ncu put 11 % of longformer's samples at d = 64 in
         * the per-element test of its column tile. */
        P("        case %d:\n            return !v.hc;\n", gid);
        break;
    default: /* rows, random: own tests nothing of these but the causal cut */
        P("        case %d:\n            return true;\n", gid);
        break;
    }
}

void cg_own_body(cuda_gen *g, int cls, int c)
{
    const sp_comp *k = cg_comp(g, cls, c);
    const int gid = cg_gid(g, cls, c);
    sp_dform f;
    P("        case %d: /* class %d ", gid, cls);
    cg_describe(g, cls, c);
    P(" */\n");
    if (k->kind == SP_C_COLS) {
        /* A key of sub-run s is owned by the first sub-run that has it. */
        int sub = 0;
        if (k->u.cols.spans.n) {
            P("            if (v.hc && v.sub > %d && sp_set_has(e.s%d, j))\n                return false;\n",
              sub, gid);
            sub++;
        }
        for (int p = 0; p < k->u.cols.nper; p++, sub++) {
            const sp_period *q = &k->u.cols.per[p];
            P("            if (v.hc && v.sub > %d && sp_period_has(j, %" PRId64 "LL, %" PRId64 "LL, %" PRId64
              "LL))\n                return false;\n",
              sub, q->a, q->b, q->s);
        }
    } else if (form_of(g, cls, c, &f) && (f.list || bounded_lo(&f) || bounded_hi(&f))) {
        /* A form without bounds holds every pair its pass lists (dense;
         * a residue's pass lists only its class). */
        P("            if (v.hc && !");
        cg_has(g, cls, c, "i", "j");
        P(")\n                return false;\n");
    }
    for (int e = 0; e < SP_MAX_COMPS; e++) {
        if (!(k->excl >> e & 1))
            continue;
        P("            if ((v.xm & %uu) && ", 1u << e);
        cg_has(g, cls, e, "i", "j");
        P(")\n                return false;\n");
    }
    P("            return true;\n");
}
