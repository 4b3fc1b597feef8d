/* Which x86 machine the code is for: CPU name, feature string, the vector
 * width that follows from them, and the features a kernel.so must find on
 * the CPU that loads it.
 *
 * LLVM applies a feature string left to right, and "-x" also turns off every
 * feature built on x ("-avx" drops avx2, fma and avx512*). The effective set
 * is tracked the same way here with a table of prerequisites, so that
 * "host features, -avx512f" stamps an AVX2 kernel as needing AVX2, not the
 * host's AVX-512 extensions that the string still lists. */
#include "config.h"

#ifdef SPAT_HAVE_LLVM

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>

#include "backend_llvm.h"
#include "spat.h"

/* The one process-wide initialisation the backend needs. */
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void init_llvm(void)
{
    LLVMInitializeX86TargetInfo();
    LLVMInitializeX86Target();
    LLVMInitializeX86TargetMC();
    LLVMInitializeX86AsmPrinter();
    LLVMInitializeX86AsmParser();
}

static int fail(char *err, size_t n, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t n, int code, const char *fmt, ...)
{
    if (err && n) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, n, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* ------------------------------------------------------------- features */

typedef struct feat {
    const char *name;
    uint64_t bit; /* SP_CPU_F_*, 0: tracked only as a prerequisite */
    const char *req; /* comma-separated prerequisites */
} feat;

static const feat feats[] = {
    {"sse2", 0, ""},
    {"sse3", SP_CPU_F_SSE3, "sse2"},
    {"ssse3", SP_CPU_F_SSSE3, "sse3"},
    {"sse4.1", SP_CPU_F_SSE41, "ssse3"},
    {"sse4.2", SP_CPU_F_SSE42, "sse4.1"},
    {"popcnt", SP_CPU_F_POPCNT, ""},
    {"avx", SP_CPU_F_AVX, "sse4.2"},
    {"avx2", SP_CPU_F_AVX2, "avx"},
    {"fma", SP_CPU_F_FMA, "avx"},
    {"f16c", SP_CPU_F_F16C, "avx"},
    {"bmi", SP_CPU_F_BMI, ""},
    {"bmi2", SP_CPU_F_BMI2, ""},
    {"lzcnt", SP_CPU_F_LZCNT, ""},
    {"movbe", SP_CPU_F_MOVBE, ""},
    {"aes", 0, "sse2"},
    {"pclmul", 0, "sse2"},
    {"avx512f", SP_CPU_F_AVX512F, "avx2,fma,f16c"},
    {"avx512dq", SP_CPU_F_AVX512DQ, "avx512f"},
    {"avx512cd", SP_CPU_F_AVX512CD, "avx512f"},
    {"avx512bw", SP_CPU_F_AVX512BW, "avx512f"},
    {"avx512vl", SP_CPU_F_AVX512VL, "avx512f"},
    {"avx512vnni", SP_CPU_F_AVX512VNNI, "avx512f"},
    {"avx512bf16", SP_CPU_F_AVX512BF16, "avx512bw"},
    {"avx512fp16", SP_CPU_F_AVX512FP16, "avx512bw,avx512dq,avx512vl"},
    {"avx512vbmi", SP_CPU_F_AVX512VBMI, "avx512bw"},
    {"avx512vbmi2", SP_CPU_F_AVX512VBMI2, "avx512bw"},
    {"avx512ifma", SP_CPU_F_AVX512IFMA, "avx512f"},
    {"avx512bitalg", SP_CPU_F_AVX512BITALG, "avx512bw"},
    {"avx512vpopcntdq", SP_CPU_F_AVX512VPOPCNTDQ, "avx512f"},
    {"avx512vp2intersect", SP_CPU_F_AVX512VP2INTERSECT, "avx512f"},
    {"gfni", SP_CPU_F_GFNI, "sse2"},
    {"vaes", SP_CPU_F_VAES, "avx,aes"},
    {"vpclmulqdq", SP_CPU_F_VPCLMULQDQ, "avx,pclmul"},
    {"avxvnni", SP_CPU_F_AVXVNNI, "avx2"},
};
enum { NFEATS = sizeof feats / sizeof *feats };

static int feat_index(const char *name, size_t len)
{
    for (int i = 0; i < NFEATS; i++)
        if (strlen(feats[i].name) == len && !strncmp(feats[i].name, name, len))
            return i;
    return -1;
}

/* Does feature i (transitively) require feature k? */
static bool requires(int i, int k)
{
    const char *r = feats[i].req;
    while (*r) {
        size_t n = strcspn(r, ",");
        int p = feat_index(r, n);
        if (p == k || (p >= 0 && requires(p, k)))
            return true;
        r += n + (r[n] == ',');
    }
    return false;
}

static uint64_t turn_on(uint64_t set, int i)
{
    set |= 1ull << i;
    const char *r = feats[i].req;
    while (*r) {
        size_t n = strcspn(r, ",");
        int p = feat_index(r, n);
        if (p >= 0)
            set = turn_on(set, p);
        r += n + (r[n] == ',');
    }
    return set;
}

static uint64_t turn_off(uint64_t set, int k)
{
    for (int i = 0; i < NFEATS; i++)
        if (i == k || requires(i, k))
            set &= ~(1ull << i);
    return set;
}

/* Applies "+a,-b,..." to set, left to right. */
static uint64_t apply(uint64_t set, const char *s)
{
    while (s && *s) {
        size_t n = strcspn(s, ",");
        if (n > 1 && (s[0] == '+' || s[0] == '-')) {
            int i = feat_index(s + 1, n - 1);
            if (i >= 0)
                set = s[0] == '+' ? turn_on(set, i) : turn_off(set, i);
        }
        s += n + (s[n] == ',');
    }
    return set;
}

static bool has(uint64_t set, const char *name)
{
    int i = feat_index(name, strlen(name));
    return i >= 0 && (set >> i & 1);
}

static uint64_t required_bits(uint64_t set)
{
    uint64_t r = 0;
    for (int i = 0; i < NFEATS; i++)
        if (set >> i & 1)
            r |= feats[i].bit;
    return r;
}

/* The features a named CPU brings are not visible through the C API: a
 * level is found by compiling a probe, and the set typical of that level
 * stands for them (a superset is safe: at worst a load is refused). */
static const char *const level_typical[] = {
    [SP_CPU_SSE] = "+sse4.2,+popcnt",
    [SP_CPU_AVX2] = "+avx2,+fma,+f16c,+bmi,+bmi2,+lzcnt,+popcnt,+movbe",
    [SP_CPU_AVX512] = "+avx512f,+avx512dq,+avx512cd,+avx512bw,+avx512vl,+bmi,+bmi2,+lzcnt,"
                      "+popcnt,+movbe",
};

const char *sp_llvm_level_name(int level)
{
    return level == SP_CPU_AVX512 ? "avx512" : level == SP_CPU_AVX2 ? "avx2" : "sse";
}

LLVMTargetMachineRef sp_llvm_target_machine(const sp_llvm_target *t, char *err, size_t errlen)
{
    pthread_once(&init_once, init_llvm);
    LLVMTargetRef target;
    char *msg = NULL;
    if (LLVMGetTargetFromTriple(t->triple, &target, &msg)) {
        fail(err, errlen, SPAT_EBACKEND, "LLVM has no target for %s: %s", t->triple,
             msg ? msg : "?");
        LLVMDisposeMessage(msg);
        return NULL;
    }
    LLVMTargetMachineRef tm =
        LLVMCreateTargetMachine(target, t->triple, t->cpu, t->features, LLVMCodeGenLevelAggressive,
                                LLVMRelocPIC, LLVMCodeModelDefault);
    if (!tm)
        fail(err, errlen, SPAT_EBACKEND, "LLVM cannot make a target machine for %s (cpu %s)",
             t->triple, t->cpu);
    return tm;
}

/* A module with one function, void p(T *a, <8 x i32> *b): *a = fmuladd(*a,
 * *a, *a) for T = <n x float>, and *b = *b * *b. Built with the C API, not
 * parsed from text, so that typed and opaque pointers both work. */
static LLVMModuleRef probe_module(LLVMContextRef C, unsigned n)
{
    LLVMModuleRef M = LLVMModuleCreateWithNameInContext("probe", C);
    LLVMTypeRef vf = LLVMVectorType(LLVMFloatTypeInContext(C), n);
    LLVMTypeRef vi = LLVMVectorType(LLVMInt32TypeInContext(C), 8);
    LLVMTypeRef pt[2] = {LLVMPointerType(vf, 0), LLVMPointerType(vi, 0)};
    LLVMValueRef fn = LLVMAddFunction(M, "p", LLVMFunctionType(LLVMVoidTypeInContext(C), pt, 2, 0));
    LLVMBuilderRef b = LLVMCreateBuilderInContext(C);
    LLVMPositionBuilderAtEnd(b, LLVMAppendBasicBlockInContext(C, fn, "e"));
    LLVMValueRef x = LLVMBuildLoad2(b, vf, LLVMGetParam(fn, 0), "");
    static const char name[] = "llvm.fmuladd";
    unsigned id = LLVMLookupIntrinsicID(name, sizeof name - 1);
    LLVMValueRef args[3] = {x, x, x};
    LLVMValueRef y = LLVMBuildCall2(b, LLVMIntrinsicGetType(C, id, &vf, 1),
                                    LLVMGetIntrinsicDeclaration(M, id, &vf, 1), args, 3, "");
    LLVMBuildStore(b, y, LLVMGetParam(fn, 0));
    LLVMValueRef i = LLVMBuildLoad2(b, vi, LLVMGetParam(fn, 1), "");
    LLVMBuildStore(b, LLVMBuildMul(b, i, i, ""), LLVMGetParam(fn, 1));
    LLVMBuildRetVoid(b);
    LLVMDisposeBuilder(b);
    return M;
}

/* Does the code LLVM emits for the probe with n floats contain needle? */
static bool probe(LLVMTargetMachineRef tm, unsigned n, const char *needle)
{
    LLVMContextRef C = LLVMContextCreate();
    LLVMModuleRef M = probe_module(C, n);
    LLVMMemoryBufferRef out = NULL;
    char *msg = NULL;
    bool found = false;
    if (LLVMTargetMachineEmitToMemoryBuffer(tm, M, LLVMAssemblyFile, &msg, &out) == 0) {
        size_t len = LLVMGetBufferSize(out), k = strlen(needle);
        const char *s = LLVMGetBufferStart(out);
        for (size_t i = 0; !found && i + k <= len; i++)
            found = !memcmp(s + i, needle, k);
        LLVMDisposeMemoryBuffer(out);
    }
    LLVMDisposeMessage(msg);
    LLVMDisposeModule(M);
    LLVMContextDispose(C);
    return found;
}

static int probe_level(const sp_llvm_target *t, int *level, char *err, size_t errlen)
{
    LLVMTargetMachineRef tm = sp_llvm_target_machine(t, err, errlen);
    if (!tm)
        return SPAT_EBACKEND;
    if (probe(tm, 16, "zmm"))
        *level = SP_CPU_AVX512;
    else if (probe(tm, 8, "vfmadd") && probe(tm, 8, "vpmulld\t%ymm"))
        *level = SP_CPU_AVX2;
    else
        *level = SP_CPU_SSE;
    LLVMDisposeTargetMachine(tm);
    return SPAT_OK;
}

void sp_llvm_target_free(sp_llvm_target *t)
{
    free(t->triple);
    free(t->cpu);
    free(t->features);
    memset(t, 0, sizeof *t);
}

static char *concat(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s%s%s", a, *a && *b ? "," : "", b);
    return s;
}

int sp_llvm_target_resolve(const char *cpu, const char *features, sp_llvm_target *t, char *err,
                           size_t errlen)
{
    pthread_once(&init_once, init_llvm);
    memset(t, 0, sizeof *t);
    char *triple = LLVMGetDefaultTargetTriple();
    if (!triple || strncmp(triple, "x86_64", 6) != 0) {
        int rc = fail(err, errlen, SPAT_EBACKEND,
                      "the LLVM backend generates x86-64 code; this host is %s",
                      triple ? triple : "unknown");
        LLVMDisposeMessage(triple);
        return rc;
    }
    t->triple = strdup(triple);
    LLVMDisposeMessage(triple);
    if (cpu && !*cpu)
        cpu = NULL;
    if (cpu) {
        t->cpu = strdup(cpu);
        t->features = strdup(features ? features : "");
    } else {
        char *name = LLVMGetHostCPUName(), *hf = LLVMGetHostCPUFeatures();
        t->cpu = strdup(name ? name : "generic");
        t->features = concat(hf ? hf : "", features ? features : "");
        LLVMDisposeMessage(name);
        LLVMDisposeMessage(hf);
    }
    if (!t->triple || !t->cpu || !t->features) {
        sp_llvm_target_free(t);
        return fail(err, errlen, SPAT_ENOMEM, "out of memory");
    }
    uint64_t set;
    if (cpu) {
        int level;
        int rc = probe_level(t, &level, err, errlen);
        if (rc != SPAT_OK) {
            sp_llvm_target_free(t);
            return rc;
        }
        set = apply(apply(0, "+sse2"), level_typical[level]);
        set = apply(set, t->features);
    } else {
        set = apply(apply(0, "+sse2"), t->features);
    }
    t->level = has(set, "avx512f")                    ? SP_CPU_AVX512
               : has(set, "avx2") && has(set, "fma") ? SP_CPU_AVX2
                                                     : SP_CPU_SSE;
    t->vec = t->level == SP_CPU_AVX512 ? 16 : t->level == SP_CPU_AVX2 ? 8 : 4;
    t->required = required_bits(set);
    return SPAT_OK;
}

#endif /* SPAT_HAVE_LLVM */
