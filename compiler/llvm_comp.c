/* The structure-aware part of the generated code: for each component of
 * the plan, where a query tile's keys are, which key tiles need a per-pair
 * mask, and the mask itself, with the pattern's constants folded in.
 *
 * Passes (runtime/cpu_abi.h):
 *  - direct components (columns, dense, plain band, block band, segment,
 *    offsets, random) run over contiguous query tiles, all of a class into
 *    one softmax state: SP_CPU_DIRECT;
 *  - a dilated band (dilation D) or a residue class (stride S) runs over
 *    the rows of one residue class, c, c+D, c+2D..., against the keys of the
 *    same class: a dense band (or causal block) in the remapped index
 *    space, so no pair is computed and then masked away: SP_CPU_REMAP;
 *  - global rows own their whole row (every later component excludes
 *    them); their keys are split into chunks that threads share: SP_CPU_ROWS.
 *
 * Ownership stays exact: a component that excludes the global rows masks
 * those lanes; one that excludes the global columns drops those keys while
 * it lists them; diagonal exclusions (bands, segments, residues, offsets) are
 * tested per pair, on the key tiles whose offset range can meet them. */
#include "config.h"

#ifdef SPAT_HAVE_LLVM

#include <assert.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comp.h"
#include "llvm_gen.h"
#include "spat.h"

static const sp_comp *comp_of(const sp_gen *g, int cls, int k) { return &g->plan->classes[cls].comps[k]; }

static bool excludes(const sp_gen *g, int cls, int k, sp_comp_kind kind)
{
    const sp_headplan *hp = &g->plan->classes[cls];
    for (uint32_t m = hp->comps[k].excl; m; m &= m - 1)
        if (hp->comps[__builtin_ctz(m)].kind == kind)
            return true;
    return false;
}

/* ----------------------------------------------------- per-pair predicate */

static LLVMValueRef vconst(sp_gen *g, int64_t v) { return sp_gen_splat(g, sp_gen_ci32(g, v), g->V); }

static LLVMValueRef vcmp(sp_gen *g, LLVMIntPredicate p, LLVMValueRef a, int64_t c)
{
    return LLVMBuildICmp(g->b, p, a, vconst(g, c), "");
}

static LLVMValueRef vin(sp_gen *g, LLVMValueRef x, int64_t lo, int64_t hi)
{
    return LLVMBuildAnd(g->b, vcmp(g, LLVMIntSGE, x, lo), vcmp(g, LLVMIntSLE, x, hi), "");
}

/* The form (comp.h) of component c, or false for rows, cols, random. */
static bool form_of(const sp_gen *g, const sp_comp *c, sp_dform *f)
{
    return sp_comp_dform(c, g->plan->block, f);
}

/* Is the vector t (per lane) in T? NULL: every t is. own: the keys listed
 * are of the lanes' residue class already (a remapped component's own
 * test), so t's multiple needs no test. */
static LLVMValueRef in_form(sp_gen *g, const sp_dform *f, LLVMValueRef t, bool own)
{
    LLVMBuilderRef b = g->b;
    LLVMValueRef in = NULL;
    if (f->list) {
        for (int k = 0; k < f->nlist; k++) {
            LLVMValueRef eq = vcmp(g, LLVMIntEQ, t, f->list[k]);
            in = in ? LLVMBuildOr(b, in, eq, "") : eq;
        }
        return in;
    }
    if (f->lo > -SP_DFORM_INF && f->hi < SP_DFORM_INF)
        in = vin(g, t, f->lo, f->hi);
    if (f->m > 1 && !own) {
        LLVMValueRef mul = vcmp(g, LLVMIntEQ, LLVMBuildSRem(b, t, vconst(g, f->m), ""), 0);
        in = in ? LLVMBuildAnd(b, in, mul, "") : mul;
    }
    return in;
}

/* Pairs of component c (its own rule, no cut, no ownership) among lanes i
 * and key j; diff = j - i. NULL: every pair, or a kind without a form. */
static LLVMValueRef has_pair(sp_gen *g, const sp_comp *c, LLVMValueRef i, LLVMValueRef j,
                             LLVMValueRef diff, bool own)
{
    sp_dform f;
    if (!form_of(g, c, &f))
        return NULL;
    LLVMValueRef t = diff;
    if (f.q > 1)
        t = LLVMBuildSub(g->b, LLVMBuildUDiv(g->b, j, vconst(g, f.q), ""),
                         LLVMBuildUDiv(g->b, i, vconst(g, f.q), ""), "");
    return in_form(g, &f, t, own);
}

LLVMValueRef sp_gen_pair_pred(sp_gen *g, int cls, int k, LLVMValueRef i, LLVMValueRef js)
{
    LLVMBuilderRef b = g->b;
    const sp_headplan *hp = &g->plan->classes[cls];
    const sp_comp *c = &hp->comps[k];
    LLVMValueRef j = sp_gen_splat(g, js, g->V);
    LLVMValueRef diff = LLVMBuildSub(b, j, i, "");
    LLVMValueRef ok = LLVMConstAllOnes(LLVMVectorType(g->ti1, (unsigned)g->V));
    if (hp->causal)
        ok = LLVMBuildICmp(b, LLVMIntSLE, j, i, "");
    if (hp->anticausal)
        ok = LLVMBuildICmp(b, LLVMIntSGE, j, i, "");
    /* Its own rule: remapped components list only keys of the lanes'
     * class, so a dilated band's own test is its offset range. */
    LLVMValueRef own = has_pair(g, c, i, j, diff, true);
    if (own)
        ok = LLVMBuildAnd(b, ok, own, "");
    for (uint32_t m = c->excl; m; m &= m - 1) {
        LLVMValueRef in = has_pair(g, &hp->comps[__builtin_ctz(m)], i, j, diff, false);
        if (in)
            ok = LLVMBuildAnd(b, ok, LLVMBuildNot(b, in, ""), "");
    }
    return ok;
}

/* ------------------------------------------------------------- drivers */

/* The values of one entry point's tile. */
typedef struct drv {
    int cls, comp;
    LLVMValueRef tile, scr, js, kx;
    LLVMValueRef L, i0, istep, n, ilo, ihi, jmax, rowex, valid;
    LLVMValueRef jmin;    /* the first key that may be listed: 0, but for dK/dV */
    bool jmin0;           /* jmin is the constant 0 */
    LLVMValueRef allowed; /* i64 lanes the component may fill */
    LLVMValueRef kt;      /* its masked kernel */
    bool filter;          /* drop global columns while listing keys */
    int64_t st;           /* the step of the keys being listed (1 but for remapped ones) */
} drv;

static LLVMValueRef c64(sp_gen *g, int64_t v) { return sp_gen_ci64(g, v); }

static LLVMValueRef add64(sp_gen *g, LLVMValueRef a, LLVMValueRef c) { return LLVMBuildAdd(g->b, a, c, ""); }

static LLVMValueRef or1(sp_gen *g, LLVMValueRef a, LLVMValueRef c) { return LLVMBuildOr(g->b, a, c, ""); }

static LLVMValueRef lt64(sp_gen *g, LLVMValueRef a, LLVMValueRef c)
{
    return LLVMBuildICmp(g->b, LLVMIntSLT, a, c, "");
}

static LLVMValueRef gt64(sp_gen *g, LLVMValueRef a, LLVMValueRef c)
{
    return LLVMBuildICmp(g->b, LLVMIntSGT, a, c, "");
}

/* Do [a0, a1] and [b0, b1] meet? */
static LLVMValueRef meets(sp_gen *g, LLVMValueRef a0, LLVMValueRef a1, LLVMValueRef b0, LLVMValueRef b1)
{
    return LLVMBuildAnd(g->b, LLVMBuildICmp(g->b, LLVMIntSLE, a0, b1, ""),
                        LLVMBuildICmp(g->b, LLVMIntSLE, b0, a1, ""), "");
}

/* The values of the form's term over rows ilo..ihi and keys jlo..jhi
 * (i64): [*tlo, *thi], every value between taken (sp_dform_box). */
static void box(sp_gen *g, const sp_dform *f, LLVMValueRef ilo, LLVMValueRef ihi, LLVMValueRef jlo,
                LLVMValueRef jhi, LLVMValueRef *tlo, LLVMValueRef *thi)
{
    LLVMBuilderRef b = g->b;
    if (f->q == 1) {
        *tlo = LLVMBuildSub(b, jlo, ihi, ""), *thi = LLVMBuildSub(b, jhi, ilo, "");
        return;
    }
    LLVMValueRef q = c64(g, f->q);
    *tlo = LLVMBuildSub(b, LLVMBuildSDiv(b, jlo, q, ""), LLVMBuildSDiv(b, ihi, q, ""), "");
    *thi = LLVMBuildSub(b, LLVMBuildSDiv(b, jhi, q, ""), LLVMBuildSDiv(b, ilo, q, ""), "");
}

/* May the pairs of rows ilo..ihi and keys jlo..jhi (i64, ascending) include
 * any of component e's? Conservative (a bounded range's multiples are not
 * tested): a true answer only costs a mask. NULL for kinds without a form. */
static LLVMValueRef may_have(sp_gen *g, const sp_comp *e, LLVMValueRef ilo, LLVMValueRef ihi,
                             LLVMValueRef jlo, LLVMValueRef jhi)
{
    LLVMBuilderRef b = g->b;
    sp_dform f;
    if (!form_of(g, e, &f))
        return NULL;
    LLVMValueRef tlo, thi;
    box(g, &f, ilo, ihi, jlo, jhi, &tlo, &thi);
    if (f.list) {
        LLVMValueRef any = LLVMConstInt(g->ti1, 0, 0);
        for (int k = 0; k < f.nlist; k++) {
            LLVMValueRef o = c64(g, f.list[k]);
            any = or1(g, any, meets(g, tlo, thi, o, o));
        }
        return any;
    }
    if (f.lo > -SP_DFORM_INF && f.hi < SP_DFORM_INF)
        return meets(g, tlo, thi, c64(g, f.lo), c64(g, f.hi));
    if (f.m == 1)
        return LLVMConstInt(g->ti1, 1, 0);
    /* Is there a multiple of m in [tlo, thi]? */
    LLVMValueRef top = LLVMBuildMul(b, sp_gen_floordiv(g, thi, f.m), c64(g, f.m), "");
    return LLVMBuildICmp(b, LLVMIntSGE, top, tlo, "");
}

/* Does key tile jlo..jhi need the per-pair mask for this component? */
static LLVMValueRef needs_mask(sp_gen *g, drv *d, LLVMValueRef jlo, LLVMValueRef jhi)
{
    LLVMBuilderRef b = g->b;
    const sp_headplan *hp = &g->plan->classes[d->cls];
    const sp_comp *c = &hp->comps[d->comp];
    /* Lanes the component may not fill, among the valid ones. */
    LLVMValueRef holes = LLVMBuildAnd(b, LLVMBuildNot(b, d->allowed, ""), d->valid, "");
    LLVMValueRef m = LLVMBuildICmp(b, LLVMIntNE, holes, c64(g, 0), "");
    if (hp->causal)
        m = or1(g, m, gt64(g, jhi, d->ilo));
    if (hp->anticausal)
        m = or1(g, m, lt64(g, jlo, d->ihi));
    /* Its own rule: some pair of the box outside T's range, or T a list. */
    sp_dform f;
    if (form_of(g, c, &f)) {
        LLVMValueRef tlo, thi;
        box(g, &f, d->ilo, d->ihi, jlo, jhi, &tlo, &thi);
        if (f.list)
            m = LLVMConstInt(g->ti1, 1, 0);
        if (!f.list && f.lo > -SP_DFORM_INF)
            m = or1(g, m, lt64(g, tlo, c64(g, f.lo)));
        if (!f.list && f.hi < SP_DFORM_INF)
            m = or1(g, m, gt64(g, thi, c64(g, f.hi)));
    }
    for (uint32_t x = c->excl; x; x &= x - 1) {
        LLVMValueRef h = may_have(g, &hp->comps[__builtin_ctz(x)], d->ilo, d->ihi, jlo, jhi);
        if (h)
            m = or1(g, m, h);
    }
    return m;
}

/* The key span of each lane for the softmax and PV (llvm_tile.c,
 * key_span): when the tile's keys are evenly spaced (nothing filtered out),
 * key kv is jlo + st * kv and lane x's row i0 + istep * x (istep = st), so a
 * band's diagonal bounds and causality give lane x the keys
 * [c0 + x, c1 + x]. Otherwise every lane spans the whole tile. */
static void key_spans(sp_gen *g, drv *d, LLVMValueRef nk, LLVMValueRef jlo, LLVMValueRef jhi,
                      LLVMValueRef *out)
{
    LLVMBuilderRef b = g->b;
    const sp_headplan *hp = &g->plan->classes[d->cls];
    const sp_comp *c = &hp->comps[d->comp];
    const int64_t BIG = (int64_t)1 << 40;
    LLVMValueRef c0 = c64(g, -BIG), c1 = c64(g, BIG);
    LLVMValueRef rel = LLVMBuildSub(b, d->ilo, jlo, ""); /* ilo - jlo, a multiple of st */
    sp_dform f; /* a band: offsets lo..hi, both bounded */
    if (form_of(g, c, &f) && f.q == 1 && !f.list && f.lo > -SP_DFORM_INF && f.hi < SP_DFORM_INF) {
        c0 = sp_gen_floordiv(g, add64(g, rel, c64(g, f.lo + d->st - 1)), d->st);
        c1 = sp_gen_floordiv(g, add64(g, rel, c64(g, f.hi)), d->st);
    }
    if (hp->causal)
        c1 = sp_gen_smin(g, c1, sp_gen_floordiv(g, rel, d->st));
    LLVMValueRef n1 = LLVMBuildSub(b, LLVMBuildSExt(b, nk, g->ti64, ""), c64(g, 1), "");
    LLVMValueRef even = LLVMBuildICmp(b, LLVMIntEQ, LLVMBuildSub(b, jhi, jlo, ""),
                                      LLVMBuildMul(b, n1, c64(g, d->st), ""), "");
    out[3] = LLVMBuildSelect(b, even, c0, c64(g, -BIG), "");
    out[4] = LLVMBuildSelect(b, even, c1, c64(g, BIG), "");
    out[5] = LLVMBuildSelect(b, even, c64(g, 1), c64(g, 0), "");
}

/* Runs the key tile js[0..nk) (nk > 0): pads it to a multiple of KR with
 * its last key, then calls the full or the masked kernel. */
static void process(sp_gen *g, drv *d, LLVMValueRef nk)
{
    LLVMBuilderRef b = g->b;
    LLVMValueRef last = sp_gen_load(g, g->ti32, sp_gen_gep(g, g->ti32, d->js, LLVMBuildSub(b, nk, sp_gen_ci32(g, 1), "")), 4);
    for (int p = 0; p < g->KR - 1; p++)
        sp_gen_store(g, last, sp_gen_gep(g, g->ti32, d->js, LLVMBuildAdd(b, nk, sp_gen_ci32(g, p), "")), 4);
    LLVMValueRef first = sp_gen_load(g, g->ti32, sp_gen_gep(g, g->ti32, d->js, sp_gen_ci32(g, 0)), 4);
    LLVMValueRef jlo = LLVMBuildSExt(b, first, g->ti64, ""), jhi = LLVMBuildSExt(b, last, g->ti64, "");
    LLVMValueRef mask = needs_mask(g, d, jlo, jhi);
    LLVMValueRef args[6] = {d->tile, d->scr, nk, LLVMBuildTrunc(b, d->i0, g->ti32, ""),
                            LLVMBuildTrunc(b, d->istep, g->ti32, ""), d->allowed};
    LLVMValueRef span[6];
    if (g->dir == SP_DIR_FORWARD)
        key_spans(g, d, nk, jlo, jhi, span);
    LLVMBuildCall2(b, g->kt_type, g->kt_full, args, 6, "");
    LLVMBasicBlockRef bm = sp_gen_block(g, "masked"), done = sp_gen_block(g, "tiled");
    LLVMBuildCondBr(b, mask, bm, done);
    LLVMPositionBuilderAtEnd(b, bm);
    LLVMBuildCall2(b, g->kt_type, d->kt, args, 6, "");
    LLVMBuildBr(b, done);
    LLVMPositionBuilderAtEnd(b, done);
    span[0] = d->tile, span[1] = d->scr, span[2] = nk;
    if (g->dir == SP_DIR_FORWARD)
        LLVMBuildCall2(b, g->smpv_type, g->kt_smpv, span, 6, "");
    else
        LLVMBuildCall2(b, g->bwd_type, g->kt_bwd, span, 3, "");
}

/* Calls process() when nk > 0. */
static void process_nonempty(sp_gen *g, drv *d, LLVMValueRef nk)
{
    LLVMBasicBlockRef run = sp_gen_block(g, "run"), skip = sp_gen_block(g, "skip");
    LLVMBuildCondBr(g->b, LLVMBuildICmp(g->b, LLVMIntSGT, nk, sp_gen_ci32(g, 0), ""), run, skip);
    LLVMPositionBuilderAtEnd(g->b, run);
    process(g, d, nk);
    LLVMBuildBr(g->b, skip);
    LLVMPositionBuilderAtEnd(g->b, skip);
}

/* Every key tile of the keys ja, ja+st, ... <= jb (nothing when ja > jb). */
static void emit_range(sp_gen *g, drv *d, LLVMValueRef ja, LLVMValueRef jb, LLVMValueRef st)
{
    LLVMBuilderRef b = g->b;
    sp_loop ol;
    sp_loop_open(g, &ol, 1, &ja, "keys");
    sp_loop_cond(g, &ol, LLVMBuildICmp(b, LLVMIntSLE, ol.phi[0], jb, ""));
    LLVMValueRef init[2] = {ol.phi[0], sp_gen_ci32(g, 0)};
    sp_loop fl;
    sp_loop_open(g, &fl, 2, init, "fill");
    LLVMValueRef more = LLVMBuildAnd(b, LLVMBuildICmp(b, LLVMIntSLT, fl.phi[1], sp_gen_ci32(g, g->TK), ""),
                                     LLVMBuildICmp(b, LLVMIntSLE, fl.phi[0], jb, ""), "");
    sp_loop_cond(g, &fl, more);
    LLVMValueRef j = fl.phi[0], nk = fl.phi[1];
    sp_gen_store(g, LLVMBuildTrunc(b, j, g->ti32, ""), sp_gen_gep(g, g->ti32, d->js, nk), 4);
    LLVMValueRef keep = LLVMConstInt(g->ti1, 1, 0);
    if (d->filter)
        keep = LLVMBuildICmp(b, LLVMIntEQ, sp_gen_load(g, g->ti8, sp_gen_gep(g, g->ti8, d->kx, j), 1),
                             LLVMConstInt(g->ti8, 0, 0), "");
    LLVMValueRef next[2] = {add64(g, j, st), LLVMBuildAdd(b, nk, LLVMBuildZExt(b, keep, g->ti32, ""), "")};
    sp_loop_close(g, &fl, next);
    process_nonempty(g, d, fl.phi[1]);
    LLVMValueRef cur = fl.phi[0];
    sp_loop_close(g, &ol, &cur);
}

/* Every key tile of the columns component's spans, up to jmax; tiles run
 * across spans, so short periodic runs still make full tiles. */
static void emit_spans(sp_gen *g, drv *d)
{
    LLVMBuilderRef b = g->b;
    LLVMValueRef cols = sp_gen_field(g, d->tile, offsetof(sp_cpu_tile, cols), g->tptr_i64, "cols");
    LLVMValueRef ncols = sp_gen_field(g, d->tile, offsetof(sp_cpu_tile, ncols), g->ti64, "ncols");
    LLVMValueRef init[2] = {c64(g, 0), d->jmin};
    sp_loop ol;
    sp_loop_open(g, &ol, 2, init, "spans");
    sp_loop_cond(g, &ol, lt64(g, ol.phi[0], ncols));
    LLVMValueRef finit[3] = {ol.phi[0], ol.phi[1], sp_gen_ci32(g, 0)};
    sp_loop fl;
    sp_loop_open(g, &fl, 3, finit, "fill");
    LLVMValueRef more = LLVMBuildAnd(b, LLVMBuildICmp(b, LLVMIntSLT, fl.phi[2], sp_gen_ci32(g, g->TK), ""),
                                     lt64(g, fl.phi[0], ncols), "");
    sp_loop_cond(g, &fl, more);
    LLVMValueRef si = fl.phi[0], cur = fl.phi[1], nk = fl.phi[2];
    LLVMValueRef sp = sp_gen_gep(g, g->ti64, cols, LLVMBuildMul(b, si, c64(g, 2), ""));
    LLVMValueRef lo = sp_gen_load(g, g->ti64, sp, 8);
    LLVMValueRef hi = sp_gen_smin(g, sp_gen_load(g, g->ti64, sp_gen_gep(g, g->ti64, sp, c64(g, 1)), 8), d->jmax);
    LLVMValueRef c3 = sp_gen_smax(g, cur, lo);
    LLVMValueRef in = LLVMBuildICmp(b, LLVMIntSLE, c3, hi, "");
    sp_gen_store(g, LLVMBuildTrunc(b, c3, g->ti32, ""), sp_gen_gep(g, g->ti32, d->js, nk), 4);
    LLVMValueRef done = gt64(g, lo, d->jmax);
    LLVMValueRef si2 = LLVMBuildSelect(b, in, si, add64(g, si, c64(g, 1)), "");
    si2 = LLVMBuildSelect(b, done, ncols, si2, "");
    LLVMValueRef next[3] = {si2, LLVMBuildSelect(b, in, add64(g, c3, c64(g, 1)), c3, ""),
                            LLVMBuildAdd(b, nk, LLVMBuildZExt(b, in, g->ti32, ""), "")};
    sp_loop_close(g, &fl, next);
    process_nonempty(g, d, fl.phi[2]);
    LLVMValueRef onext[2] = {fl.phi[0], fl.phi[1]};
    sp_loop_close(g, &ol, onext);
}

/* Bits lo..hi of an i64 (0 <= lo <= hi <= 63), wrapping as intended. */
static LLVMValueRef bits(sp_gen *g, LLVMValueRef lo, LLVMValueRef hi)
{
    LLVMBuilderRef b = g->b;
    LLVMValueRef top = LLVMBuildShl(b, c64(g, 2), hi, "");
    return LLVMBuildSub(b, top, LLVMBuildShl(b, c64(g, 1), lo, ""), "");
}

/* Random blocks: per query block of the tile, its drawn key blocks, with
 * the lanes of that query block. */
static void emit_random(sp_gen *g, drv *d)
{
    LLVMBuilderRef b = g->b;
    int64_t B = g->plan->block;
    LLVMValueRef rnd = sp_gen_field(g, d->tile, offsetof(sp_cpu_tile, rnd), g->tptr_i64, "rnd");
    LLVMValueRef rcnt = sp_gen_field(g, d->tile, offsetof(sp_cpu_tile, rcnt), g->tptr_i32, "rcnt");
    LLVMValueRef rqb0 = sp_gen_field(g, d->tile, offsetof(sp_cpu_tile, rqb0), g->ti64, "rqb0");
    LLVMValueRef rcap = sp_gen_field(g, d->tile, offsetof(sp_cpu_tile, rcap), g->ti64, "rcap");
    LLVMValueRef qb0 = LLVMBuildSDiv(b, d->ilo, c64(g, B), ""), qb1 = LLVMBuildSDiv(b, d->ihi, c64(g, B), "");
    sp_loop ql;
    sp_loop_open(g, &ql, 1, &qb0, "qblocks");
    sp_loop_cond(g, &ql, LLVMBuildICmp(b, LLVMIntSLE, ql.phi[0], qb1, ""));
    LLVMValueRef qb = ql.phi[0];
    /* Lanes x with (i0 + x) / B == qb (direct tiles step by 1). */
    LLVMValueRef xlo = sp_gen_smax(g, LLVMBuildSub(b, LLVMBuildMul(b, qb, c64(g, B), ""), d->i0, ""), c64(g, 0));
    LLVMValueRef xhi = sp_gen_smin(g, LLVMBuildSub(b, LLVMBuildMul(b, add64(g, qb, c64(g, 1)), c64(g, B), ""),
                                                   add64(g, d->i0, c64(g, 1)), ""),
                                   LLVMBuildSub(b, d->n, c64(g, 1), ""));
    drv dq = *d;
    dq.allowed = LLVMBuildAnd(b, bits(g, xlo, xhi), d->allowed, "");
    LLVMValueRef slot = LLVMBuildSub(b, qb, rqb0, "");
    LLVMValueRef cnt = LLVMBuildSExt(b, sp_gen_load(g, g->ti32, sp_gen_gep(g, g->ti32, rcnt, slot), 4), g->ti64, "");
    LLVMValueRef base = LLVMBuildMul(b, slot, rcap, "");
    LLVMValueRef zero = c64(g, 0);
    sp_loop kl;
    sp_loop_open(g, &kl, 1, &zero, "kblocks");
    sp_loop_cond(g, &kl, lt64(g, kl.phi[0], cnt));
    LLVMValueRef kb = sp_gen_load(g, g->ti64, sp_gen_gep(g, g->ti64, rnd, add64(g, base, kl.phi[0])), 8);
    LLVMValueRef ja = LLVMBuildMul(b, kb, c64(g, B), "");
    LLVMValueRef jb = sp_gen_smin(g, add64(g, ja, c64(g, B - 1)), d->jmax);
    if (!d->jmin0)
        ja = sp_gen_smax(g, ja, d->jmin);
    emit_range(g, &dq, ja, jb, c64(g, 1));
    LLVMValueRef kn = add64(g, kl.phi[0], c64(g, 1));
    sp_loop_close(g, &kl, &kn);
    LLVMValueRef qn = add64(g, qb, c64(g, 1));
    sp_loop_close(g, &ql, &qn);
}

/* The keys of component comp for the tile, in key tiles. */
/* The keys of a diagonal form (comp.h) for the tile's rows ilo..ihi: whole
 * blocks of q around them (block bands, segments), the diagonals of a list,
 * or the offsets lo..hi by the lanes' residue class mod m (bands, residues,
 * dense), clipped to jmin..jmax. */
static void emit_form(sp_gen *g, drv *d, const sp_dform *f)
{
    LLVMBuilderRef b = g->b;
    LLVMValueRef zero = c64(g, 0), one = c64(g, 1);
    if (f->list) {
        /* Each offset is a diagonal: the keys ilo+o..ihi+o, less those an
         * earlier (smaller) offset already listed, so no key is seen twice
         * by the tile; the mask keeps the pairs j - i = o. */
        for (int k = 0; k < f->nlist; k++) {
            int64_t o = f->list[k];
            LLVMValueRef ja = add64(g, d->ilo, c64(g, o));
            if (k > 0)
                ja = sp_gen_smax(g, ja, add64(g, d->ihi, c64(g, f->list[k - 1] + 1)));
            ja = sp_gen_smax(g, ja, d->jmin);
            LLVMValueRef jb = sp_gen_smin(g, add64(g, d->ihi, c64(g, o)), d->jmax);
            emit_range(g, d, ja, jb, one);
        }
        return;
    }
    if (f->q > 1) {
        LLVMValueRef Q = c64(g, f->q);
        LLVMValueRef qlo = LLVMBuildSDiv(b, d->ilo, Q, ""), qhi = LLVMBuildSDiv(b, d->ihi, Q, "");
        LLVMValueRef ja = LLVMBuildMul(b, f->lo ? add64(g, qlo, c64(g, f->lo)) : qlo, Q, "");
        if (f->lo < 0 || !d->jmin0)
            ja = sp_gen_smax(g, ja, d->jmin);
        LLVMValueRef jb = LLVMBuildSub(b, LLVMBuildMul(b, add64(g, qhi, c64(g, f->hi + 1)), Q, ""), one, "");
        emit_range(g, d, ja, sp_gen_smin(g, jb, d->jmax), one);
        return;
    }
    const int64_t m = f->m;
    LLVMValueRef ja;
    if (f->lo > -SP_DFORM_INF) {
        ja = add64(g, d->ilo, c64(g, f->lo));
        if (m > 1) {
            /* First key >= jmin of the lanes' residue class. */
            LLVMValueRef neg = LLVMBuildSub(b, d->jmin, ja, "");
            LLVMValueRef k = LLVMBuildSDiv(b, add64(g, neg, c64(g, m - 1)), c64(g, m), "");
            k = sp_gen_smax(g, k, zero);
            ja = add64(g, ja, LLVMBuildMul(b, k, c64(g, m), ""));
        } else {
            ja = sp_gen_smax(g, ja, d->jmin);
        }
    } else if (m > 1) {
        LLVMValueRef M = c64(g, m);
        ja = LLVMBuildSRem(b, d->ilo, M, "");
        if (!d->jmin0) /* the first key >= jmin of the class of ilo: jmin + (ilo - jmin) mod m */
            ja = add64(g, d->jmin, LLVMBuildSRem(b, add64(g, LLVMBuildSRem(b, LLVMBuildSub(b, d->ilo, d->jmin, ""), M, ""), M), M, ""));
    } else {
        ja = d->jmin;
    }
    LLVMValueRef jb = f->hi < SP_DFORM_INF ? sp_gen_smin(g, add64(g, d->ihi, c64(g, f->hi)), d->jmax) : d->jmax;
    emit_range(g, d, ja, jb, c64(g, m));
}

/* The keys of component comp for the tile, in key tiles. */
static void emit_comp(sp_gen *g, drv *base, int comp, int kind)
{
    LLVMBuilderRef b = g->b;
    const sp_comp *c = comp_of(g, base->cls, comp);
    drv d = *base;
    d.comp = comp;
    sp_dform f;
    const bool form = kind != SP_CPU_ROWS && form_of(g, c, &f);
    d.st = form ? f.m : 1;
    d.kt = sp_gen_kt_masked(g, d.cls, comp);
    d.filter = excludes(g, d.cls, comp, SP_C_COLS);
    /* Global rows belong to the rows component alone. */
    d.allowed = excludes(g, d.cls, comp, SP_C_ROWS) ? LLVMBuildNot(b, d.rowex, "") : c64(g, -1);
    if (form) {
        emit_form(g, &d, &f);
    } else if (kind == SP_CPU_ROWS) {
        LLVMValueRef k0 = sp_gen_field(g, d.tile, offsetof(sp_cpu_tile, k0), g->ti64, "k0");
        LLVMValueRef k1 = sp_gen_field(g, d.tile, offsetof(sp_cpu_tile, k1), g->ti64, "k1");
        emit_range(g, &d, d.jmin0 ? k0 : sp_gen_smax(g, k0, d.jmin), sp_gen_smin(g, k1, d.jmax), c64(g, 1));
    } else if (c->kind == SP_C_COLS) {
        emit_spans(g, &d);
    } else {
        assert(c->kind == SP_C_RANDOM);
        emit_random(g, &d);
    }
}

/* ------------------------------------------------------------- entries */

/* The entry point of pass `kind` (SP_CPU_DIRECT, _REMAP, _ROWS) of class
 * cls in direction g->dir; comp: the remapped or rows component. */
static int entry(sp_gen *g, sp_cpu_info *info, char ***names, int kind, int cls, int comp)
{
    static const int base[] = {[SP_DIR_FORWARD] = 0, [SP_DIR_DQ] = SP_CPU_DQ, [SP_DIR_DKDV] = SP_CPU_KVQ};
    char name[160];
    int e = (int)info->nentries;
    snprintf(name, sizeof name, "%s_e%d", g->prefix, e);
    char **nn = realloc(*names, sizeof **names * (size_t)(e + 1));
    if (!nn)
        return sp_gen_fail(g, SPAT_ENOMEM, "out of memory");
    *names = nn;
    if (!(nn[e] = strdup(name)))
        return sp_gen_fail(g, SPAT_ENOMEM, "out of memory");
    const sp_headplan *hp = &g->plan->classes[cls];
    const sp_comp *c = &hp->comps[comp];
    info->entry[e] = (sp_cpu_entry){
        .kind = (uint32_t)(base[g->dir] + kind), .cls = (uint32_t)cls,
        .comp = (uint32_t)(kind == SP_CPU_DIRECT ? 0 : comp),
        .step = (uint32_t)sp_comp_step(c)};
    info->nentries++;

    LLVMTypeRef pt = g->tptr_i8;
    LLVMTypeRef fty = LLVMFunctionType(g->tv, &pt, 1, 0);
    g->fn = sp_gen_function(g, name, fty, true);
    LLVMBuilderRef b = g->b;
    LLVMPositionBuilderAtEnd(b, sp_gen_block(g, "entry"));
    drv d = {.cls = cls};
    d.tile = LLVMGetParam(g->fn, 0);
    d.scr = sp_gen_field(g, d.tile, offsetof(sp_cpu_tile, scratch), g->tptr_i8, "scratch");
    d.js = sp_gen_at(g, d.scr, g->o_js, g->ti32);
    d.kx = sp_gen_field(g, d.tile, offsetof(sp_cpu_tile, kx), g->tptr_i8, "kx");
    d.L = sp_gen_field(g, d.tile, offsetof(sp_cpu_tile, L), g->ti64, "L");
    d.i0 = sp_gen_field(g, d.tile, offsetof(sp_cpu_tile, i0), g->ti64, "i0");
    d.istep = sp_gen_field(g, d.tile, offsetof(sp_cpu_tile, istep), g->ti64, "istep");
    d.n = sp_gen_field(g, d.tile, offsetof(sp_cpu_tile, n), g->ti64, "n");
    d.rowex = sp_gen_field(g, d.tile, offsetof(sp_cpu_tile, rowex), g->ti64, "rowex");
    d.ilo = d.i0;
    d.ihi = add64(g, d.i0, LLVMBuildMul(b, d.istep, LLVMBuildSub(b, d.n, c64(g, 1), ""), ""));
    LLVMValueRef last = LLVMBuildSub(b, d.L, c64(g, 1), "");
    d.jmax = hp->causal ? sp_gen_smin(g, d.ihi, last) : last;
    d.jmin = c64(g, 0), d.jmin0 = true;
    if (g->dir == SP_DIR_DKDV) { /* the listed rows: query rows roff .. L-1 within k0 .. k1 */
        LLVMValueRef k0 = sp_gen_field(g, d.tile, offsetof(sp_cpu_tile, k0), g->ti64, "k0");
        LLVMValueRef k1 = sp_gen_field(g, d.tile, offsetof(sp_cpu_tile, k1), g->ti64, "k1");
        d.jmin = sp_gen_smax(g, sp_gen_field(g, d.tile, offsetof(sp_cpu_tile, roff), g->ti64, "roff"), k0);
        d.jmin = hp->anticausal ? sp_gen_smax(g, d.jmin, d.ilo) : d.jmin;
        d.jmin0 = false;
        d.jmax = sp_gen_smin(g, d.jmax, k1);
    }
    /* Lanes that hold rows: n of them (n <= TQ <= 64). */
    LLVMValueRef full = LLVMBuildICmp(b, LLVMIntSGE, d.n, c64(g, 64), "");
    d.valid = LLVMBuildSelect(b, full, c64(g, -1),
                              LLVMBuildSub(b, LLVMBuildShl(b, c64(g, 1), sp_gen_smin(g, d.n, c64(g, 63)), ""), c64(g, 1), ""), "");
    if (g->dir == SP_DIR_FORWARD)
        sp_gen_prologue(g, d.tile, d.scr);
    else
        sp_gen_bwd_prologue(g, d.tile, d.scr);
    if (kind == SP_CPU_DIRECT) {
        for (int k = 0; k < hp->ncomps; k++)
            if (sp_comp_pass(&hp->comps[k]) == SP_PASS_DIRECT)
                emit_comp(g, &d, k, kind);
    } else {
        emit_comp(g, &d, comp, kind);
    }
    if (g->dir == SP_DIR_FORWARD)
        sp_gen_epilogue(g, d.tile, d.scr);
    else
        sp_gen_bwd_epilogue(g, d.tile, d.scr);
    LLVMBuildRetVoid(b);
    return SPAT_OK;
}

/* One entry per pass of the lowered plan, in its order. */
int sp_gen_entries(sp_gen *g, sp_cpu_info *info, char ***names)
{
    static const int entry_kind[] = {[SP_PASS_DIRECT] = SP_CPU_DIRECT, [SP_PASS_REMAP] = SP_CPU_REMAP,
                                     [SP_PASS_ROWS] = SP_CPU_ROWS};
    sp_arena a;
    sp_arena_init(&a);
    sp_lowered *l;
    int rc = sp_plan_lower(g->plan, (sp_direction)g->dir, &a, &l)
                 ? sp_gen_fail(g, SPAT_ENOMEM, "out of memory")
                 : SPAT_OK;
    for (int x = 0; rc == SPAT_OK && x < l->npasses; x++) {
        const sp_passdef *pd = &l->pass[x];
        rc = entry(g, info, names, entry_kind[pd->kind], pd->cls, pd->comp < 0 ? 0 : pd->comp);
    }
    sp_arena_free(&a);
    return rc;
}

#endif /* SPAT_HAVE_LLVM */
