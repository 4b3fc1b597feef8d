/* Small IR-building helpers of the LLVM backend. Everything goes through
 * the version-portable calls (LLVMBuildLoad2, LLVMBuildGEP2, LLVMBuildCall2)
 * with explicit element types, and pointers are cast where LLVM 14's typed
 * pointers need it (a no-op with opaque pointers), so LLVM 14 to 18 build. */
#include "config.h"

#ifdef SPAT_HAVE_LLVM

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "llvm_gen.h"
#include "spat.h"

int sp_gen_fail(sp_gen *g, int code, const char *fmt, ...)
{
    if (g->err && g->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(g->err, g->errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

LLVMValueRef sp_gen_ci32(sp_gen *g, int64_t v) { return LLVMConstInt(g->ti32, (unsigned long long)v, 1); }
LLVMValueRef sp_gen_ci64(sp_gen *g, int64_t v) { return LLVMConstInt(g->ti64, (unsigned long long)v, 1); }
LLVMValueRef sp_gen_cf(sp_gen *g, double v) { return LLVMConstReal(g->tf, v); }

LLVMValueRef sp_gen_splat(sp_gen *g, LLVMValueRef s, int n)
{
    LLVMTypeRef vt = LLVMVectorType(LLVMTypeOf(s), (unsigned)n);
    if (LLVMIsConstant(s)) {
        LLVMValueRef e[64];
        for (int i = 0; i < n; i++)
            e[i] = s;
        return LLVMConstVector(e, (unsigned)n);
    }
    LLVMValueRef v = LLVMBuildInsertElement(g->b, LLVMGetUndef(vt), s, sp_gen_ci32(g, 0), "");
    LLVMValueRef zero = LLVMConstNull(LLVMVectorType(g->ti32, (unsigned)n));
    return LLVMBuildShuffleVector(g->b, v, LLVMGetUndef(vt), zero, "splat");
}

LLVMValueRef sp_gen_splatf(sp_gen *g, double v) { return sp_gen_splat(g, sp_gen_cf(g, v), g->V); }

LLVMValueRef sp_gen_iota(sp_gen *g, int base)
{
    LLVMValueRef e[64];
    for (int i = 0; i < g->V; i++)
        e[i] = sp_gen_ci32(g, base + i);
    return LLVMConstVector(e, (unsigned)g->V);
}

LLVMValueRef sp_gen_gep(sp_gen *g, LLVMTypeRef T, LLVMValueRef p, LLVMValueRef i)
{
    LLVMValueRef q = LLVMBuildPointerCast(g->b, p, LLVMPointerType(T, 0), "");
    return LLVMBuildGEP2(g->b, T, q, &i, 1, "");
}

LLVMValueRef sp_gen_at(sp_gen *g, LLVMValueRef p, unsigned off, LLVMTypeRef T)
{
    LLVMValueRef q = sp_gen_gep(g, g->ti8, p, sp_gen_ci64(g, off));
    return LLVMBuildPointerCast(g->b, q, LLVMPointerType(T, 0), "");
}

LLVMValueRef sp_gen_load(sp_gen *g, LLVMTypeRef T, LLVMValueRef p, unsigned align)
{
    LLVMValueRef q = LLVMBuildPointerCast(g->b, p, LLVMPointerType(T, 0), "");
    LLVMValueRef v = LLVMBuildLoad2(g->b, T, q, "");
    LLVMSetAlignment(v, align);
    return v;
}

void sp_gen_store(sp_gen *g, LLVMValueRef v, LLVMValueRef p, unsigned align)
{
    LLVMValueRef q = LLVMBuildPointerCast(g->b, p, LLVMPointerType(LLVMTypeOf(v), 0), "");
    LLVMValueRef s = LLVMBuildStore(g->b, v, q);
    LLVMSetAlignment(s, align);
}

LLVMValueRef sp_gen_field(sp_gen *g, LLVMValueRef p, size_t off, LLVMTypeRef T, const char *name)
{
    LLVMValueRef v = sp_gen_load(g, T, sp_gen_at(g, p, (unsigned)off, T), 8);
    LLVMSetValueName2(v, name, strlen(name));
    return v;
}

/* fmuladd, not fma: without an FMA unit it becomes a multiply and an add
 * instead of a libm call per element. */
LLVMValueRef sp_gen_fmuladd(sp_gen *g, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c)
{
    LLVMTypeRef T = LLVMTypeOf(a);
    static const char name[] = "llvm.fmuladd";
    unsigned id = LLVMLookupIntrinsicID(name, sizeof name - 1);
    LLVMValueRef fn = LLVMGetIntrinsicDeclaration(g->M, id, &T, 1);
    LLVMTypeRef fty = LLVMIntrinsicGetType(g->C, id, &T, 1);
    LLVMValueRef args[3] = {a, b, c};
    return LLVMBuildCall2(g->b, fty, fn, args, 3, "");
}

/* a > b ? a : b: the semantics of maxps, with no NaN handling to pay for
 * (no NaN can arise: scores are finite or -inf). */
LLVMValueRef sp_gen_fmax(sp_gen *g, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildSelect(g->b, LLVMBuildFCmp(g->b, LLVMRealOGT, a, b, ""), a, b, "");
}

LLVMValueRef sp_gen_smin(sp_gen *g, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildSelect(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, a, b, ""), a, b, "");
}

LLVMValueRef sp_gen_smax(sp_gen *g, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildSelect(g->b, LLVMBuildICmp(g->b, LLVMIntSGT, a, b, ""), a, b, "");
}

LLVMValueRef sp_gen_floordiv(sp_gen *g, LLVMValueRef a, int64_t c)
{
    LLVMTypeRef T = LLVMTypeOf(a);
    LLVMValueRef cv = LLVMConstInt(T, (unsigned long long)c, 1);
    LLVMValueRef q = LLVMBuildSDiv(g->b, a, cv, "");
    LLVMValueRef r = LLVMBuildSRem(g->b, a, cv, "");
    LLVMValueRef neg = LLVMBuildICmp(g->b, LLVMIntSLT, r, LLVMConstNull(T), "");
    return LLVMBuildSub(g->b, q, LLVMBuildZExt(g->b, neg, T, ""), "");
}

LLVMValueRef sp_gen_bcast_load(sp_gen *g, LLVMValueRef p)
{
    return sp_gen_splat(g, sp_gen_load(g, g->tf, p, 4), g->V);
}

LLVMBasicBlockRef sp_gen_block(sp_gen *g, const char *name)
{
    return LLVMAppendBasicBlockInContext(g->C, g->fn, name);
}

void sp_loop_open(sp_gen *g, sp_loop *l, int n, const LLVMValueRef *init, const char *name)
{
    LLVMBasicBlockRef pre = LLVMGetInsertBlock(g->b);
    l->head = sp_gen_block(g, name);
    l->n = n;
    LLVMBuildBr(g->b, l->head);
    LLVMPositionBuilderAtEnd(g->b, l->head);
    for (int i = 0; i < n; i++) {
        l->phi[i] = LLVMBuildPhi(g->b, LLVMTypeOf(init[i]), "");
        LLVMValueRef v = init[i];
        LLVMAddIncoming(l->phi[i], &v, &pre, 1);
    }
}

void sp_loop_cond(sp_gen *g, sp_loop *l, LLVMValueRef cond)
{
    l->body = sp_gen_block(g, "body");
    l->exit = sp_gen_block(g, "exit");
    LLVMBuildCondBr(g->b, cond, l->body, l->exit);
    LLVMPositionBuilderAtEnd(g->b, l->body);
}

void sp_loop_close(sp_gen *g, sp_loop *l, const LLVMValueRef *next)
{
    LLVMBasicBlockRef from = LLVMGetInsertBlock(g->b);
    for (int i = 0; i < l->n; i++) {
        LLVMValueRef v = next[i];
        LLVMAddIncoming(l->phi[i], &v, &from, 1);
    }
    LLVMBuildBr(g->b, l->head);
    /* Keep the exit after everything the body appended. */
    LLVMMoveBasicBlockAfter(l->exit, LLVMGetLastBasicBlock(g->fn));
    LLVMPositionBuilderAtEnd(g->b, l->exit);
}

static void add_attr(sp_gen *g, LLVMValueRef fn, const char *k, const char *v)
{
    LLVMAttributeRef a = LLVMCreateStringAttribute(g->C, k, (unsigned)strlen(k), v, (unsigned)strlen(v));
    LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, a);
}

static void add_enum_attr(sp_gen *g, LLVMValueRef fn, const char *k)
{
    unsigned kind = LLVMGetEnumAttributeKindForName(k, strlen(k));
    if (kind)
        LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(g->C, kind, 0));
}

LLVMValueRef sp_gen_function(sp_gen *g, const char *name, LLVMTypeRef fty, bool exported)
{
    LLVMValueRef fn = LLVMAddFunction(g->M, name, fty);
    if (exported) {
        /* Hidden: kernel.so's descriptor links to it; nothing else sees it. */
        LLVMSetLinkage(fn, LLVMExternalLinkage);
        LLVMSetVisibility(fn, LLVMHiddenVisibility);
    } else {
        LLVMSetLinkage(fn, LLVMInternalLinkage);
    }
    add_attr(g, fn, "target-cpu", g->t->cpu);
    add_attr(g, fn, "target-features", g->t->features);
    char w[16];
    snprintf(w, sizeof w, "%d", g->V * 32);
    /* Explicit vector types are kept at their width even where a CPU's
     * tuning prefers narrower vectors. */
    add_attr(g, fn, "min-legal-vector-width", w);
    add_attr(g, fn, "prefer-vector-width", w);
    add_attr(g, fn, "frame-pointer", "none");
    add_enum_attr(g, fn, "nounwind");
    return fn;
}

#endif /* SPAT_HAVE_LLVM */
