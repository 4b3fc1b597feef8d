/* The key-tile kernel: for one query tile (TQ lanes, one query row each)
 * and one key tile (nk keys listed in js), the QK^T micro-kernel, the
 * per-pair mask (masked variant only), the online-softmax update and the PV
 * micro-kernel, all on the state in the scratch area.
 *
 * Orientation. Scores are computed transposed, S^T[key][lane]: a vector
 * holds V query rows, so the running maximum, the sum and the rescale
 * factor of every row are plain vector operations (no horizontal
 * reductions), and K is read as broadcast scalars straight from the
 * caller's memory (any row stride; no packing). Q is packed once per query
 * tile, transposed and scaled (the prologue). PV then runs with vectors
 * along the head dim: O[lane][t..t+V] += P[key][lane] * V[key][t..t+V],
 * V rows loaded as vectors, weights broadcast.
 *
 * Register blocking: QK^T holds KR keys x QV query vectors of scores; PV
 * holds PR rows x PC vectors of O. Both loops keep their accumulators in
 * phis, so they live in registers across the loop. */
#include "config.h"

#ifdef SPAT_HAVE_LLVM

#include <math.h>
#include <stddef.h>
#include <stdio.h>

#include "llvm_gen.h"

typedef sp_ktv ktv;

static LLVMValueRef fptr(sp_gen *g, LLVMValueRef base, LLVMValueRef idx)
{
    return sp_gen_gep(g, g->tf, base, idx);
}

/* a + c and a * c in a's integer type. The kernels index with i64 (no
 * sign extension between an index and its address). */
static LLVMValueRef add32(sp_gen *g, LLVMValueRef a, int64_t c)
{
    return LLVMBuildNSWAdd(g->b, a, LLVMConstInt(LLVMTypeOf(a), (unsigned long long)c, 1), "");
}

static LLVMValueRef mul32(sp_gen *g, LLVMValueRef a, int64_t c)
{
    return LLVMBuildNSWMul(g->b, a, LLVMConstInt(LLVMTypeOf(a), (unsigned long long)c, 1), "");
}

/* Row pointer of key j (i32) in base with row stride s (i64), the row of
 * position roff first when roff is not NULL. */
static LLVMValueRef key_row(sp_gen *g, LLVMValueRef base, LLVMValueRef j, LLVMValueRef s,
                            LLVMValueRef roff)
{
    LLVMValueRef r = LLVMBuildSExt(g->b, j, g->ti64, "");
    if (roff)
        r = LLVMBuildSub(g->b, r, roff, "");
    return fptr(g, base, LLVMBuildMul(g->b, r, s, ""));
}

/* ---------------------------------------------------------------- QK^T */

void sp_gen_qk(sp_gen *g, sp_ktv *k)
{
    const int KR = g->KR, QV = g->QV, V = g->V;
    sp_loop kb;
    LLVMValueRef init = sp_gen_ci64(g, 0);
    sp_loop_open(g, &kb, 1, &init, "qk");
    sp_loop_cond(g, &kb, LLVMBuildICmp(g->b, LLVMIntSLT, kb.phi[0], k->nk, ""));
    LLVMValueRef j[16], kp[16];
    for (int r = 0; r < KR; r++) {
        j[r] = sp_gen_load(g, g->ti32, sp_gen_gep(g, g->ti32, k->js, add32(g, kb.phi[0], r)), 4);
        kp[r] = key_row(g, k->kbase, j[r], k->ks, k->roff);
    }
    /* The dot products over the head dim, U steps per iteration. */
    LLVMValueRef tinit[SP_GEN_MAX_ACC + 1];
    tinit[0] = sp_gen_ci64(g, 0);
    for (int a = 0; a < KR * QV; a++)
        tinit[1 + a] = LLVMConstNull(g->tvf);
    sp_loop tl;
    sp_loop_open(g, &tl, 1 + KR * QV, tinit, "qk.t");
    sp_loop_cond(g, &tl, LLVMBuildICmp(g->b, LLVMIntSLT, tl.phi[0], sp_gen_ci64(g, g->d), ""));
    LLVMValueRef acc[SP_GEN_MAX_ACC];
    for (int a = 0; a < KR * QV; a++)
        acc[a] = tl.phi[1 + a];
    for (int u = 0; u < g->U; u++) {
        LLVMValueRef tt = add32(g, tl.phi[0], u);
        LLVMValueRef qrow = mul32(g, tt, g->TQ);
        LLVMValueRef qv[8];
        for (int x = 0; x < QV; x++)
            qv[x] = sp_gen_load(g, g->tvf, fptr(g, k->Qt, add32(g, qrow, x * V)), (unsigned)(4 * V));
        for (int r = 0; r < KR; r++) {
            LLVMValueRef kk = sp_gen_bcast_load(g, fptr(g, kp[r], LLVMBuildSExt(g->b, tt, g->ti64, "")));
            for (int x = 0; x < QV; x++)
                acc[r * QV + x] = sp_gen_fmuladd(g, kk, qv[x], acc[r * QV + x]);
        }
    }
    LLVMValueRef tnext[SP_GEN_MAX_ACC + 1];
    tnext[0] = add32(g, tl.phi[0], g->U);
    for (int a = 0; a < KR * QV; a++)
        tnext[1 + a] = acc[a];
    sp_loop_close(g, &tl, tnext);
    for (int r = 0; r < KR; r++) {
        LLVMValueRef srow = mul32(g, add32(g, kb.phi[0], r), g->TQ);
        for (int x = 0; x < QV; x++) {
            LLVMValueRef s = tl.phi[1 + r * QV + x];
            sp_gen_store(g, s, fptr(g, k->St, add32(g, srow, x * V)), (unsigned)(4 * V));
        }
    }
    LLVMValueRef next = add32(g, kb.phi[0], KR);
    sp_loop_close(g, &kb, &next);
}

/* ---------------------------------------------------------------- mask */

/* Masked key tiles: the scores of pairs the component does not own become
 * -inf. A pass over St of its own (cheap next to the d FMAs per score), so
 * that one QK^T kernel serves every component. */
static void emit_mask(sp_gen *g, ktv *k)
{
    LLVMValueRef init = sp_gen_ci64(g, 0);
    sp_loop ml;
    sp_loop_open(g, &ml, 1, &init, "mask");
    sp_loop_cond(g, &ml, LLVMBuildICmp(g->b, LLVMIntSLT, ml.phi[0], k->nk, ""));
    LLVMValueRef j = sp_gen_load(g, g->ti32, sp_gen_gep(g, g->ti32, k->js, ml.phi[0]), 4);
    LLVMValueRef row = mul32(g, ml.phi[0], g->TQ);
    for (int x = 0; x < g->QV; x++) {
        LLVMValueRef ps = fptr(g, k->St, add32(g, row, x * g->V));
        LLVMValueRef s = sp_gen_load(g, g->tvf, ps, (unsigned)(4 * g->V));
        LLVMValueRef ok = sp_gen_pair_pred(g, k->cls, k->comp, k->ivec[x], j);
        ok = LLVMBuildAnd(g->b, ok, k->lane_ok[x], "");
        sp_gen_store(g, LLVMBuildSelect(g->b, ok, s, sp_gen_splatf(g, -INFINITY), ""), ps,
                     (unsigned)(4 * g->V));
    }
    LLVMValueRef next = add32(g, ml.phi[0], 1);
    sp_loop_close(g, &ml, &next);
}

/* ------------------------------------------------------------- softmax */

/* The keys (indices into the key tile) that lanes x0..x1 may attend:
 * [c0 + x0 * rs, c1 + x1 * rs] within [0, nk). A band passes its own
 * diagonal bounds (rs = 1), so that the softmax and PV of a narrow band skip
 * the keys that are -inf for every lane of a vector or row block; other
 * components pass the whole tile (rs = 0). Scores outside a lane's range
 * are -inf (the masked kernel ran), so skipping them changes nothing. */
static void key_span(sp_gen *g, ktv *k, int x0, int x1, LLVMValueRef *lo, LLVMValueRef *hi)
{
    LLVMBuilderRef b = g->b;
    LLVMValueRef a = LLVMBuildAdd(b, k->c0, LLVMBuildMul(b, k->rs, sp_gen_ci64(g, x0), ""), "");
    LLVMValueRef z = LLVMBuildAdd(b, k->c1, LLVMBuildMul(b, k->rs, sp_gen_ci64(g, x1), ""), "");
    *lo = sp_gen_smax(g, a, sp_gen_ci64(g, 0));
    *hi = sp_gen_smin(g, z, LLVMBuildSub(b, k->nk, sp_gen_ci64(g, 1), ""));
}

static void emit_softmax(sp_gen *g, ktv *k)
{
    const int QV = g->QV, V = g->V;
    for (int x = 0; x < QV; x++) {
        LLVMValueRef lo, hi;
        key_span(g, k, x * V, x * V + V - 1, &lo, &hi);
        LLVMValueRef init[2] = {lo, sp_gen_splatf(g, -INFINITY)}, next[2];
        sp_loop ml;
        sp_loop_open(g, &ml, 2, init, "sm.max");
        sp_loop_cond(g, &ml, LLVMBuildICmp(g->b, LLVMIntSLE, ml.phi[0], hi, ""));
        LLVMValueRef row = mul32(g, ml.phi[0], g->TQ);
        LLVMValueRef sv = sp_gen_load(g, g->tvf, fptr(g, k->St, add32(g, row, x * V)), (unsigned)(4 * V));
        next[1] = sp_gen_fmax(g, ml.phi[1], sv);
        next[0] = add32(g, ml.phi[0], 1);
        sp_loop_close(g, &ml, next);
        LLVMValueRef pm = fptr(g, k->m, sp_gen_ci64(g, x * V));
        LLVMValueRef mo = sp_gen_load(g, g->tvf, pm, (unsigned)(4 * V));
        LLVMValueRef mn = sp_gen_fmax(g, mo, ml.phi[1]);
        /* A lane with no key yet keeps m = -inf; subtract 0 there so that
         * -inf - -inf never makes a NaN (its weights are all 0 anyway). */
        LLVMValueRef none = LLVMBuildFCmp(g->b, LLVMRealOEQ, mn, sp_gen_splatf(g, -INFINITY), "");
        LLVMValueRef mu = LLVMBuildSelect(g->b, none, sp_gen_splatf(g, 0.0), mn, "");
        LLVMValueRef a = sp_gen_exp2(g, LLVMBuildFSub(g->b, mo, mu, ""));
        sp_gen_store(g, mn, pm, (unsigned)(4 * V));
        sp_gen_store(g, a, fptr(g, k->alpha, sp_gen_ci64(g, x * V)), (unsigned)(4 * V));
        init[1] = LLVMConstNull(g->tvf);
        sp_loop el;
        sp_loop_open(g, &el, 2, init, "sm.exp");
        sp_loop_cond(g, &el, LLVMBuildICmp(g->b, LLVMIntSLE, el.phi[0], hi, ""));
        row = mul32(g, el.phi[0], g->TQ);
        LLVMValueRef ps = fptr(g, k->St, add32(g, row, x * V));
        LLVMValueRef p = sp_gen_exp2(g, LLVMBuildFSub(g->b, sp_gen_load(g, g->tvf, ps, (unsigned)(4 * V)), mu, ""));
        sp_gen_store(g, p, ps, (unsigned)(4 * V));
        next[1] = LLVMBuildFAdd(g->b, el.phi[1], p, "");
        next[0] = add32(g, el.phi[0], 1);
        sp_loop_close(g, &el, next);
        LLVMValueRef pl = fptr(g, k->l, sp_gen_ci64(g, x * V));
        LLVMValueRef lv = sp_gen_load(g, g->tvf, pl, (unsigned)(4 * V));
        sp_gen_store(g, sp_gen_fmuladd(g, lv, a, el.phi[1]), pl, (unsigned)(4 * V));
    }
}

/* ------------------------------------------------------------------ PV */

/* The head dim as vectors: full V-wide ones, then an 8-wide tail where d is
 * not a multiple of V (AVX-512 and d = 8 mod 16). */
int sp_gen_dim_vectors(sp_gen *g, int *width)
{
    int n = 0;
    for (int t = 0; t < g->d;) {
        int w = g->d - t >= g->V ? g->V : 8;
        width[n++] = w;
        t += w;
    }
    return n;
}

static void emit_pv_block(sp_gen *g, ktv *k, LLVMValueRef q0, int nr, int c0, const int *width, int nc)
{
    LLVMTypeRef vt[8];
    int coff[8], t = c0;
    for (int c = 0; c < nc; c++) {
        vt[c] = width[c] == g->V ? g->tvf : LLVMVectorType(g->tf, (unsigned)width[c]);
        coff[c] = t;
        t += width[c];
    }
    LLVMValueRef init[SP_GEN_MAX_ACC + 1];
    LLVMValueRef orow[SP_GEN_MAX_ACC];
    for (int r = 0; r < nr; r++)
        orow[r] = mul32(g, add32(g, q0, r), g->d);
    for (int r = 0; r < nr; r++) {
        LLVMValueRef a = k->sum ? NULL : sp_gen_load(g, g->tf, fptr(g, k->alpha, add32(g, q0, r)), 4);
        for (int c = 0; c < nc; c++) {
            LLVMValueRef po = fptr(g, k->O, add32(g, orow[r], coff[c]));
            LLVMValueRef o = sp_gen_load(g, vt[c], po, 4);
            init[1 + r * nc + c] = a ? LLVMBuildFMul(g->b, o, sp_gen_splat(g, a, width[c]), "") : o;
        }
    }
    /* Only the keys some row of the block may attend. */
    LLVMValueRef a = LLVMBuildAdd(g->b, k->c0, LLVMBuildMul(g->b, k->rs, q0, ""), "");
    LLVMValueRef z = LLVMBuildAdd(g->b, k->c1, LLVMBuildMul(g->b, k->rs, add32(g, q0, nr - 1), ""), "");
    init[0] = sp_gen_smax(g, a, sp_gen_ci64(g, 0));
    LLVMValueRef hi = sp_gen_smin(g, z, LLVMBuildSub(g->b, k->nk, sp_gen_ci64(g, 1), ""));
    sp_loop kl;
    sp_loop_open(g, &kl, 1 + nr * nc, init, "pv");
    sp_loop_cond(g, &kl, LLVMBuildICmp(g->b, LLVMIntSLE, kl.phi[0], hi, ""));
    LLVMValueRef j = sp_gen_load(g, g->ti32, sp_gen_gep(g, g->ti32, k->js, kl.phi[0]), 4);
    LLVMValueRef vp = key_row(g, k->vbase, j, k->vs, k->roff);
    LLVMValueRef vv[8];
    for (int c = 0; c < nc; c++)
        vv[c] = sp_gen_load(g, vt[c], fptr(g, vp, sp_gen_ci64(g, coff[c])), 4);
    LLVMValueRef row = LLVMBuildAdd(g->b, mul32(g, kl.phi[0], g->TQ), q0, "");
    LLVMValueRef next[SP_GEN_MAX_ACC + 1];
    for (int r = 0; r < nr; r++) {
        LLVMValueRef p = sp_gen_load(g, g->tf, fptr(g, k->St, add32(g, row, r)), 4);
        for (int c = 0; c < nc; c++)
            next[1 + r * nc + c] = sp_gen_fmuladd(g, sp_gen_splat(g, p, width[c]), vv[c],
                                                  kl.phi[1 + r * nc + c]);
    }
    next[0] = add32(g, kl.phi[0], 1);
    sp_loop_close(g, &kl, next);
    for (int r = 0; r < nr; r++)
        for (int c = 0; c < nc; c++)
            sp_gen_store(g, kl.phi[1 + r * nc + c], fptr(g, k->O, add32(g, orow[r], coff[c])), 4);
}

void sp_gen_pv(sp_gen *g, sp_ktv *k)
{
    int width[64];
    int nv = sp_gen_dim_vectors(g, width);
    /* A loop over blocks of PR rows (TQ is a multiple of PR), the head dim
     * in chunks of PC vectors inside. */
    LLVMValueRef init = sp_gen_ci64(g, 0);
    sp_loop rl;
    sp_loop_open(g, &rl, 1, &init, "pv.rows");
    sp_loop_cond(g, &rl, LLVMBuildICmp(g->b, LLVMIntSLT, rl.phi[0], sp_gen_ci64(g, g->TQ), ""));
    for (int c = 0, t = 0; c < nv; c += g->PC) {
        int nc = nv - c < g->PC ? nv - c : g->PC;
        emit_pv_block(g, k, rl.phi[0], g->PR, t, width + c, nc);
        for (int x = 0; x < nc; x++)
            t += width[c + x];
    }
    LLVMValueRef next = add32(g, rl.phi[0], g->PR);
    sp_loop_close(g, &rl, &next);
}

/* -------------------------------------------------------------- kernels */

void sp_gen_ktv_load(sp_gen *g, sp_ktv *k)
{
    k->tile = LLVMGetParam(g->fn, 0);
    k->scr = LLVMGetParam(g->fn, 1);
    k->nk = LLVMBuildSExt(g->b, LLVMGetParam(g->fn, 2), g->ti64, "nk");
    if (LLVMCountParams(g->fn) == 6) { /* the backward's kernel has the first three alone */
        k->i0 = LLVMGetParam(g->fn, 3);
        k->istep = LLVMGetParam(g->fn, 4);
        k->lanes = LLVMGetParam(g->fn, 5);
        k->c0 = k->i0, k->c1 = k->istep, k->rs = k->lanes; /* smpv's meaning of the same slots */
    }
    k->kbase = sp_gen_field(g, k->tile, offsetof(sp_cpu_tile, k), g->tptr_f, "k");
    k->vbase = sp_gen_field(g, k->tile, offsetof(sp_cpu_tile, v), g->tptr_f, "v");
    k->ks = sp_gen_field(g, k->tile, offsetof(sp_cpu_tile, ks), g->ti64, "ks");
    k->vs = sp_gen_field(g, k->tile, offsetof(sp_cpu_tile, vs), g->ti64, "vs");
    k->Qt = sp_gen_at(g, k->scr, g->o_qt, g->tf);
    k->St = sp_gen_at(g, k->scr, g->o_st, g->tf);
    k->O = sp_gen_at(g, k->scr, g->o_o, g->tf);
    k->m = sp_gen_at(g, k->scr, g->o_m, g->tf);
    k->l = sp_gen_at(g, k->scr, g->o_l, g->tf);
    k->alpha = sp_gen_at(g, k->scr, g->o_a, g->tf);
    k->js = sp_gen_at(g, k->scr, g->o_js, g->ti32);
    if (g->dir == SP_DIR_DKDV) /* the listed rows are query positions from roff */
        k->roff = sp_gen_field(g, k->tile, offsetof(sp_cpu_tile, roff), g->ti64, "roff");
}

/* Lane positions i0 + istep * x and the lanes the caller allows. */
static void load_lanes(sp_gen *g, ktv *k)
{
    LLVMTypeRef v64 = LLVMVectorType(g->ti64, (unsigned)g->V);
    LLVMValueRef i0 = sp_gen_splat(g, k->i0, g->V), st = sp_gen_splat(g, k->istep, g->V);
    LLVMValueRef lanes = sp_gen_splat(g, k->lanes, g->V);
    for (int x = 0; x < g->QV; x++) {
        LLVMValueRef iota = sp_gen_iota(g, x * g->V), e[64];
        for (int i = 0; i < g->V; i++)
            e[i] = sp_gen_ci64(g, x * g->V + i);
        k->ivec[x] = LLVMBuildAdd(g->b, i0, LLVMBuildMul(g->b, st, iota, ""), "ivec");
        LLVMValueRef sh = LLVMBuildLShr(g->b, lanes, LLVMConstVector(e, (unsigned)g->V), "");
        LLVMValueRef bit = LLVMBuildAnd(g->b, sh, sp_gen_splat(g, sp_gen_ci64(g, 1), g->V), "");
        k->lane_ok[x] = LLVMBuildICmp(g->b, LLVMIntNE, bit, LLVMConstNull(v64), "lane_ok");
    }
}

static LLVMValueRef build_kt(sp_gen *g, const char *name, int cls, int comp)
{
    LLVMValueRef saved = g->fn;
    LLVMBasicBlockRef at = LLVMGetInsertBlock(g->b);
    g->fn = sp_gen_function(g, name, cls == -2 ? g->smpv_type : g->kt_type, false);
    /* One copy per kernel, called once per key tile: inlining it into every
     * call site would only multiply code size and compile time. */
    unsigned kind = LLVMGetEnumAttributeKindForName("noinline", 8);
    LLVMAddAttributeAtIndex(g->fn, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(g->C, kind, 0));
    LLVMPositionBuilderAtEnd(g->b, sp_gen_block(g, "entry"));
    ktv k = {.cls = cls, .comp = comp};
    sp_gen_ktv_load(g, &k);
    if (cls == -2) {
        emit_softmax(g, &k);
        sp_gen_pv(g, &k);
    } else if (comp >= 0) {
        load_lanes(g, &k);
        emit_mask(g, &k);
    } else {
        sp_gen_qk(g, &k);
    }
    LLVMBuildRetVoid(g->b);
    LLVMValueRef fn = g->fn;
    g->fn = saved;
    if (at)
        LLVMPositionBuilderAtEnd(g->b, at);
    return fn;
}

int sp_gen_kt_full(sp_gen *g)
{
    char name[160];
    snprintf(name, sizeof name, "%s.qk_full", g->prefix);
    g->kt_full = build_kt(g, name, -1, -1);
    if (g->dir == SP_DIR_FORWARD) { /* the backward's kernels take the scores from here */
        snprintf(name, sizeof name, "%s.smpv", g->prefix);
        g->kt_smpv = build_kt(g, name, -2, -1);
    }
    return 0;
}

LLVMValueRef sp_gen_kt_masked(sp_gen *g, int cls, int comp)
{
    char name[160];
    snprintf(name, sizeof name, "%s.mask_c%d_%d", g->prefix, cls, comp);
    LLVMValueRef f = LLVMGetNamedFunction(g->M, name);
    return f ? f : build_kt(g, name, cls, comp);
}

/* ------------------------------------------------------------- prologue */

/* Transposes the W x W block held as rows v[0..W) (v[c] becomes column
 * c): log2(W) stages, each swapping the off-diagonal blocks of size s
 * between rows i and i + s with two-source shuffles. */
static void transpose(sp_gen *g, LLVMValueRef *v, int W)
{
    for (int s = W / 2; s >= 1; s /= 2)
        for (int i = 0; i < W; i++) {
            if (i & s)
                continue;
            LLVMValueRef mi[8], mj[8];
            for (int c = 0; c < W; c++) {
                mi[c] = sp_gen_ci32(g, (c & s) == 0 ? c : W + c - s);
                mj[c] = sp_gen_ci32(g, (c & s) == 0 ? c + s : W + c);
            }
            LLVMValueRef a = v[i], bb = v[i + s];
            v[i] = LLVMBuildShuffleVector(g->b, a, bb, LLVMConstVector(mi, (unsigned)W), "");
            v[i + s] = LLVMBuildShuffleVector(g->b, a, bb, LLVMConstVector(mj, (unsigned)W), "");
        }
}

/* A prefetch of the cache line at p into every level. */
void sp_gen_prefetch(sp_gen *g, LLVMValueRef p)
{
    static const char name[] = "llvm.prefetch";
    LLVMValueRef pi8 = LLVMBuildPointerCast(g->b, p, g->tptr_i8, "");
    LLVMTypeRef pt = g->tptr_i8;
    unsigned id = LLVMLookupIntrinsicID(name, sizeof name - 1);
    LLVMValueRef fn = LLVMGetIntrinsicDeclaration(g->M, id, &pt, 1);
    LLVMTypeRef fty = LLVMIntrinsicGetType(g->C, id, &pt, 1);
    LLVMValueRef args[4] = {pi8, sp_gen_ci32(g, 0), sp_gen_ci32(g, 3), sp_gen_ci32(g, 1)};
    LLVMBuildCall2(g->b, fty, fn, args, 4, "");
}

static void emit_prologue(sp_gen *g, LLVMValueRef tile, LLVMValueRef scr)
{
    LLVMBuilderRef b = g->b;
    LLVMValueRef q = sp_gen_field(g, tile, offsetof(sp_cpu_tile, q), g->tptr_f, "q");
    LLVMValueRef qs = sp_gen_field(g, tile, offsetof(sp_cpu_tile, qs), g->ti64, "qs");
    LLVMValueRef i0 = sp_gen_field(g, tile, offsetof(sp_cpu_tile, i0), g->ti64, "i0");
    LLVMValueRef istep = sp_gen_field(g, tile, offsetof(sp_cpu_tile, istep), g->ti64, "istep");
    LLVMValueRef n = sp_gen_field(g, tile, offsetof(sp_cpu_tile, n), g->ti64, "n");
    LLVMValueRef off = sp_gen_field(g, tile, offsetof(sp_cpu_tile, off), g->ti64, "off");
    LLVMValueRef qscale = sp_gen_field(g, tile, offsetof(sp_cpu_tile, qscale), g->tf, "qscale");
    LLVMValueRef Qt = sp_gen_at(g, scr, g->o_qt, g->tf);
    /* Lane x reads row i0 + istep * x - off, scaled; a lane past n reads
     * the tile's first row, scaled by 0, so nothing is read outside Q.
     * Blocks of W x W (W = min(V, 8)) are transposed in registers: a
     * network small enough to compile fast, and far cheaper to run than a
     * gather per column. */
    LLVMValueRef r0 = LLVMBuildSub(b, i0, off, "");
    sp_gen_pack(g, q, qs, r0, istep, n, qscale, Qt);
    /* m = -inf, l = 0, O = 0. */
    for (int x2 = 0; x2 < g->QV; x2++) {
        sp_gen_store(g, sp_gen_splatf(g, -INFINITY), fptr(g, sp_gen_at(g, scr, g->o_m, g->tf), sp_gen_ci32(g, x2 * g->V)),
                     (unsigned)(4 * g->V));
        sp_gen_store(g, sp_gen_splatf(g, 0.0), fptr(g, sp_gen_at(g, scr, g->o_l, g->tf), sp_gen_ci32(g, x2 * g->V)),
                     (unsigned)(4 * g->V));
    }
    sp_gen_zero(g, sp_gen_at(g, scr, g->o_o, g->tf), g->TQ * g->d);
}

void sp_gen_zero(sp_gen *g, LLVMValueRef p, int n)
{
    LLVMBuilderRef b = g->b;
    LLVMValueRef init = sp_gen_ci32(g, 0);
    sp_loop zl;
    sp_loop_open(g, &zl, 1, &init, "zero");
    sp_loop_cond(g, &zl, LLVMBuildICmp(b, LLVMIntSLT, zl.phi[0], sp_gen_ci32(g, n), ""));
    sp_gen_store(g, sp_gen_splatf(g, 0.0), fptr(g, p, zl.phi[0]), (unsigned)(4 * g->V));
    LLVMValueRef nz = add32(g, zl.phi[0], g->V);
    sp_loop_close(g, &zl, &nz);
}

void sp_gen_pack(sp_gen *g, LLVMValueRef q, LLVMValueRef qs, LLVMValueRef r0, LLVMValueRef istep,
                 LLVMValueRef n, LLVMValueRef qscale, LLVMValueRef Qt)
{
    LLVMBuilderRef b = g->b;
    const int W = g->V < 8 ? g->V : 8;
    LLVMTypeRef wt = LLVMVectorType(g->tf, (unsigned)W);
    LLVMValueRef xb0 = sp_gen_ci64(g, 0);
    sp_loop xl;
    sp_loop_open(g, &xl, 1, &xb0, "pack.lanes");
    sp_loop_cond(g, &xl, LLVMBuildICmp(b, LLVMIntSLT, xl.phi[0], sp_gen_ci64(g, g->TQ), ""));
    LLVMValueRef xb = xl.phi[0], rowp[8], sc[8];
    for (int e = 0; e < W; e++) {
        LLVMValueRef x = LLVMBuildAdd(b, xb, sp_gen_ci64(g, e), "");
        LLVMValueRef valid = LLVMBuildICmp(b, LLVMIntSLT, x, n, "");
        LLVMValueRef r = LLVMBuildSelect(b, valid, LLVMBuildAdd(b, r0, LLVMBuildMul(b, istep, x, ""), ""), r0, "");
        sc[e] = sp_gen_splat(g, LLVMBuildSelect(b, valid, qscale, sp_gen_cf(g, 0.0), ""), W);
        rowp[e] = fptr(g, q, LLVMBuildMul(b, r, qs, ""));
    }
    /* The same lanes of the next tile of the run (rows istep * TQ further
     * on): fetched now, they arrive while this tile computes. A prefetch
     * past the end of Q is harmless. */
    LLVMValueRef ahead = LLVMBuildMul(b, LLVMBuildMul(b, istep, sp_gen_ci64(g, g->TQ), ""), qs, "");
    for (int e = 0; e < W; e++)
        for (int t = 0; t < g->d; t += 16)
            sp_gen_prefetch(g, fptr(g, rowp[e], LLVMBuildAdd(b, ahead, sp_gen_ci64(g, t), "")));
    LLVMValueRef t0 = sp_gen_ci64(g, 0);
    sp_loop tl;
    sp_loop_open(g, &tl, 1, &t0, "pack");
    sp_loop_cond(g, &tl, LLVMBuildICmp(b, LLVMIntSLT, tl.phi[0], sp_gen_ci64(g, g->d), ""));
    LLVMValueRef v[8];
    for (int e = 0; e < W; e++)
        v[e] = LLVMBuildFMul(b, sp_gen_load(g, wt, fptr(g, rowp[e], tl.phi[0]), 4), sc[e], "");
    transpose(g, v, W);
    for (int c = 0; c < W; c++) {
        LLVMValueRef row = LLVMBuildMul(b, LLVMBuildAdd(b, tl.phi[0], sp_gen_ci64(g, c), ""), sp_gen_ci64(g, g->TQ), "");
        sp_gen_store(g, v[c], fptr(g, Qt, LLVMBuildAdd(b, row, xb, "")), (unsigned)(4 * W));
    }
    LLVMValueRef tn = LLVMBuildAdd(b, tl.phi[0], sp_gen_ci64(g, W), "");
    sp_loop_close(g, &tl, &tn);
    LLVMValueRef xn = LLVMBuildAdd(b, xb, sp_gen_ci64(g, W), "");
    sp_loop_close(g, &xl, &xn);
}

/* Calls a void (i8* tile, i8* scratch) part of every tile, built the first
 * time (one copy per head dim, noinline: every entry point calls it). */
void sp_gen_call_part(sp_gen *g, LLVMValueRef *fn, const char *what,
                      void (*emit)(sp_gen *, LLVMValueRef, LLVMValueRef), LLVMValueRef tile,
                      LLVMValueRef scr)
{
    if (!g->prologue_type) {
        LLVMTypeRef p[2] = {g->tptr_i8, g->tptr_i8};
        g->prologue_type = LLVMFunctionType(g->tv, p, 2, 0);
    }
    if (!*fn) {
        char name[160];
        snprintf(name, sizeof name, "%s.%s", g->prefix, what);
        LLVMValueRef saved = g->fn;
        LLVMBasicBlockRef at = LLVMGetInsertBlock(g->b);
        g->fn = *fn = sp_gen_function(g, name, g->prologue_type, false);
        unsigned kind = LLVMGetEnumAttributeKindForName("noinline", 8);
        LLVMAddAttributeAtIndex(g->fn, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(g->C, kind, 0));
        LLVMPositionBuilderAtEnd(g->b, sp_gen_block(g, "entry"));
        emit(g, LLVMGetParam(g->fn, 0), LLVMGetParam(g->fn, 1));
        LLVMBuildRetVoid(g->b);
        g->fn = saved;
        LLVMPositionBuilderAtEnd(g->b, at);
    }
    LLVMValueRef args[2] = {tile, scr};
    LLVMBuildCall2(g->b, g->prologue_type, *fn, args, 2, "");
}

void sp_gen_prologue(sp_gen *g, LLVMValueRef tile, LLVMValueRef scr)
{
    sp_gen_call_part(g, &g->prologue, "prologue", emit_prologue, tile, scr);
}

/* ------------------------------------------------------------- epilogue */

/* Per-lane coefficients in vectors, then row by row: O = O * a1 + acc * a2
 * and the new LSE, all in the generated code (per-row scalar work in the
 * runtime would cost as much as a short row's attention). */
static void emit_epilogue(sp_gen *g, LLVMValueRef tile, LLVMValueRef scr)
{
    LLVMBuilderRef b = g->b;
    const int V = g->V, TQ = g->TQ;
    LLVMValueRef mode = sp_gen_field(g, tile, offsetof(sp_cpu_tile, mode), g->ti32, "mode");
    LLVMBasicBlockRef work = sp_gen_block(g, "work"), done = sp_gen_block(g, "keep");
    LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntEQ, mode, sp_gen_ci32(g, SP_CPU_KEEP), ""), done, work);
    LLVMPositionBuilderAtEnd(b, work);
    LLVMValueRef merge = LLVMBuildICmp(b, LLVMIntEQ, mode, sp_gen_ci32(g, SP_CPU_MERGE), "merge");
    LLVMValueRef n = sp_gen_field(g, tile, offsetof(sp_cpu_tile, n), g->ti64, "n");
    LLVMValueRef i0 = sp_gen_field(g, tile, offsetof(sp_cpu_tile, i0), g->ti64, "i0");
    LLVMValueRef istep = sp_gen_field(g, tile, offsetof(sp_cpu_tile, istep), g->ti64, "istep");
    LLVMValueRef off = sp_gen_field(g, tile, offsetof(sp_cpu_tile, off), g->ti64, "off");
    LLVMValueRef o = sp_gen_field(g, tile, offsetof(sp_cpu_tile, o), g->tptr_f, "o");
    LLVMValueRef os = sp_gen_field(g, tile, offsetof(sp_cpu_tile, os), g->ti64, "os");
    LLVMValueRef lse = sp_gen_field(g, tile, offsetof(sp_cpu_tile, lse), g->tptr_f, "lse");
    LLVMValueRef ls = sp_gen_field(g, tile, offsetof(sp_cpu_tile, ls), g->ti64, "ls");
    LLVMValueRef m = sp_gen_at(g, scr, g->o_m, g->tf), l = sp_gen_at(g, scr, g->o_l, g->tf);
    LLVMValueRef acc = sp_gen_at(g, scr, g->o_o, g->tf), St = sp_gen_at(g, scr, g->o_st, g->tf);
    LLVMValueRef A1 = St, A2 = fptr(g, St, sp_gen_ci32(g, TQ)), NL = fptr(g, St, sp_gen_ci32(g, 2 * TQ)),
                 LO = fptr(g, St, sp_gen_ci32(g, 3 * TQ));
    LLVMValueRef r0 = LLVMBuildSub(b, i0, off, "");
    /* The rows' current LSEs (merging), -inf elsewhere. */
    LLVMValueRef x0 = sp_gen_ci64(g, 0);
    sp_loop ll;
    sp_loop_open(g, &ll, 1, &x0, "epi.lse");
    sp_loop_cond(g, &ll, LLVMBuildICmp(b, LLVMIntSLT, ll.phi[0], sp_gen_ci64(g, TQ), ""));
    LLVMValueRef valid = LLVMBuildAnd(b, merge, LLVMBuildICmp(b, LLVMIntSLT, ll.phi[0], n, ""), "");
    LLVMValueRef r = LLVMBuildSelect(b, valid, LLVMBuildAdd(b, r0, LLVMBuildMul(b, istep, ll.phi[0], ""), ""), r0, "");
    LLVMValueRef cur = sp_gen_load(g, g->tf, fptr(g, lse, LLVMBuildMul(b, r, ls, "")), 4);
    sp_gen_store(g, LLVMBuildSelect(b, valid, cur, sp_gen_cf(g, -INFINITY), ""), fptr(g, LO, ll.phi[0]), 4);
    LLVMValueRef xn = LLVMBuildAdd(b, ll.phi[0], sp_gen_ci64(g, 1), "");
    sp_loop_close(g, &ll, &xn);
    const double LN2 = 0.69314718055994530942, LOG2E = 1.44269504088896341;
    LLVMValueRef ninf = sp_gen_splatf(g, -INFINITY), one = sp_gen_splatf(g, 1.0), zero = sp_gen_splatf(g, 0.0);
    for (int x = 0; x < g->QV; x++) {
        LLVMValueRef ix = sp_gen_ci32(g, x * V);
        LLVMValueRef mv = sp_gen_load(g, g->tvf, fptr(g, m, ix), (unsigned)(4 * V));
        LLVMValueRef lv = sp_gen_load(g, g->tvf, fptr(g, l, ix), (unsigned)(4 * V));
        LLVMValueRef lo = sp_gen_load(g, g->tvf, fptr(g, LO, ix), (unsigned)(4 * V));
        LLVMValueRef has = LLVMBuildFCmp(b, LLVMRealOGT, lv, zero, "");
        LLVMValueRef lsafe = LLVMBuildSelect(b, has, lv, one, "");
        LLVMValueRef lp = LLVMBuildFMul(b, LLVMBuildFAdd(b, mv, sp_gen_log2(g, lsafe), ""), sp_gen_splatf(g, LN2), "");
        LLVMValueRef inv = LLVMBuildFDiv(b, one, lsafe, "");
        LLVMValueRef mx = sp_gen_fmax(g, lo, lp);
        LLVMValueRef w1 = sp_gen_exp2(g, LLVMBuildFMul(b, LLVMBuildFSub(b, lo, mx, ""), sp_gen_splatf(g, LOG2E), ""));
        LLVMValueRef w2 = sp_gen_exp2(g, LLVMBuildFMul(b, LLVMBuildFSub(b, lp, mx, ""), sp_gen_splatf(g, LOG2E), ""));
        LLVMValueRef sum = LLVMBuildFAdd(b, w1, w2, "");
        LLVMValueRef isum = LLVMBuildFDiv(b, one, sum, "");
        LLVMValueRef ma1 = LLVMBuildFMul(b, w1, isum, ""), ma2 = LLVMBuildFMul(b, LLVMBuildFMul(b, w2, isum, ""), inv, "");
        LLVMValueRef mnl = sp_gen_fmuladd(g, sp_gen_log2(g, sum), sp_gen_splatf(g, LN2), mx);
        LLVMValueRef mergev = sp_gen_splat(g, merge, V);
        LLVMValueRef a1 = LLVMBuildSelect(b, mergev, LLVMBuildSelect(b, has, ma1, one, ""), zero, "");
        LLVMValueRef a2 = LLVMBuildSelect(b, has, LLVMBuildSelect(b, mergev, ma2, inv, ""), zero, "");
        LLVMValueRef nl = LLVMBuildSelect(b, has, LLVMBuildSelect(b, mergev, mnl, lp, ""),
                                          LLVMBuildSelect(b, mergev, lo, ninf, ""), "");
        sp_gen_store(g, a1, fptr(g, A1, ix), (unsigned)(4 * V));
        sp_gen_store(g, a2, fptr(g, A2, ix), (unsigned)(4 * V));
        sp_gen_store(g, nl, fptr(g, NL, ix), (unsigned)(4 * V));
    }
    int width[64];
    int nv = sp_gen_dim_vectors(g, width);
    for (int pass = 0; pass < 2; pass++) {
        /* pass 0 writes (O is not read: it may hold anything), pass 1 merges */
        LLVMBasicBlockRef body = sp_gen_block(g, pass ? "epi.merge" : "epi.write"), next = sp_gen_block(g, "epi.next");
        LLVMBuildCondBr(b, pass ? merge : LLVMBuildNot(b, merge, ""), body, next);
        LLVMPositionBuilderAtEnd(b, body);
        sp_loop rl;
        sp_loop_open(g, &rl, 1, &x0, "epi.rows");
        sp_loop_cond(g, &rl, LLVMBuildICmp(b, LLVMIntSLT, rl.phi[0], n, ""));
        LLVMValueRef x = rl.phi[0];
        LLVMValueRef row = LLVMBuildAdd(b, r0, LLVMBuildMul(b, istep, x, ""), "");
        LLVMValueRef orow = fptr(g, o, LLVMBuildMul(b, row, os, ""));
        LLVMValueRef arow = fptr(g, acc, LLVMBuildMul(b, x, sp_gen_ci64(g, g->d), ""));
        LLVMValueRef s1 = sp_gen_load(g, g->tf, fptr(g, A1, x), 4), s2 = sp_gen_load(g, g->tf, fptr(g, A2, x), 4);
        for (int c = 0, t = 0; c < nv; t += width[c], c++) {
            LLVMTypeRef vt = LLVMVectorType(g->tf, (unsigned)width[c]);
            LLVMValueRef av = LLVMBuildFMul(b, sp_gen_load(g, vt, fptr(g, arow, sp_gen_ci64(g, t)), 4),
                                            sp_gen_splat(g, s2, width[c]), "");
            if (pass)
                av = sp_gen_fmuladd(g, sp_gen_load(g, vt, fptr(g, orow, sp_gen_ci64(g, t)), 4),
                                    sp_gen_splat(g, s1, width[c]), av);
            sp_gen_store(g, av, fptr(g, orow, sp_gen_ci64(g, t)), 4);
        }
        sp_gen_store(g, sp_gen_load(g, g->tf, fptr(g, NL, x), 4), fptr(g, lse, LLVMBuildMul(b, row, ls, "")), 4);
        LLVMValueRef nx = LLVMBuildAdd(b, x, sp_gen_ci64(g, 1), "");
        sp_loop_close(g, &rl, &nx);
        LLVMBuildBr(b, next);
        LLVMPositionBuilderAtEnd(b, next);
    }
    LLVMBuildBr(b, done);
    LLVMPositionBuilderAtEnd(b, done);
}

void sp_gen_epilogue(sp_gen *g, LLVMValueRef tile, LLVMValueRef scr)
{
    sp_gen_call_part(g, &g->epilogue, "epilogue", emit_epilogue, tile, scr);
}

#endif /* SPAT_HAVE_LLVM */
