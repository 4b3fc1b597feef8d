/* The LLVM x86 backend: kernel plan -> LLVM IR built with the C API ->
 * optimised, then an object file (spatc's kernel.so), assembly or IR text
 * (spatc --emit=asm|llvm), or JIT-compiled code (runtime/jit.c).
 *
 * What the generated code does, and how the runtime drives it, is in
 * runtime/cpu_abi.h. Every function here returns 0 or a spat_status with
 * the message in err (and nothing else: callers decide where it goes). */
#ifndef SPAT_BACKEND_LLVM_H
#define SPAT_BACKEND_LLVM_H

#include "config.h"

#ifdef SPAT_HAVE_LLVM

#include <stddef.h>
#include <stdint.h>

#include <llvm-c/Core.h>
#include <llvm-c/TargetMachine.h>

#include "cpu_abi.h"
#include "plan.h"

/* The machine code is generated for: an x86-64 CPU and its features. */
typedef struct sp_llvm_target {
    char *triple, *cpu, *features; /* what LLVM is given (malloc'd) */
    int vec;                       /* floats per vector: 16, 8 or 4 */
    int level;                     /* SP_CPU_AVX512, SP_CPU_AVX2, SP_CPU_SSE */
    uint64_t required;             /* SP_CPU_F_* the code may use */
} sp_llvm_target;

/* Resolves the target: cpu NULL is the host CPU; features NULL are the
 * CPU's own (the host's when cpu is NULL), and features given with cpu NULL
 * modify the host's ("-avx512f" forces the AVX2 code on an AVX-512 host).
 * An unknown CPU or feature name is an error (SPAT_EINVAL). */
int sp_llvm_target_resolve(const char *cpu, const char *features, sp_llvm_target *t, char *err,
                           size_t errlen);
void sp_llvm_target_free(sp_llvm_target *t);
/* A target machine for t (PIC, aggressive optimisation); NULL on failure. */
LLVMTargetMachineRef sp_llvm_target_machine(const sp_llvm_target *t, char *err, size_t errlen);
/* Readable name of a level ("avx512"). */
const char *sp_llvm_level_name(int level);

/* The code of one pattern: one set of entry points per head dim. */
typedef struct sp_llvm_unit {
    int nhd;
    int head_dims[32];
    sp_cpu_info *info[32];  /* malloc'd, SP_CPU_INFO_BYTES(nentries) */
    char **names[32];       /* entry symbol names, [nentries] each, malloc'd */
} sp_llvm_unit;

/* Which entry points to generate: the forward's, the backward's (dQ on
 * the plan, dK and dV on its transpose), or both. */
enum { SP_LLVM_FORWARD = 1u, SP_LLVM_BACKWARD = 2u };

/* Adds to module M (of context C, with triple and data layout set) the
 * entry points of plan for each head dim, named "<prefix>_d<D>_e<K>", of
 * the directions in dirs (SP_LLVM_FORWARD | SP_LLVM_BACKWARD). */
int sp_llvm_generate(const sp_plan *plan, const char *prefix, const int *head_dims, int nhd,
                     unsigned dirs, const sp_llvm_target *t, LLVMContextRef C, LLVMModuleRef M,
                     sp_llvm_unit *out, char *err, size_t errlen);
void sp_llvm_unit_free(sp_llvm_unit *u);

/* A fresh module for t in C (triple and data layout set). */
int sp_llvm_module_create(LLVMContextRef C, const char *name, const sp_llvm_target *t,
                          LLVMModuleRef *out, char *err, size_t errlen);
/* Verifies and runs LLVM's default<O3> pipeline. */
int sp_llvm_optimize(LLVMModuleRef M, const sp_llvm_target *t, char *err, size_t errlen);
/* Machine code of M: an ELF object (asm = 0) or assembly text (asm = 1),
 * malloc'd into *data, *len bytes. */
int sp_llvm_emit(LLVMModuleRef M, const sp_llvm_target *t, int asm_text, char **data, size_t *len,
                 char *err, size_t errlen);

/* What sp_llvm_compile produces. */
enum { SP_LLVM_OBJ, SP_LLVM_ASM, SP_LLVM_IR, SP_LLVM_IR_RAW /* before optimisation */ };

/* The whole way for patterns plans[0..nplans-1] in a fresh context: one
 * module with the entry points of pattern i named "spat_cpu_p<i>_...",
 * optimised (except SP_LLVM_IR_RAW), as an object, assembly or IR text in
 * *data (malloc'd, NUL-terminated, *len bytes without the NUL). units,
 * when not NULL, receives each pattern's unit (free with
 * sp_llvm_unit_free). */
int sp_llvm_compile(const sp_plan *const *plans, int nplans, const int *head_dims, int nhd,
                    const sp_llvm_target *t, int kind, char **data, size_t *len, sp_llvm_unit *units,
                    char *err, size_t errlen);

/* Object files of sp_llvm_compile_objects: one per head dim, in order. */
typedef struct sp_llvm_objs {
    int n;
    char *data[32]; /* malloc'd */
    size_t len[32];
} sp_llvm_objs;
void sp_llvm_objs_free(sp_llvm_objs *o);

/* sp_llvm_compile's object code for head dims head_dims[0..nhd), as one
 * module and object per head dim, compiled at once on a thread each (the
 * functions are those of sp_llvm_compile; only how they are split into
 * objects differs, never with the machine). units as for sp_llvm_compile. */
int sp_llvm_compile_objects(const sp_plan *const *plans, int nplans, const int *head_dims, int nhd,
                            const sp_llvm_target *t, sp_llvm_objs *objs, sp_llvm_unit *units,
                            char *err, size_t errlen);

#endif /* SPAT_HAVE_LLVM */
#endif
