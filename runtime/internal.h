/* libspat internals shared by the runtime's sources (and the tests, which link the
 * whole library): the kernel handle, the backend slot table, the checks that
 * spat_forward and spat_backward share, the validated forms of both calls,
 * and the error buffer.
 *
 * A spat_kernel is immutable once spat_compile / spat_load returns it, so any
 * number of threads may run spat_forward on it at once: every call keeps its
 * scratch (views, buffers) on its own. The only mutable library state is the
 * per-thread error message (error.c). */
#ifndef SPAT_INTERNAL_H
#define SPAT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "ir.h"
#include "plan.h"
#include "spat.h"

/* Head dims are multiples of 8 in 8..256: at most 32 distinct values. */
#define SP_HEAD_DIM_MIN 8
#define SP_HEAD_DIM_MAX 256
#define SP_HEAD_DIM_STEP 8
#define SP_MAX_HEAD_DIMS (SP_HEAD_DIM_MAX / SP_HEAD_DIM_STEP)

/* One slot per spat_backend value; slot SPAT_BACKEND_AUTO is never used. */
#define SP_NBACKENDS 4

/* Most threads one forward or backward call starts, whatever args.threads
 * asks. */
#define SP_MAX_THREADS 1024

/* ------------------------------------------------------------------ errors */

/* Stores the message of a failure in this thread's buffer (spat_last_error)
 * and returns code, so that failing paths read `return sp_set_error(...)`.
 * Arguments may point into the buffer itself. */
int sp_set_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Empties this thread's message (tests use it to see that a call set one). */
void sp_clear_error(void);

/* ------------------------------------------------------------ forward call */

/* A forward call after validation (forward.c): every field of `a` has been
 * checked, pointers are host memory for CPU backends, and these are the
 * derived values the backends need. */
typedef struct sp_fwd {
    const spat_forward_args *a;
    double scale;   /* resolved: a->scale, or 1/sqrt(head_dim) */
    int threads;    /* resolved: >= 1 */
    size_t esize;   /* bytes per element of Q, K, V, O */
    int hd_index;   /* index of a->head_dim in the kernel's head_dims */
} sp_fwd;

/* The valid query rows, key length and position offset of batch b. */
static inline int64_t sp_fwd_nq(const sp_fwd *f, int64_t b)
{
    return f->a->seqlens_q ? f->a->seqlens_q[b] : f->a->seq_q;
}
static inline int64_t sp_fwd_nk(const sp_fwd *f, int64_t b)
{
    return f->a->seqlens_k ? f->a->seqlens_k[b] : f->a->seq_k;
}
static inline int64_t sp_fwd_qoff(const sp_fwd *f, int64_t b)
{
    return f->a->q_offsets ? f->a->q_offsets[b] : f->a->q_offset;
}

/* ----------------------------------------------------------- backward call */

/* A backward call after validation (backward.c), as sp_fwd for the forward. */
typedef struct sp_bwd {
    const spat_backward_args *a;
    double scale;   /* resolved: a->scale, or 1/sqrt(head_dim) */
    int threads;    /* resolved: >= 1 */
    size_t esize;   /* bytes per element of Q, K, V, O, dO, dQ, dK, dV */
    int hd_index;   /* index of a->head_dim in the kernel's head_dims */
} sp_bwd;

static inline int64_t sp_bwd_nq(const sp_bwd *w, int64_t b)
{
    return w->a->seqlens_q ? w->a->seqlens_q[b] : w->a->seq_q;
}
static inline int64_t sp_bwd_nk(const sp_bwd *w, int64_t b)
{
    return w->a->seqlens_k ? w->a->seqlens_k[b] : w->a->seq_k;
}
static inline int64_t sp_bwd_qoff(const sp_bwd *w, int64_t b)
{
    return w->a->q_offsets ? w->a->q_offsets[b] : w->a->q_offset;
}

/* ------------------------------------------------------------------ kernel */

/* A backend's entry point for one head dim. Returns a spat_status (and sets
 * the message) only for failures that validation cannot foresee: out of
 * memory, a driver error. */
typedef int (*sp_forward_fn)(const spat_kernel *k, const sp_fwd *f);
typedef int (*sp_backward_fn)(const spat_kernel *k, const sp_bwd *b);

/* What one backend offers for this kernel. The reference fills every head
 * dim; the LLVM CPU and CUDA backends (later) fill the dims they compiled,
 * keep their compiled code in `state` and free it with `release`. */
typedef struct sp_backend_slot {
    const char *name;       /* "reference", "cpu", "cuda" (messages) */
    bool available;         /* usable in this build, on this machine */
    spat_device device;     /* where its pointers must live */
    unsigned dtypes;        /* bit (1u << spat_dtype) per supported dtype */
    sp_forward_fn forward[SP_MAX_HEAD_DIMS]; /* per entry of head_dims */
    sp_backward_fn backward[SP_MAX_HEAD_DIMS];
    /* NULL, or why this slot has forward code but no backward code (set by a
     * loader: "kernel.so was written by a spatc without backward code");
     * spat_backward then refuses the slot with SPAT_ELOAD, also under
     * SPAT_BACKEND_AUTO, rather than quietly running another backend. */
    const char *no_backward;
    void *state;
    void (*release)(void *state);
} sp_backend_slot;

struct sp_module_desc;

struct spat_kernel {
    sp_arena arena;          /* everything below that is a pointer lives here */
    const char *source;      /* the pattern text, NUL-terminated */
    size_t source_len;
    const char *filename;    /* name of the source in messages */
    const char *name;        /* the pattern's name */
    sp_program *prog;
    const sp_pattern *pat;
    sp_plan *plan;
    int head_dims[SP_MAX_HEAD_DIMS]; /* ascending, distinct */
    int nhd;
    const char *cpu, *cpu_features; /* LLVM target (NULL: host); unused until the CPU backend */
    sp_backend_slot backends[SP_NBACKENDS];
    void *dl;                           /* kernel.so handle (spat_load), or NULL */
    const struct sp_module_desc *mod;   /* its descriptor, for backends that read blobs */
};

/* Checks and normalises requested head dims (NULL: {64, 128}) into out
 * (sorted, duplicates dropped). `what` names the argument in messages
 * ("head_dims"). Returns SPAT_OK or SPAT_EINVAL with the message set. */
int sp_head_dims_normalise(const int *dims, int n, const char *what, int *out, int *nout);

/* Builds a kernel from pattern text: parses, picks pattern `name` (NULL: the
 * only one), builds the plan and the backend slots. `filename` names the
 * source in diagnostics. On failure returns the status with the message set
 * and *out = NULL. */
int sp_kernel_create(const char *source, size_t len, const char *filename, const char *name,
                     const int *head_dims, int nhd, spat_kernel **out);

/* Index of head dim d in k->head_dims, or -1. */
int sp_kernel_head_dim_index(const spat_kernel *k, int64_t d);

/* ------------------------------------------------------------- validation */

/* One tensor argument of a call, as the shared checks (args.c) see it. */
typedef struct sp_targ {
    const char *arg;    /* the pointer's field, in messages: "q", "dout" */
    const char *name;   /* the tensor, in messages: "Q", "dO" */
    const char *sname;  /* its strides' field: "q_stride" */
    const void *ptr;
    int nd;             /* 4, or 3 for LSE */
    int64_t n[4];       /* extents (n[3] = 1 when nd is 3) */
    const int64_t *s;   /* nd strides, in elements */
    size_t esize;
    bool output;        /* written by the call: must not alias itself nor meet another tensor */
    bool optional;      /* may be NULL (the forward's lse) */
    uintptr_t lo, hi;   /* filled by the layout checks: the bytes it spans, [lo, hi) */
} sp_targ;

#define SP_MAX_TARGS 9

/* What spat_forward and spat_backward have in common: the fields of their
 * argument structs that mean the same thing, and a table of their tensors
 * in the order of the struct (inputs, then outputs). */
typedef struct sp_call {
    bool backward;      /* picks the backends' backward code */
    int64_t batch, heads_q, heads_kv, seq_q, seq_k, head_dim;
    spat_dtype dtype;
    spat_device device;
    spat_backend backend;
    const int32_t *seqlens_q, *seqlens_k;
    int64_t q_offset;
    const int64_t *q_offsets;
    float scale;
    int threads;
    sp_targ t[SP_MAX_TARGS];
    int nt;
} sp_call;

/* The fields of an sp_call that spat_forward_args and spat_backward_args
 * hold under the same names, from a pointer a to either. */
#define SP_CALL_FIELDS(a)                                                                          \
    .batch = (a)->batch, .heads_q = (a)->heads_q, .heads_kv = (a)->heads_kv,                    \
    .seq_q = (a)->seq_q, .seq_k = (a)->seq_k, .head_dim = (a)->head_dim, .dtype = (a)->dtype,  \
    .device = (a)->device, .backend = (a)->backend, .seqlens_q = (a)->seqlens_q,               \
    .seqlens_k = (a)->seqlens_k, .q_offset = (a)->q_offset, .q_offsets = (a)->q_offsets,       \
    .scale = (a)->scale, .threads = (a)->threads

/* Every check of a call, in this order, the first failure reported naming
 * the argument at fault: enum values, shape, heads, head dim, NULL pointers,
 * backend and dtype, scalars, devices, per-batch lengths and offsets,
 * layouts (offsets fit in int64, outputs do not alias themselves, no output
 * meets another tensor). On success *hd_index and *slot are the head dim's
 * index and the backend that runs the call. The caller fills c, tensors
 * included (their esize from sp_dtype_size, which is 0 for a dtype out of
 * range: the enum check refuses it before any size is used). */
int sp_call_check(const spat_kernel *k, sp_call *c, int *hd_index, const sp_backend_slot **slot);

/* Contiguous strides of an nd-dim tensor of extents n (innermost last);
 * INT64_MAX from the first that overflows outwards. */
void sp_contiguous_strides(int64_t *s, int nd, const int64_t *n);
/* Bytes per element of a dtype; scale and threads as the backends get them. */
size_t sp_dtype_size(spat_dtype t);
double sp_resolve_scale(float scale, int64_t head_dim);
int sp_resolve_threads(int threads);

/* ------------------------------------------------------- reference backend */

int sp_reference_forward(const spat_kernel *k, const sp_fwd *f);
int sp_reference_backward(const spat_kernel *k, const sp_bwd *b);

/* Storage conversions, round to nearest even (exposed for the tests). */
uint16_t sp_f16_from_double(double x);
uint16_t sp_bf16_from_double(double x);
double sp_f16_to_double(uint16_t h);
double sp_bf16_to_double(uint16_t h);

/* ------------------------------------------------------------------ device */

/* Index of the first of ptrs[0..n-1] that the CUDA driver, when the process
 * has already loaded it, says is device memory (not host-accessible), or -1.
 * NULL entries are skipped. Never loads libcuda itself. */
int sp_device_find_gpu_pointer(const void *const *ptrs, int n);

#endif
