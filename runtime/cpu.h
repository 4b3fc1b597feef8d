/* The CPU backend's runtime: drives LLVM-generated code (from a kernel.so
 * or the in-process JIT) over batch x heads x query tiles on a thread pool.
 * The contract with the generated code is cpu_abi.h. */
#ifndef SPAT_CPU_H
#define SPAT_CPU_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cpu_abi.h"
#include "internal.h"

struct sp_module_desc;

/* The code of one head dim: its section data and entry points. */
typedef struct sp_cpu_code {
    const sp_cpu_info *info; /* NULL: no code for this head dim */
    sp_cpu_fn *fn;           /* [info->nentries] */
} sp_cpu_code;

/* The CPU slot's state: code per head dim (indexed like k->head_dims),
 * and whatever owns the code (a JIT), released with the state. A kernel.so
 * holds the backward's entries in code[]; the JIT compiles them on the
 * first backward call (make_backward fills bwd[], once, under lock), so
 * that a kernel used for inference alone never compiles them. */
typedef struct sp_cpu_state {
    sp_cpu_code code[SP_MAX_HEAD_DIMS];
    sp_cpu_code bwd[SP_MAX_HEAD_DIMS];
    int (*make_backward)(struct sp_cpu_state *st);
    pthread_mutex_t lock; /* guards bwd[] while make_backward runs */
    bool bwd_ready;
    void *owner;
    void (*release_owner)(void *owner);
    void *mem; /* malloc'd blocks of the state, freed with it */
} sp_cpu_state;

/* A zeroed state with its lock; freed (with its code and owner) by
 * sp_cpu_state_free, or by the slot once installed. */
sp_cpu_state *sp_cpu_state_new(void);
void sp_cpu_state_free(sp_cpu_state *st);

/* The forward and backward entries of the CPU slot. */
int sp_cpu_forward(const spat_kernel *k, const sp_fwd *f);
int sp_cpu_backward(const spat_kernel *k, const sp_bwd *b);

/* Checks one head dim's code against the kernel's plan (entries, ABI,
 * plan hash) and the CPU's features; `what` names its origin in messages.
 * Returns SPAT_OK or SPAT_ELOAD with the message set. */
int sp_cpu_check_code(const spat_kernel *k, const sp_cpu_info *info, size_t bytes, const char *what);

/* Installs st in the kernel's CPU slot (the slot owns it from then on). */
void sp_cpu_install(spat_kernel *k, sp_cpu_state *st);

/* Fills the CPU slot of a kernel loaded from a kernel.so from its CPU
 * sections of pattern index pi, if it has any. SPAT_ELOAD when a section
 * is corrupt or needs CPU features this machine lacks. */
int sp_cpu_attach_module(spat_kernel *k, const struct sp_module_desc *m, uint32_t pi,
                         const char *path);

/* The SP_CPU_F_* features of this CPU (CPUID, and the OS saves the
 * registers), and a readable list of the bits of `mask`. */
uint64_t sp_cpu_host_features(void);
void sp_cpu_feature_names(uint64_t mask, char *buf, size_t cap);

#ifdef SPAT_HAVE_LLVM
/* spat_compile's JIT (runtime/jit.c): compiles the kernel's plan for its
 * head dims and target in-process and fills the CPU slot. */
int sp_jit_attach(spat_kernel *k);
#endif

#endif
