/* The backward's tile code: what a dQ or a dK/dV entry does with a key
 * tile once its scores are in St, and its entry prologue and epilogue. The
 * listing of keys, the scores and the masks are the forward's
 * (llvm_comp.c, llvm_tile.c), run on the plan for dQ and on the transposed
 * plan for dK and dV (comp.h), so a key tile is exactly the pairs the owner
 * rule gives the component, in either direction.
 *
 * With scores in base 2 (s = scale log2(e) q.k) and L2 = LSE log2(e):
 *   P = 2^(s - L2), dP = dO . V, dS = P (dP - D), D = rowsum(dO o O);
 *   dQ += scale dS K, dV += P^T dO, dK += scale dS^T Q.
 * A masked pair has s = -inf, so P = 0; a row without keys has LSE = -inf,
 * which the code reads as +inf, so that its P is 0 too, never a NaN.
 *
 * dQ (lanes = query rows): dP[kv][lane] = dO[lane] . V[key] is the QK^T
 * micro-kernel on dO packed like Q (Dt) and V's rows; dS overwrites the
 * scores, and the PV micro-kernel adds dS K into the first accumulator.
 * dK, dV (lanes = keys, the listed "keys" query rows i): dP[kv][lane] =
 * dO[i] . V[lane] is the QK^T kernel on V packed (Dt) and dO's rows; P stays
 * in St, dS goes to dP; PV adds P dO into the first accumulator (dV) and
 * dS Q into the second (dK). When the tile asks for dQ too (g3), each listed
 * row's dQ[i] += scale sum over lanes of dS[kv][lane] K[lane] is added in
 * place, with the lanes' K rows kept unpacked (Kr): one walk of the
 * transposed plan then gives all three gradients, five products a pair
 * instead of the seven of a dQ walk beside a dK/dV walk. */
#include "config.h"

#ifdef SPAT_HAVE_LLVM

#include <math.h>
#include <stddef.h>
#include <stdio.h>

#include "llvm_gen.h"
#include "spat.h"

static const double LOG2E = 1.44269504088896341;

static LLVMValueRef fptr(sp_gen *g, LLVMValueRef base, LLVMValueRef idx)
{
    return sp_gen_gep(g, g->tf, base, idx);
}

static LLVMValueRef field(sp_gen *g, LLVMValueRef tile, size_t off, LLVMTypeRef T, const char *name)
{
    return sp_gen_field(g, tile, off, T, name);
}

#define FIELD(g, tile, f, T) field((g), (tile), offsetof(sp_cpu_tile, f), (T), #f)

/* L2 of an LSE (scalar): LSE log2(e), and +inf for -inf (a row without keys). */
static LLVMValueRef lse2(sp_gen *g, LLVMValueRef lse)
{
    LLVMValueRef none = LLVMBuildFCmp(g->b, LLVMRealOEQ, lse, sp_gen_cf(g, -INFINITY), "");
    return LLVMBuildSelect(g->b, none, sp_gen_cf(g, INFINITY),
                           LLVMBuildFMul(g->b, lse, sp_gen_cf(g, LOG2E), ""), "l2");
}

/* Code that runs only when the tile asks for dQ (g3 not NULL): open it,
 * emit it, close it with the block open returned. */
static LLVMBasicBlockRef dq_open(sp_gen *g, LLVMValueRef tile, const char *name)
{
    LLVMBasicBlockRef yes = sp_gen_block(g, name), done = sp_gen_block(g, name);
    LLVMBuildCondBr(g->b, LLVMBuildIsNotNull(g->b, FIELD(g, tile, g3, g->tptr_f), ""), yes, done);
    LLVMPositionBuilderAtEnd(g->b, yes);
    return done;
}

static void dq_close(sp_gen *g, LLVMBasicBlockRef done)
{
    LLVMBuildBr(g->b, done);
    LLVMMoveBasicBlockAfter(done, LLVMGetLastBasicBlock(g->fn));
    LLVMPositionBuilderAtEnd(g->b, done);
}

/* Lane x's row r0 + istep x, or r0 past the n lanes (*valid false). */
static LLVMValueRef lane_row(sp_gen *g, LLVMValueRef x, LLVMValueRef r0, LLVMValueRef istep, LLVMValueRef n,
                             LLVMValueRef *valid)
{
    *valid = LLVMBuildICmp(g->b, LLVMIntSLT, x, n, "");
    return LLVMBuildSelect(g->b, *valid, LLVMBuildAdd(g->b, r0, LLVMBuildMul(g->b, istep, x, ""), ""), r0, "");
}

/* The operands of the backward's products on a key tile. */
static void kt_load(sp_gen *g, sp_ktv *k)
{
    sp_gen_ktv_load(g, k);
    k->sum = true;
    /* Every key of the tile: P and dS are 0 where a pair is not owned. */
    k->c0 = sp_gen_ci64(g, -((int64_t)1 << 40));
    k->c1 = sp_gen_ci64(g, (int64_t)1 << 40);
    k->rs = sp_gen_ci64(g, 0);
}

static void emit_dq(sp_gen *g, sp_ktv *k)
{
    LLVMBuilderRef b = g->b;
    const int V = g->V;
    LLVMValueRef dP = sp_gen_at(g, k->scr, g->o_dp, g->tf);
    sp_ktv kk = *k; /* dP = dO . V */
    kk.Qt = sp_gen_at(g, k->scr, g->o_dt, g->tf);
    kk.kbase = k->vbase, kk.ks = k->vs, kk.St = dP;
    sp_gen_qk(g, &kk);
    LLVMValueRef L2 = sp_gen_at(g, k->scr, g->o_m, g->tf), D = sp_gen_at(g, k->scr, g->o_l, g->tf);
    LLVMValueRef l2[8], dv[8];
    for (int x = 0; x < g->QV; x++) {
        l2[x] = sp_gen_load(g, g->tvf, fptr(g, L2, sp_gen_ci64(g, x * V)), (unsigned)(4 * V));
        dv[x] = sp_gen_load(g, g->tvf, fptr(g, D, sp_gen_ci64(g, x * V)), (unsigned)(4 * V));
    }
    LLVMValueRef init = sp_gen_ci64(g, 0);
    sp_loop l;
    sp_loop_open(g, &l, 1, &init, "ds");
    sp_loop_cond(g, &l, LLVMBuildICmp(b, LLVMIntSLT, l.phi[0], k->nk, ""));
    LLVMValueRef row = LLVMBuildMul(b, l.phi[0], sp_gen_ci64(g, g->TQ), "");
    for (int x = 0; x < g->QV; x++) {
        LLVMValueRef at = LLVMBuildAdd(b, row, sp_gen_ci64(g, x * V), "");
        LLVMValueRef ps = fptr(g, k->St, at);
        LLVMValueRef p = sp_gen_exp2(g, LLVMBuildFSub(b, sp_gen_load(g, g->tvf, ps, (unsigned)(4 * V)), l2[x], ""));
        LLVMValueRef dp = sp_gen_load(g, g->tvf, fptr(g, dP, at), (unsigned)(4 * V));
        sp_gen_store(g, LLVMBuildFMul(b, p, LLVMBuildFSub(b, dp, dv[x], ""), ""), ps, (unsigned)(4 * V));
    }
    LLVMValueRef next = LLVMBuildAdd(b, l.phi[0], sp_gen_ci64(g, 1), "");
    sp_loop_close(g, &l, &next);
    sp_ktv kp = *k; /* dQ += dS K */
    kp.vbase = k->kbase, kp.vs = k->ks;
    sp_gen_pv(g, &kp);
}

/* dQ rows js[kv0 .. kv0 + nr) (rows i - roff of g3, stride g3s) += sc *
 * dS[kv][.] Kr: nr rows by chunks of PC vectors of the head dim, over the
 * TQ lanes. */
static void dq_rows(sp_gen *g, sp_ktv *k, LLVMValueRef dS, LLVMValueRef g3, LLVMValueRef g3s,
                    LLVMValueRef sc, LLVMValueRef kv0, int nr)
{
    LLVMBuilderRef b = g->b;
    int width[64];
    int nv = sp_gen_dim_vectors(g, width);
    LLVMValueRef Kr = sp_gen_at(g, k->scr, g->o_kr, g->tf);
    LLVMValueRef drow[8];
    for (int r = 0; r < nr; r++) {
        LLVMValueRef kv = LLVMBuildAdd(b, kv0, sp_gen_ci64(g, r), "");
        LLVMValueRef i = LLVMBuildSExt(b, sp_gen_load(g, g->ti32, sp_gen_gep(g, g->ti32, k->js, kv), 4), g->ti64, "");
        drow[r] = fptr(g, g3, LLVMBuildMul(b, LLVMBuildSub(b, i, k->roff, ""), g3s, ""));
    }
    for (int c0 = 0, t0 = 0; c0 < nv; c0 += g->PC) {
        int nc = nv - c0 < g->PC ? nv - c0 : g->PC, coff[8];
        LLVMTypeRef vt[8];
        for (int c = 0, t = t0; c < nc; t += width[c0 + c], c++) {
            coff[c] = t;
            vt[c] = LLVMVectorType(g->tf, (unsigned)width[c0 + c]);
        }
        LLVMValueRef init[1 + 8 * 8];
        init[0] = sp_gen_ci64(g, 0);
        for (int x = 0; x < nr * nc; x++)
            init[1 + x] = LLVMConstNull(vt[x % nc]);
        sp_loop l;
        sp_loop_open(g, &l, 1 + nr * nc, init, "dq.lanes");
        sp_loop_cond(g, &l, LLVMBuildICmp(b, LLVMIntSLT, l.phi[0], sp_gen_ci64(g, g->TQ), ""));
        LLVMValueRef kx[8], next[1 + 8 * 8];
        LLVMValueRef krow = fptr(g, Kr, LLVMBuildMul(b, l.phi[0], sp_gen_ci64(g, g->d), ""));
        for (int c = 0; c < nc; c++)
            kx[c] = sp_gen_load(g, vt[c], fptr(g, krow, sp_gen_ci64(g, coff[c])), 4);
        for (int r = 0; r < nr; r++) {
            LLVMValueRef at = LLVMBuildAdd(b, LLVMBuildMul(b, LLVMBuildAdd(b, kv0, sp_gen_ci64(g, r), ""),
                                                           sp_gen_ci64(g, g->TQ), ""), l.phi[0], "");
            LLVMValueRef s = sp_gen_load(g, g->tf, fptr(g, dS, at), 4);
            for (int c = 0; c < nc; c++)
                next[1 + r * nc + c] = sp_gen_fmuladd(g, sp_gen_splat(g, s, width[c0 + c]), kx[c],
                                                      l.phi[1 + r * nc + c]);
        }
        next[0] = LLVMBuildAdd(b, l.phi[0], sp_gen_ci64(g, 1), "");
        sp_loop_close(g, &l, next);
        for (int r = 0; r < nr; r++)
            for (int c = 0; c < nc; c++) {
                LLVMValueRef pd = fptr(g, drow[r], sp_gen_ci64(g, coff[c]));
                LLVMValueRef v = sp_gen_fmuladd(g, l.phi[1 + r * nc + c], sp_gen_splat(g, sc, width[c0 + c]),
                                                sp_gen_load(g, vt[c], pd, 4));
                sp_gen_store(g, v, pd, 4);
            }
        for (int c = 0; c < nc; c++)
            t0 += width[c0 + c];
    }
}

/* The dQ of the listed rows, when the tile asks for it: PR rows at a time,
 * then one at a time. Only the nk listed rows: dS past them is stale. */
static void emit_kv_dq(sp_gen *g, sp_ktv *k, LLVMValueRef dS)
{
    LLVMBuilderRef b = g->b;
    LLVMBasicBlockRef done = dq_open(g, k->tile, "dq");
    LLVMValueRef g3 = FIELD(g, k->tile, g3, g->tptr_f), g3s = FIELD(g, k->tile, g3s, g->ti64), sc = FIELD(g, k->tile, gscale3, g->tf);
    LLVMValueRef zero = sp_gen_ci64(g, 0);
    sp_loop l;
    sp_loop_open(g, &l, 1, &zero, "dq.blocks");
    sp_loop_cond(g, &l, LLVMBuildICmp(b, LLVMIntSLE, LLVMBuildAdd(b, l.phi[0], sp_gen_ci64(g, g->PR), ""), k->nk, ""));
    dq_rows(g, k, dS, g3, g3s, sc, l.phi[0], g->PR);
    LLVMValueRef next = LLVMBuildAdd(b, l.phi[0], sp_gen_ci64(g, g->PR), "");
    sp_loop_close(g, &l, &next);
    sp_loop t;
    sp_loop_open(g, &t, 1, &l.phi[0], "dq.tail");
    sp_loop_cond(g, &t, LLVMBuildICmp(b, LLVMIntSLT, t.phi[0], k->nk, ""));
    dq_rows(g, k, dS, g3, g3s, sc, t.phi[0], 1);
    next = LLVMBuildAdd(b, t.phi[0], sp_gen_ci64(g, 1), "");
    sp_loop_close(g, &t, &next);
    dq_close(g, done);
}

static void emit_kv(sp_gen *g, sp_ktv *k)
{
    LLVMBuilderRef b = g->b;
    const int V = g->V;
    LLVMValueRef dout = FIELD(g, k->tile, dout, g->tptr_f), dos = FIELD(g, k->tile, dos, g->ti64);
    LLVMValueRef lse = FIELD(g, k->tile, lse, g->tptr_f), ls = FIELD(g, k->tile, ls, g->ti64);
    LLVMValueRef dvec = FIELD(g, k->tile, dvec, g->tptr_f);
    LLVMValueRef dP = sp_gen_at(g, k->scr, g->o_dp, g->tf);
    sp_ktv kk = *k; /* dP = dO[i] . V[lane] */
    kk.Qt = sp_gen_at(g, k->scr, g->o_dt, g->tf);
    kk.kbase = dout, kk.ks = dos, kk.St = dP;
    sp_gen_qk(g, &kk);
    LLVMValueRef init = sp_gen_ci64(g, 0);
    sp_loop l;
    sp_loop_open(g, &l, 1, &init, "ds");
    sp_loop_cond(g, &l, LLVMBuildICmp(b, LLVMIntSLT, l.phi[0], k->nk, ""));
    LLVMValueRef i = LLVMBuildSExt(b, sp_gen_load(g, g->ti32, sp_gen_gep(g, g->ti32, k->js, l.phi[0]), 4), g->ti64, "");
    LLVMValueRef r = LLVMBuildSub(b, i, k->roff, "");
    LLVMValueRef l2 = sp_gen_splat(g, lse2(g, sp_gen_load(g, g->tf, fptr(g, lse, LLVMBuildMul(b, r, ls, "")), 4)), V);
    LLVMValueRef di = sp_gen_splat(g, sp_gen_load(g, g->tf, fptr(g, dvec, r), 4), V);
    LLVMValueRef row = LLVMBuildMul(b, l.phi[0], sp_gen_ci64(g, g->TQ), "");
    for (int x = 0; x < g->QV; x++) {
        LLVMValueRef at = LLVMBuildAdd(b, row, sp_gen_ci64(g, x * V), "");
        LLVMValueRef ps = fptr(g, k->St, at), pd = fptr(g, dP, at);
        LLVMValueRef p = sp_gen_exp2(g, LLVMBuildFSub(b, sp_gen_load(g, g->tvf, ps, (unsigned)(4 * V)), l2, ""));
        LLVMValueRef dp = sp_gen_load(g, g->tvf, pd, (unsigned)(4 * V));
        sp_gen_store(g, p, ps, (unsigned)(4 * V));
        sp_gen_store(g, LLVMBuildFMul(b, p, LLVMBuildFSub(b, dp, di, ""), ""), pd, (unsigned)(4 * V));
    }
    LLVMValueRef next = LLVMBuildAdd(b, l.phi[0], sp_gen_ci64(g, 1), "");
    sp_loop_close(g, &l, &next);
    sp_ktv kv = *k; /* dV += P dO */
    kv.vbase = dout, kv.vs = dos;
    sp_gen_pv(g, &kv);
    sp_ktv kq = *k; /* dK += dS Q */
    kq.vbase = k->kbase, kq.vs = k->ks, kq.St = dP, kq.O = sp_gen_at(g, k->scr, g->o_a2, g->tf);
    sp_gen_pv(g, &kq);
    emit_kv_dq(g, k, dP);
}

int sp_gen_kt_bwd(sp_gen *g)
{
    LLVMTypeRef p[3] = {g->tptr_i8, g->tptr_i8, g->ti32};
    g->bwd_type = LLVMFunctionType(g->tv, p, 3, 0);
    char name[160];
    snprintf(name, sizeof name, "%s.%s", g->prefix, g->dir == SP_DIR_DQ ? "dq" : "dkdv");
    LLVMValueRef saved = g->fn;
    LLVMBasicBlockRef at = LLVMGetInsertBlock(g->b);
    g->fn = g->kt_bwd = sp_gen_function(g, name, g->bwd_type, false);
    unsigned kind = LLVMGetEnumAttributeKindForName("noinline", 8);
    LLVMAddAttributeAtIndex(g->fn, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(g->C, kind, 0));
    LLVMPositionBuilderAtEnd(g->b, sp_gen_block(g, "entry"));
    sp_ktv k = {.cls = -1, .comp = -1};
    kt_load(g, &k);
    if (g->dir == SP_DIR_DQ)
        emit_dq(g, &k);
    else
        emit_kv(g, &k);
    LLVMBuildRetVoid(g->b);
    g->fn = saved;
    if (at)
        LLVMPositionBuilderAtEnd(g->b, at);
    return SPAT_OK;
}

/* ------------------------------------------------------------- prologue */

/* With dQ asked for (g3): the lanes' K rows (q) as they are, Kr[x][t], and
 * zero rows past n, so that a lane without a key adds nothing to dQ. */
static void pack_rows(sp_gen *g, LLVMValueRef tile, LLVMValueRef r0, LLVMValueRef istep, LLVMValueRef n,
                      LLVMValueRef Kr)
{
    LLVMBuilderRef b = g->b;
    LLVMBasicBlockRef done = dq_open(g, tile, "kr");
    LLVMValueRef q = FIELD(g, tile, q, g->tptr_f), qs = FIELD(g, tile, qs, g->ti64);
    int width[64];
    int nv = sp_gen_dim_vectors(g, width);
    LLVMValueRef x0 = sp_gen_ci64(g, 0);
    sp_loop l;
    sp_loop_open(g, &l, 1, &x0, "kr.lanes");
    sp_loop_cond(g, &l, LLVMBuildICmp(b, LLVMIntSLT, l.phi[0], sp_gen_ci64(g, g->TQ), ""));
    LLVMValueRef valid, r = lane_row(g, l.phi[0], r0, istep, n, &valid);
    LLVMValueRef src = fptr(g, q, LLVMBuildMul(b, r, qs, ""));
    LLVMValueRef dst = fptr(g, Kr, LLVMBuildMul(b, l.phi[0], sp_gen_ci64(g, g->d), ""));
    for (int c = 0, t = 0; c < nv; t += width[c], c++) {
        LLVMTypeRef vt = LLVMVectorType(g->tf, (unsigned)width[c]);
        LLVMValueRef v = sp_gen_load(g, vt, fptr(g, src, sp_gen_ci64(g, t)), 4);
        sp_gen_store(g, LLVMBuildSelect(b, valid, v, LLVMConstNull(vt), ""), fptr(g, dst, sp_gen_ci64(g, t)), 4);
    }
    LLVMValueRef next = LLVMBuildAdd(b, l.phi[0], sp_gen_ci64(g, 1), "");
    sp_loop_close(g, &l, &next);
    dq_close(g, done);
}

static void emit_prologue(sp_gen *g, LLVMValueRef tile, LLVMValueRef scr)
{
    LLVMBuilderRef b = g->b;
    LLVMValueRef i0 = FIELD(g, tile, i0, g->ti64), istep = FIELD(g, tile, istep, g->ti64);
    LLVMValueRef n = FIELD(g, tile, n, g->ti64), off = FIELD(g, tile, off, g->ti64);
    LLVMValueRef r0 = LLVMBuildSub(b, i0, off, "");
    LLVMValueRef Qt = sp_gen_at(g, scr, g->o_qt, g->tf), Dt = sp_gen_at(g, scr, g->o_dt, g->tf);
    /* The lanes' rows, scaled into base-2 scores, and the rows of the
     * other operand of dP: dO of the query rows (dQ), V of the keys (dK/dV). */
    sp_gen_pack(g, FIELD(g, tile, q, g->tptr_f), FIELD(g, tile, qs, g->ti64), r0, istep, n,
                FIELD(g, tile, qscale, g->tf), Qt);
    if (g->dir == SP_DIR_DQ)
        sp_gen_pack(g, FIELD(g, tile, dout, g->tptr_f), FIELD(g, tile, dos, g->ti64), r0, istep, n,
                    sp_gen_cf(g, 1.0), Dt);
    else
        sp_gen_pack(g, FIELD(g, tile, v, g->tptr_f), FIELD(g, tile, vs, g->ti64), r0, istep, n,
                    sp_gen_cf(g, 1.0), Dt);
    sp_gen_zero(g, sp_gen_at(g, scr, g->o_o, g->tf), g->TQ * g->d);
    if (g->dir == SP_DIR_DKDV) {
        sp_gen_zero(g, sp_gen_at(g, scr, g->o_a2, g->tf), g->TQ * g->d);
        pack_rows(g, tile, r0, istep, n, sp_gen_at(g, scr, g->o_kr, g->tf));
        return;
    }
    /* dQ: each lane's L2 and D; a lane past n gets L2 = +inf (P = 0). */
    LLVMValueRef lse = FIELD(g, tile, lse, g->tptr_f), ls = FIELD(g, tile, ls, g->ti64);
    LLVMValueRef dvec = FIELD(g, tile, dvec, g->tptr_f);
    LLVMValueRef L2 = sp_gen_at(g, scr, g->o_m, g->tf), D = sp_gen_at(g, scr, g->o_l, g->tf);
    LLVMValueRef x0 = sp_gen_ci64(g, 0);
    sp_loop l;
    sp_loop_open(g, &l, 1, &x0, "lanes");
    sp_loop_cond(g, &l, LLVMBuildICmp(b, LLVMIntSLT, l.phi[0], sp_gen_ci64(g, g->TQ), ""));
    LLVMValueRef valid, r = lane_row(g, l.phi[0], r0, istep, n, &valid);
    LLVMValueRef lv = lse2(g, sp_gen_load(g, g->tf, fptr(g, lse, LLVMBuildMul(b, r, ls, "")), 4));
    LLVMValueRef dv = sp_gen_load(g, g->tf, fptr(g, dvec, r), 4);
    sp_gen_store(g, LLVMBuildSelect(b, valid, lv, sp_gen_cf(g, INFINITY), ""), fptr(g, L2, l.phi[0]), 4);
    sp_gen_store(g, LLVMBuildSelect(b, valid, dv, sp_gen_cf(g, 0.0), ""), fptr(g, D, l.phi[0]), 4);
    LLVMValueRef next = LLVMBuildAdd(b, l.phi[0], sp_gen_ci64(g, 1), "");
    sp_loop_close(g, &l, &next);
}

void sp_gen_bwd_prologue(sp_gen *g, LLVMValueRef tile, LLVMValueRef scr)
{
    sp_gen_call_part(g, &g->bwd_prologue, g->dir == SP_DIR_DQ ? "dq_prologue" : "dkdv_prologue",
                     emit_prologue, tile, scr);
}

/* ------------------------------------------------------------- epilogue */

/* dst row (i0 + istep x - goff) += scale acc[x] for the n lanes. */
static void add_rows(sp_gen *g, LLVMValueRef tile, LLVMValueRef acc, LLVMValueRef dst,
                     LLVMValueRef ds, LLVMValueRef scale)
{
    LLVMBuilderRef b = g->b;
    LLVMValueRef i0 = FIELD(g, tile, i0, g->ti64), istep = FIELD(g, tile, istep, g->ti64);
    LLVMValueRef n = FIELD(g, tile, n, g->ti64), goff = FIELD(g, tile, goff, g->ti64);
    LLVMValueRef r0 = LLVMBuildSub(b, i0, goff, "");
    int width[64];
    int nv = sp_gen_dim_vectors(g, width);
    LLVMValueRef x0 = sp_gen_ci64(g, 0);
    sp_loop l;
    sp_loop_open(g, &l, 1, &x0, "add.rows");
    sp_loop_cond(g, &l, LLVMBuildICmp(b, LLVMIntSLT, l.phi[0], n, ""));
    LLVMValueRef row = LLVMBuildAdd(b, r0, LLVMBuildMul(b, istep, l.phi[0], ""), "");
    LLVMValueRef drow = fptr(g, dst, LLVMBuildMul(b, row, ds, ""));
    LLVMValueRef arow = fptr(g, acc, LLVMBuildMul(b, l.phi[0], sp_gen_ci64(g, g->d), ""));
    for (int c = 0, t = 0; c < nv; t += width[c], c++) {
        LLVMTypeRef vt = LLVMVectorType(g->tf, (unsigned)width[c]);
        LLVMValueRef pd = fptr(g, drow, sp_gen_ci64(g, t));
        LLVMValueRef a = sp_gen_load(g, vt, fptr(g, arow, sp_gen_ci64(g, t)), 4);
        sp_gen_store(g, sp_gen_fmuladd(g, a, sp_gen_splat(g, scale, width[c]), sp_gen_load(g, vt, pd, 4)), pd, 4);
    }
    LLVMValueRef next = LLVMBuildAdd(b, l.phi[0], sp_gen_ci64(g, 1), "");
    sp_loop_close(g, &l, &next);
}

static void emit_epilogue(sp_gen *g, LLVMValueRef tile, LLVMValueRef scr)
{
    add_rows(g, tile, sp_gen_at(g, scr, g->o_o, g->tf), FIELD(g, tile, g1, g->tptr_f),
             FIELD(g, tile, g1s, g->ti64), FIELD(g, tile, gscale1, g->tf));
    if (g->dir == SP_DIR_DKDV)
        add_rows(g, tile, sp_gen_at(g, scr, g->o_a2, g->tf), FIELD(g, tile, g2, g->tptr_f),
                 FIELD(g, tile, g2s, g->ti64), FIELD(g, tile, gscale2, g->tf));
}

void sp_gen_bwd_epilogue(sp_gen *g, LLVMValueRef tile, LLVMValueRef scr)
{
    sp_gen_call_part(g, &g->bwd_epilogue, g->dir == SP_DIR_DQ ? "dq_epilogue" : "dkdv_epilogue",
                     emit_epilogue, tile, scr);
}

#endif /* SPAT_HAVE_LLVM */
