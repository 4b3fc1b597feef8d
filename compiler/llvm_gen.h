/* Internals of the LLVM backend's code generator, shared by llvm_*.c: the
 * generation context, IR helpers, and the pieces each file contributes.
 *
 * Shapes (all compile-time constants of a generated function):
 *   V   floats per vector (16 AVX-512, 8 AVX2, 4 SSE)
 *   TQ  query lanes of a tile = QV vectors; lane x is a query row
 *   TK  keys per key tile; the QK^T kernel runs KR keys at a time
 *   d   head dim
 * Scratch (per thread, 64-byte aligned): Qt[d][TQ] (queries, transposed,
 * scaled), St[TK][TQ] (scores, then weights), O[TQ][d], m[TQ], l[TQ],
 * alpha[TQ], js[TK + KR] (the key tile's positions). */
#ifndef SPAT_LLVM_GEN_H
#define SPAT_LLVM_GEN_H

#include "backend_llvm.h"
#include "comp.h"

#ifdef SPAT_HAVE_LLVM

#include <stdbool.h>

#define SP_GEN_MAX_ACC 32

typedef struct sp_gen {
    LLVMContextRef C;
    LLVMModuleRef M;
    LLVMBuilderRef b;
    const sp_plan *plan;
    const sp_llvm_target *t;
    char *err;
    size_t errlen;
    /* types */
    LLVMTypeRef tv, ti1, ti8, ti32, ti64, tf, tvf, tvi, tvf8, tptr_f, tptr_i8, tptr_i32,
        tptr_i64, tvoid;
    /* shapes */
    int V, QV, TQ, KR, TK, PR, PC, d, U;
    /* scratch byte offsets; the backward adds Dt[d][TQ] (dO or V of the
     * lanes, transposed), dP[TK][TQ] and a second accumulator A2[TQ][d],
     * and reads O as its first accumulator, m as the lanes' LSE (base 2)
     * and l as their D */
    unsigned o_qt, o_st, o_o, o_m, o_l, o_a, o_js, o_dt, o_dp, o_a2, o_kr, scratch;
    /* the direction of the entries being built (comp.h): SP_DIR_FORWARD,
     * SP_DIR_DQ (plan = the plan), SP_DIR_DKDV (plan = its transpose) */
    int dir;
    /* the function being built and its values */
    LLVMValueRef fn;
    LLVMValueRef kt_full;            /* void (i8* tile, i8* scratch, i32 nk, i32 i0, i32 istep, i64 lanes) */
    LLVMValueRef kt_smpv;            /* the softmax update and PV, shared by every variant */
    LLVMValueRef kt_bwd;             /* the backward's work on a tile's scores (bwd_type) */
    LLVMTypeRef bwd_type;            /* void (i8* tile, i8* scratch, i32 nk) */
    LLVMValueRef prologue;           /* void (i8* tile, i8* scratch): pack Q, zero the state */
    LLVMValueRef epilogue;           /* void (i8* tile, i8* scratch): write or merge O, LSE */
    LLVMValueRef bwd_prologue, bwd_epilogue; /* the backward's, of direction dir */
    LLVMTypeRef prologue_type;       /* of prologue and epilogue */
    LLVMTypeRef kt_type;
    LLVMTypeRef smpv_type;           /* void (i8* tile, i8* scratch, i32 nk, i64 c0, i64 c1, i64 rs) */
    char prefix[96];
    int nfn;                         /* counter for private names */
} sp_gen;

/* -------------------------------------------------------------- helpers */

LLVMValueRef sp_gen_ci32(sp_gen *g, int64_t v);
LLVMValueRef sp_gen_ci64(sp_gen *g, int64_t v);
LLVMValueRef sp_gen_cf(sp_gen *g, double v);
LLVMValueRef sp_gen_splat(sp_gen *g, LLVMValueRef scalar, int n);
LLVMValueRef sp_gen_splatf(sp_gen *g, double v); /* <V x float> constant */
/* <V x i32> {base, base+1, ...} */
LLVMValueRef sp_gen_iota(sp_gen *g, int base);
/* Loads a T at byte offset off of p (an i8*). */
LLVMValueRef sp_gen_field(sp_gen *g, LLVMValueRef p, size_t off, LLVMTypeRef T, const char *name);
/* p + i elements of T, as a T* (p of any pointer type). */
LLVMValueRef sp_gen_gep(sp_gen *g, LLVMTypeRef T, LLVMValueRef p, LLVMValueRef i);
/* i8* p + off bytes, as a T*. */
LLVMValueRef sp_gen_at(sp_gen *g, LLVMValueRef p, unsigned off, LLVMTypeRef T);
LLVMValueRef sp_gen_load(sp_gen *g, LLVMTypeRef T, LLVMValueRef p, unsigned align);
void sp_gen_store(sp_gen *g, LLVMValueRef v, LLVMValueRef p, unsigned align);
LLVMValueRef sp_gen_fmuladd(sp_gen *g, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c);
LLVMValueRef sp_gen_fmax(sp_gen *g, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef sp_gen_smin(sp_gen *g, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef sp_gen_smax(sp_gen *g, LLVMValueRef a, LLVMValueRef b);
/* floor(a / c) for a constant c > 0, signed a. */
LLVMValueRef sp_gen_floordiv(sp_gen *g, LLVMValueRef a, int64_t c);
LLVMValueRef sp_gen_bcast_load(sp_gen *g, LLVMValueRef p); /* splat(*(float *)p) */
/* Prefetches the cache line at p (no fault, whatever p is). */
void sp_gen_prefetch(sp_gen *g, LLVMValueRef p);

/* Loops: phis in a head block; loop_cond ends the head with the exit test;
 * loop_close feeds the next values from the current block. */
typedef struct sp_loop {
    LLVMBasicBlockRef head, body, exit;
    int n;
    LLVMValueRef phi[SP_GEN_MAX_ACC + 8];
} sp_loop;
void sp_loop_open(sp_gen *g, sp_loop *l, int n, const LLVMValueRef *init, const char *name);
void sp_loop_cond(sp_gen *g, sp_loop *l, LLVMValueRef cond);
void sp_loop_close(sp_gen *g, sp_loop *l, const LLVMValueRef *next);
LLVMBasicBlockRef sp_gen_block(sp_gen *g, const char *name);

/* A new function of the module with the target's attributes. */
LLVMValueRef sp_gen_function(sp_gen *g, const char *name, LLVMTypeRef fty, bool exported);

/* ------------------------------------------------------------ llvm_exp.c */

/* 2^x for a <V x float> x <= 0 (or -inf): range reduction and a degree-6
 * polynomial, relative error below 2 ulp; -inf and x < -127 give 0. */
LLVMValueRef sp_gen_exp2(sp_gen *g, LLVMValueRef x);

/* log2(x) for a <V x float> x >= 1, relative error about 1e-7. */
LLVMValueRef sp_gen_log2(sp_gen *g, LLVMValueRef x);

/* ----------------------------------------------------------- llvm_tile.c */

/* The values every part of a key-tile function reads. The micro-kernels
 * take their operands from here, so that the backward runs them on other
 * tensors: sp_gen_qk computes St[kv][lane] = sum_t Qt[t][lane] *
 * kbase[js[kv] - roff][t]; sp_gen_pv adds St[kv][lane] * vbase[js[kv] -
 * roff][t] into O[lane][t], first rescaling O by alpha unless `sum`. */
typedef struct sp_ktv {
    LLVMValueRef tile, scr, nk, i0, istep, lanes;
    LLVMValueRef kbase, ks, vbase, vs, Qt, St, O, m, l, alpha, js;
    LLVMValueRef roff;       /* NULL: rows are indexed by position */
    LLVMValueRef c0, c1, rs; /* smpv: the key span of each lane (key_span) */
    bool sum;                /* pv accumulates without the rescale */
    int cls, comp;           /* masked variant's component, comp < 0: full */
    LLVMValueRef ivec[8], lane_ok[8];
} sp_ktv;

/* Loads the fields of a key-tile function (parameters, tile, scratch). */
void sp_gen_ktv_load(sp_gen *g, sp_ktv *k);
void sp_gen_qk(sp_gen *g, sp_ktv *k);
void sp_gen_pv(sp_gen *g, sp_ktv *k);
/* Packs the rows r0 + istep * x (x < TQ; rows past n read row r0, times 0)
 * of q (row stride qs), times scale, transposed into Qt[t][x]. */
void sp_gen_pack(sp_gen *g, LLVMValueRef q, LLVMValueRef qs, LLVMValueRef r0, LLVMValueRef istep,
                 LLVMValueRef n, LLVMValueRef scale, LLVMValueRef Qt);
/* Zeroes n floats (a multiple of V) at p. */
void sp_gen_zero(sp_gen *g, LLVMValueRef p, int n);
/* The head dim as vectors of V (and a tail of 8): widths, returns the count. */
int sp_gen_dim_vectors(sp_gen *g, int *width);
/* Calls a void (i8* tile, i8* scratch) part of the tiles, built by emit
 * the first time (one noinline copy per head dim). */
void sp_gen_call_part(sp_gen *g, LLVMValueRef *fn, const char *what,
                      void (*emit)(sp_gen *, LLVMValueRef, LLVMValueRef), LLVMValueRef tile,
                      LLVMValueRef scr);

/* A per-pair predicate of a masked key tile: the pairs (lanes of x, key j)
 * the component owns. Called once per (key, query vector) in the QK^T
 * epilogue with j as an i32 and ivec the lanes' positions (<V x i32>). */
typedef struct sp_mask {
    int cls, comp;        /* the component whose pairs it keeps */
    LLVMValueRef ivec[8]; /* per query vector: lane positions */
} sp_mask;

/* The key-tile kernels, each (i8* tile, i8* scratch, i32 nk, i32 i0, i32
 * istep, i64 lanes), js[0..nk) holding the keys padded to a multiple of
 * KR: the scores without a mask (kt_full) or with a component's mask, then
 * kt_smpv (softmax update and PV) on them. */
int sp_gen_kt_full(sp_gen *g); /* the scores' kernel, and in the forward the smpv */
LLVMValueRef sp_gen_kt_masked(sp_gen *g, int cls, int comp);
/* Entry prologue: packs the tile's queries into Qt, zeroes the state. */
void sp_gen_prologue(sp_gen *g, LLVMValueRef tile, LLVMValueRef scratch);
/* Entry epilogue: the tile's mode (cpu_abi.h) with its state: O and LSE
 * written, or merged into them, or left in the scratch area. */
void sp_gen_epilogue(sp_gen *g, LLVMValueRef tile, LLVMValueRef scratch);

/* ------------------------------------------------------------ llvm_bwd.c */

/* The backward's key-tile kernel of direction g->dir (after the scores of
 * the tile are in St): P from the LSEs, dP, dS, and the products into the
 * accumulators. Built once per direction (kt_bwd). */
int sp_gen_kt_bwd(sp_gen *g);
/* The backward's entry prologue (packs the lanes' rows, their LSE and D,
 * zeroes the accumulators) and epilogue (adds the scaled accumulators to
 * the gradients), for g->dir. */
void sp_gen_bwd_prologue(sp_gen *g, LLVMValueRef tile, LLVMValueRef scratch);
void sp_gen_bwd_epilogue(sp_gen *g, LLVMValueRef tile, LLVMValueRef scratch);

/* ----------------------------------------------------------- llvm_comp.c */

/* The vector predicate of component comp of class cls over lanes ivec and
 * key j (i32): causal, its own rule, and the exclusions of earlier
 * components that are tested per pair. */
LLVMValueRef sp_gen_pair_pred(sp_gen *g, int cls, int comp, LLVMValueRef ivec, LLVMValueRef j);
/* The entry points of one head dim for direction g->dir, appended to
 * info->entry. */
int sp_gen_entries(sp_gen *g, sp_cpu_info *info, char ***names);

int sp_gen_fail(sp_gen *g, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif /* SPAT_HAVE_LLVM */
#endif
