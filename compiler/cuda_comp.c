/* What each kind of plan component contributes to a generated CUDA source:
 * its membership test (has), its conservative box test (meets), its
 * whole-block touch test for the random rule's candidates (touch, exactly
 * sp_view_touches_block), and its schedule step, with every constant of
 * the component folded into the text. */
#include "cuda_gen.h"

#include <inttypes.h>

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

/* ------------------------------------------------------------- tests */

/* Membership of j in a gathered-columns component. */
static void cols_has(cuda_gen *g, int gid, const sp_comp *k, const char *j)
{
    const char *sep = "";
    P("(");
    if (k->u.cols.spans.n) {
        P("sp_set_has(e.s%d, %s)", gid, j);
        sep = " || ";
    }
    for (int p = 0; p < k->u.cols.nper; p++) {
        const sp_period *q = &k->u.cols.per[p];
        P("%ssp_period_has(%s, %" PRId64 "LL, %" PRId64 "LL, %" PRId64 "LL)", sep, j, q->a, q->b,
          q->s);
        sep = " || ";
    }
    P(")");
}

void cg_has(cuda_gen *g, int cls, int c, const char *i, const char *j)
{
    const sp_comp *k = cg_comp(g, cls, c);
    const int gid = cg_gid(g, cls, c);
    const int64_t B = g->p->block;
    switch (k->kind) {
    case SP_C_ROWS:
        P("sp_set_has(e.s%d, %s)", gid, i);
        break;
    case SP_C_COLS:
        cols_has(g, gid, k, j);
        break;
    case SP_C_DENSE:
    case SP_C_RANDOM:
        P("true");
        break;
    case SP_C_BAND:
        P("(%s - %s >= ", j, i);
        lit(g, k->u.band.lo);
        P(" && %s - %s <= ", j, i);
        lit(g, k->u.band.hi);
        if (k->u.band.dil > 1)
            P(" && (%s - %s) %% %" PRId64 "LL == 0", j, i, k->u.band.dil);
        P(")");
        break;
    case SP_C_BLOCKBAND:
        P("(%s / %" PRId64 "LL - %s / %" PRId64 "LL >= ", j, B, i, B);
        lit(g, k->u.bband.lo);
        P(" && %s / %" PRId64 "LL - %s / %" PRId64 "LL <= ", j, B, i, B);
        lit(g, k->u.bband.hi);
        P(")");
        break;
    case SP_C_SEGMENT:
        P("(%s / %" PRId64 "LL == %s / %" PRId64 "LL)", i, k->u.segment, j, k->u.segment);
        break;
    case SP_C_RESIDUE:
        P("((%s - %s) %% %" PRId64 "LL == 0)", i, j, k->u.residue);
        break;
    case SP_C_OFFSETS:
        P("off%d_has(%s - %s)", gid, j, i);
        break;
    }
}

void cg_meets(cuda_gen *g, int cls, int c, const char *i0, const char *i1, const char *j0,
              const char *j1)
{
    const sp_comp *k = cg_comp(g, cls, c);
    const int gid = cg_gid(g, cls, c);
    const int64_t B = g->p->block;
    switch (k->kind) {
    case SP_C_ROWS:
        P("sp_set_meets(e.s%d, %s, %s)", gid, i0, i1);
        break;
    case SP_C_COLS: {
        const char *sep = "";
        P("(");
        if (k->u.cols.spans.n) {
            P("sp_set_meets(e.s%d, %s, %s)", gid, j0, j1);
            sep = " || ";
        }
        for (int p = 0; p < k->u.cols.nper; p++) {
            const sp_period *q = &k->u.cols.per[p];
            P("%ssp_period_meets(%s, %s, %" PRId64 "LL, %" PRId64 "LL, %" PRId64 "LL)", sep, j0, j1,
              q->a, q->b, q->s);
            sep = " || ";
        }
        P(")");
        break;
    }
    case SP_C_DENSE:
    case SP_C_RANDOM:
        P("true");
        break;
    case SP_C_BAND:
        P("sp_has_multiple(sp_max(%s - %s, ", j0, i1);
        cg_i64(g, k->u.band.lo);
        P("), sp_min(%s - %s, ", j1, i0);
        cg_i64(g, k->u.band.hi);
        P("), %" PRId64 "LL)", k->u.band.dil);
        break;
    case SP_C_BLOCKBAND:
        P("(sp_max(%s / %" PRId64 "LL - %s / %" PRId64 "LL, ", j0, B, i1, B);
        cg_i64(g, k->u.bband.lo);
        P(") <= sp_min(%s / %" PRId64 "LL - %s / %" PRId64 "LL, ", j1, B, i0, B);
        cg_i64(g, k->u.bband.hi);
        P("))");
        break;
    case SP_C_SEGMENT:
        P("(%s / %" PRId64 "LL <= %s / %" PRId64 "LL && %s / %" PRId64 "LL <= %s / %" PRId64 "LL)", i0,
          k->u.segment, j1, k->u.segment, j0, k->u.segment, i1, k->u.segment);
        break;
    case SP_C_RESIDUE:
        P("sp_has_multiple(%s - %s, %s - %s, %" PRId64 "LL)", j0, i1, j1, i0, k->u.residue);
        break;
    case SP_C_OFFSETS:
        P("off%d_meets(%s - %s, %s - %s)", gid, j0, i1, j1, i0);
        break;
    }
}

void cg_touch(cuda_gen *g, int cls, int c)
{
    const sp_comp *k = cg_comp(g, cls, c);
    const int gid = cg_gid(g, cls, c);
    const bool causal = g->p->classes[cls].causal;
    switch (k->kind) {
    case SP_C_ROWS:
        P("sp_set_meets(e.s%d, %s, i1)", gid, causal ? "sp_max(i0, j0)" : "i0");
        break;
    case SP_C_COLS: {
        const char *hi = causal ? "sp_min(j1, i1)" : "j1";
        const char *sep = "";
        P("(");
        if (k->u.cols.spans.n) {
            P("sp_set_meets(e.s%d, j0, sp_min(%s, L - 1))", gid, hi);
            sep = " || ";
        }
        for (int p = 0; p < k->u.cols.nper; p++) {
            const sp_period *q = &k->u.cols.per[p];
            P("%ssp_period_meets(j0, %s, %" PRId64 "LL, %" PRId64 "LL, %" PRId64 "LL)", sep, hi,
              q->a, q->b, q->s);
            sep = " || ";
        }
        P(")");
        break;
    }
    case SP_C_DENSE:
        P("true");
        break;
    case SP_C_RANDOM:
        P("false");
        break;
    case SP_C_BAND:
        P("sp_has_multiple(sp_max(dlo, ");
        cg_i64(g, k->u.band.lo);
        P("), sp_min(dhi, ");
        cg_i64(g, k->u.band.hi);
        P("), %" PRId64 "LL)", k->u.band.dil);
        break;
    case SP_C_BLOCKBAND:
        P("(kb - qb >= ");
        lit(g, k->u.bband.lo);
        P(" && kb - qb <= ");
        lit(g, k->u.bband.hi);
        P(")");
        break;
    case SP_C_SEGMENT:
        P("(sp_max(i0, j0) / %" PRId64 "LL <= sp_min(i1, j1) / %" PRId64 "LL)", k->u.segment,
          k->u.segment);
        break;
    case SP_C_RESIDUE:
        P("sp_has_multiple(dlo, dhi, %" PRId64 "LL)", k->u.residue);
        break;
    case SP_C_OFFSETS:
        P("off%d_meets(dlo, dhi)", gid);
        break;
    }
}

void cg_helpers(cuda_gen *g, int cls, int c)
{
    const sp_comp *k = cg_comp(g, cls, c);
    if (k->kind != SP_C_OFFSETS)
        return;
    const int gid = cg_gid(g, cls, c);
    const int n = k->u.offsets.n;
    P("    /* offsets of #%d (class %d), ascending */\n", c, cls);
    P("    SP_HD static i64 off%d(int x)\n    {\n        switch (x) {\n", gid);
    for (int x = 0; x < n; x++) {
        P("        case %d: return ", x);
        cg_i64(g, k->u.offsets.off[x]);
        P(";\n");
    }
    P("        }\n        return 0;\n    }\n");
    P("    SP_HD static bool off%d_has(i64 d)\n    {\n        switch (d) {\n", gid);
    for (int x = 0; x < n; x++) {
        P("        case ");
        cg_i64(g, k->u.offsets.off[x]);
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

/* Starts tiling [lo, hi] (expressions) on the first call; returns when
 * the range is done. */
static void range_step(cuda_gen *g, const char *lo, const char *hi)
{
    P("        if (!s.ph) {\n            s.ph = 1;\n            sp_range(s, %s, %s, 0, BN);\n        }\n", lo, hi);
    P("        if (!sp_tiles(s, v, BN))\n            return false;\n");
}

void cg_direct_step(cuda_gen *g, int cls, int c)
{
    const sp_comp *k = cg_comp(g, cls, c);
    const int gid = cg_gid(g, cls, c);
    const int64_t B = g->p->block;
    const bool causal = g->p->classes[cls].causal;
    step_head(g, cls, c, 'd');
    switch (k->kind) {
    case SP_C_DENSE:
        range_step(g, "0", "T.jmax");
        step_yield(g, cls, c, "        ");
        break;
    case SP_C_BAND:
    {
        char lo[96], hi[96];
        snprintf(lo, sizeof lo, "sp_max(0, T.ilo + (%" PRId64 "LL))", k->u.band.lo);
        snprintf(hi, sizeof hi, "sp_min(T.jmax, T.ihi + (%" PRId64 "LL))", k->u.band.hi);
        range_step(g, lo, hi);
    }
        P("        v.hc = !(v.j0 - T.ihi >= ");
        lit(g, k->u.band.lo);
        P(" && v.j1 - T.ilo <= ");
        lit(g, k->u.band.hi);
        P(");\n");
        step_yield(g, cls, c, "        ");
        break;
    case SP_C_BLOCKBAND:
        P("        if (!s.ph) {\n            s.ph = 1;\n");
        P("            sp_range(s, sp_max(0, (T.ilo / %" PRId64 "LL + (%" PRId64 "LL)) * %" PRId64 "LL),\n", B,
          k->u.bband.lo, B);
        P("                     sp_min(T.jmax, (T.ihi / %" PRId64 "LL + (%" PRId64 "LL) + 1) * %" PRId64
          "LL - 1), 0, BN);\n        }\n",
          B, k->u.bband.hi, B);
        P("        if (!sp_tiles(s, v, BN))\n            return false;\n");
        P("        v.hc = !(v.j0 / %" PRId64 "LL - T.ihi / %" PRId64 "LL >= ", B, B);
        lit(g, k->u.bband.lo);
        P(" && v.j1 / %" PRId64 "LL - T.ilo / %" PRId64 "LL <= ", B, B);
        lit(g, k->u.bband.hi);
        P(");\n");
        step_yield(g, cls, c, "        ");
        break;
    case SP_C_SEGMENT: {
        const int64_t S = k->u.segment;
        P("        if (!s.ph) {\n            s.ph = 1;\n");
        P("            sp_range(s, T.ilo / %" PRId64 "LL * %" PRId64 "LL, sp_min(T.jmax, T.ihi / %" PRId64
          "LL * %" PRId64 "LL + %" PRId64 "LL), 0, BN);\n        }\n",
          S, S, S, S, S - 1);
        P("        if (!sp_tiles(s, v, BN))\n            return false;\n");
        P("        v.hc = !(T.ilo / %" PRId64 "LL == T.ihi / %" PRId64 "LL && v.j0 / %" PRId64
          "LL == T.ilo / %" PRId64 "LL && v.j1 / %" PRId64 "LL == T.ilo / %" PRId64 "LL);\n",
          S, S, S, S, S, S);
        step_yield(g, cls, c, "        ");
        break;
    }
    case SP_C_OFFSETS: {
        const int n = k->u.offsets.n;
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
        break;
    }
    case SP_C_COLS: {
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
            break;
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
        break;
    }
    case SP_C_RANDOM: {
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
        break;
    }
    case SP_C_ROWS:
    case SP_C_RESIDUE:
        P("        return false; /* not a direct component */\n");
        break;
    }
    P("    }\n");
}

void cg_remap_step(cuda_gen *g, int cls, int c)
{
    const sp_comp *k = cg_comp(g, cls, c);
    step_head(g, cls, c, 'r');
    const int64_t D = k->kind == SP_C_BAND ? k->u.band.dil : k->u.residue;
    P("        /* keys r + %" PRId64 "*k of the rows' class: a dense band in k */\n", D);
    P("        v.D = %" PRId64 "LL;\n        v.r = T.r;\n", D);
    P("        if (!s.ph) {\n            s.ph = 1;\n");
    P("            const i64 kmax = sp_fdiv(T.jmax - T.r, %" PRId64 "LL);\n", D);
    if (k->kind == SP_C_BAND) {
        P("            sp_range(s, sp_max(0, T.m0 + (%" PRId64 "LL)), sp_min(kmax, T.m1 + (%" PRId64
          "LL)), 0, BN);\n        }\n",
          k->u.band.lo / D, k->u.band.hi / D);
        P("        if (!sp_tiles(s, v, BN))\n            return false;\n");
        P("        v.hc = !(v.klo - T.m1 >= ");
        lit(g, k->u.band.lo / D);
        P(" && v.khi - T.m0 <= ");
        lit(g, k->u.band.hi / D);
        P(");\n");
    } else {
        P("            sp_range(s, 0, kmax, 0, BN);\n        }\n");
        P("        if (!sp_tiles(s, v, BN))\n            return false;\n");
    }
    step_yield(g, cls, c, "        ");
    P("    }\n");
}

void cg_band_case(cuda_gen *g, int cls, int c)
{
    const sp_comp *k = cg_comp(g, cls, c);
    const int gid = cg_gid(g, cls, c);
    switch (k->kind) {
    case SP_C_BAND:
        P("        case %d:\n            if (v.hc) {\n                lo = ", gid);
        lit(g, k->u.band.lo);
        P(";\n                hi = ");
        lit(g, k->u.band.hi);
        P(";\n                m = %" PRId64 "LL;\n            }\n            return true;\n", k->u.band.dil);
        break;
    case SP_C_COLS:
        /* A range of one span's keys (D = 1; gathered visits have D = 0
         * and keep the test per element): own tests only sub-runs' repeats,
         * which need hc. ncu put 11 % of longformer's samples at d = 64 in
         * the per-element test of its column tile. */
        P("        case %d:\n            return !v.hc;\n", gid);
        break;
    case SP_C_DENSE: /* own tests nothing of these but the causal cut */
    case SP_C_RANDOM:
    case SP_C_ROWS:
    case SP_C_RESIDUE:
        P("        case %d:\n            return true;\n", gid);
        break;
    default:
        break;
    }
}

void cg_own_body(cuda_gen *g, int cls, int c)
{
    const sp_comp *k = cg_comp(g, cls, c);
    const int gid = cg_gid(g, cls, c);
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
    } else if (k->kind != SP_C_DENSE && k->kind != SP_C_RANDOM && k->kind != SP_C_ROWS &&
               k->kind != SP_C_RESIDUE) {
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
