/* The vectorised exponential of the online softmax. Scores are kept in base
 * 2 (the queries are scaled by scale * log2(e) when packed), so only 2^x is
 * needed, and only for x <= 0 (a score minus the running maximum) or -inf
 * (a masked pair).
 *
 * 2^x = 2^n * 2^f with n = round(x), f = x - n in [-0.5, 0.5]. The rounding
 * uses the 1.5 * 2^23 trick (adding it leaves round-to-nearest(x) in the low
 * mantissa bits), so it needs no SSE4.1 round instruction and no libm. 2^f
 * is Cephes' exp2f polynomial (degree 6, relative error 1.4e-7), 2^n is
 * built in the exponent field. x is clamped to -127 first: -inf, and every
 * x below -126, give exactly 0 (2^-127 has a zero exponent field). */
#include "config.h"

#ifdef SPAT_HAVE_LLVM

#include "llvm_gen.h"

LLVMValueRef sp_gen_exp2(sp_gen *g, LLVMValueRef x)
{
    static const double P[6] = {1.535336188319500e-4, 1.339887440266574e-3, 9.618437357674640e-3,
                                5.550332471162809e-2, 2.402264791363012e-1, 6.931472028550421e-1};
    LLVMBuilderRef b = g->b;
    LLVMValueRef lo = sp_gen_splatf(g, -127.0);
    x = LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOGT, x, lo, ""), x, lo, "");
    LLVMValueRef magic = sp_gen_splatf(g, 12582912.0); /* 1.5 * 2^23 */
    LLVMValueRef t = LLVMBuildFAdd(b, x, magic, "");
    LLVMValueRef n = LLVMBuildFSub(b, t, magic, "");
    LLVMValueRef f = LLVMBuildFSub(b, x, n, "");
    LLVMValueRef ni = LLVMBuildSub(b, LLVMBuildBitCast(b, t, g->tvi, ""),
                                   sp_gen_splat(g, sp_gen_ci32(g, 0x4b400000), g->V), "");
    LLVMValueRef p = sp_gen_splatf(g, P[0]);
    for (int k = 1; k < 6; k++)
        p = sp_gen_fmuladd(g, p, f, sp_gen_splatf(g, P[k]));
    p = sp_gen_fmuladd(g, p, f, sp_gen_splatf(g, 1.0));
    LLVMValueRef e = LLVMBuildShl(b, LLVMBuildAdd(b, ni, sp_gen_splat(g, sp_gen_ci32(g, 127), g->V), ""),
                                  sp_gen_splat(g, sp_gen_ci32(g, 23), g->V), "");
    return LLVMBuildFMul(b, p, LLVMBuildBitCast(b, e, g->tvf, ""), "exp2");
}

/* log2(x) for a <V x float> x >= 1 (sums of softmax weights): x = 2^e f
 * with f in [sqrt(1/2), sqrt(2)), ln(f) by Cephes' logf polynomial
 * (relative error 1e-7), then e + ln(f) / ln(2). */
LLVMValueRef sp_gen_log2(sp_gen *g, LLVMValueRef x)
{
    static const double P[9] = {7.0376836292e-2,  -1.1514610310e-1, 1.1676998740e-1,
                                -1.2420140846e-1, 1.4249322787e-1,  -1.6668057665e-1,
                                2.0000714765e-1,  -2.4999993993e-1, 3.3333331174e-1};
    LLVMBuilderRef b = g->b;
    LLVMValueRef bits = LLVMBuildBitCast(b, x, g->tvi, "");
    LLVMValueRef e = LLVMBuildSub(b, LLVMBuildLShr(b, bits, sp_gen_splat(g, sp_gen_ci32(g, 23), g->V), ""),
                                  sp_gen_splat(g, sp_gen_ci32(g, 127), g->V), "");
    LLVMValueRef fb = LLVMBuildOr(b, LLVMBuildAnd(b, bits, sp_gen_splat(g, sp_gen_ci32(g, 0x7fffff), g->V), ""),
                                  sp_gen_splat(g, sp_gen_ci32(g, 0x3f800000), g->V), "");
    LLVMValueRef f = LLVMBuildBitCast(b, fb, g->tvf, "");
    LLVMValueRef big = LLVMBuildFCmp(b, LLVMRealOGT, f, sp_gen_splatf(g, 1.41421356237309505), "");
    f = LLVMBuildSelect(b, big, LLVMBuildFMul(b, f, sp_gen_splatf(g, 0.5), ""), f, "");
    e = LLVMBuildAdd(b, e, LLVMBuildZExt(b, big, g->tvi, ""), "");
    LLVMValueRef u = LLVMBuildFSub(b, f, sp_gen_splatf(g, 1.0), "");
    LLVMValueRef z = LLVMBuildFMul(b, u, u, "");
    LLVMValueRef p = sp_gen_splatf(g, P[0]);
    for (int k = 1; k < 9; k++)
        p = sp_gen_fmuladd(g, p, u, sp_gen_splatf(g, P[k]));
    LLVMValueRef y = LLVMBuildFMul(b, LLVMBuildFMul(b, u, z, ""), p, "");
    y = sp_gen_fmuladd(g, z, sp_gen_splatf(g, -0.5), y);
    LLVMValueRef ln = LLVMBuildFAdd(b, u, y, "");
    return sp_gen_fmuladd(g, ln, sp_gen_splatf(g, 1.44269504088896341), LLVMBuildSIToFP(b, e, g->tvf, ""));
}

#endif /* SPAT_HAVE_LLVM */
