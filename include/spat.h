/* libspat: sparse attention kernels compiled from .spat patterns.
 *
 * A spat_kernel is one pattern compiled for a set of head dimensions: JIT-
 * compiled from pattern text (spat_compile) or loaded from a kernel.so that
 * `spatc` wrote (spat_load). spat_forward runs it. Every call returns a
 * spat_status; on failure spat_last_error() describes what went wrong.
 * The full reference is man/libspat.3. */
#ifndef SPAT_H
#define SPAT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SPAT_VERSION_MAJOR 0
#define SPAT_VERSION_MINOR 1

typedef enum spat_status {
    SPAT_OK = 0,
    SPAT_ESYNTAX = 1,   /* the pattern text has errors */
    SPAT_EINVAL = 2,    /* a bad argument: null pointer, zero length, bad shape or stride */
    SPAT_ENOPATTERN = 3,/* no pattern of that name (or a name is needed) */
    SPAT_EHEADDIM = 4,  /* the kernel was not built for this head dimension */
    SPAT_EDTYPE = 5,    /* the backend does not support this dtype */
    SPAT_EOVERLAP = 6,  /* the output overlaps an input or itself */
    SPAT_EDEVICE = 7,   /* pointers on the wrong device, or no such device */
    SPAT_ELOAD = 8,     /* kernel.so is corrupt, foreign or of another version */
    SPAT_ENOMEM = 9,
    SPAT_EIO = 10,      /* a file could not be read or written */
    SPAT_EBACKEND = 11, /* the backend asked for is not available */
    SPAT_ECUDA = 12,    /* the CUDA driver failed (its message follows) */
    SPAT_ENVRTC = 13,   /* NVRTC failed (its log follows) */
} spat_status;

/* A fixed description of a status code. */
const char *spat_strerror(int status);
/* The message of the last failed call in this thread ("" if none): the
 * compiler's diagnostics, the driver's error, the argument at fault. A
 * successful call leaves it as it was. Valid until this thread's next
 * failing call; very long messages are cut at 16 KiB. */
const char *spat_last_error(void);

typedef struct spat_kernel spat_kernel;

typedef struct spat_compile_options {
    /* Head dimensions to specialise for; NULL: {64, 128}. Each a multiple
     * of 8 in 8..256. */
    const int *head_dims;
    int n_head_dims;
    /* CPU to generate code for (LLVM names: "skylake-avx512", "znver4");
     * NULL: the host. */
    const char *cpu;
    /* LLVM target features ("+avx2,+fma,-avx512f"); NULL: the CPU's. */
    const char *cpu_features;
    /* Name of the source in error messages; NULL: "<string>". */
    const char *filename;
} spat_compile_options;

/* Compiles pattern `name` of `source` (.spat text). name may be NULL when
 * the source holds exactly one pattern. opts may be NULL. Errors:
 * SPAT_ESYNTAX (every diagnostic of the source in the message),
 * SPAT_ENOPATTERN (unknown name, or no name and several patterns; the
 * message lists the names), SPAT_EINVAL (bad head dims, NULL source).
 * *out is NULL on failure. A kernel is immutable: any number of threads
 * may run spat_forward on it at once. */
int spat_compile(const char *source, const char *name, const spat_compile_options *opts,
                 spat_kernel **out);
/* Loads pattern `name` from a kernel.so written by spatc (NULL: its only
 * pattern). A path without a '/' names a file in the current directory (the
 * library path is not searched). Loading runs the file's code, so load only
 * files you trust. Errors: SPAT_EIO (cannot open), SPAT_ELOAD (not an ELF
 * shared object, truncated, foreign, another kernel.so ABI, or built by a
 * compiler version that plans the pattern differently), SPAT_ENOPATTERN. */
int spat_load(const char *path, const char *name, spat_kernel **out);
void spat_kernel_free(spat_kernel *k);

/* NULL, 0 and 0 (with *dims = NULL) for a NULL kernel. */
const char *spat_kernel_name(const spat_kernel *k);
/* Heads the pattern describes (0: any number). */
int64_t spat_kernel_heads(const spat_kernel *k);
/* The head dimensions the kernel was built for. */
int spat_kernel_head_dims(const spat_kernel *k, const int **dims);

/* The pairs query head `head` attends when queries and keys are the whole
 * sequence of length seq_len: a forward pass does 4 * head_dim * pairs
 * useful FLOPs per head. */
int spat_kernel_pairs(const spat_kernel *k, int64_t seq_len, int64_t head, int64_t *pairs);

/* What `spatc --emit=stats` prints for the pattern at length seq_len, as
 * one JSON object (the entry of its "patterns" list): heads 0 means the
 * pattern's (else 1), head_dim 0 the kernel's smallest; flags
 * SPAT_STATS_NO_LAYERS skips layers_to_connect (spatc --no-layers), which
 * costs O(seq_len^2 layers / 512). *json is NUL-terminated and malloc'd:
 * release it with spat_free. */
#define SPAT_STATS_NO_LAYERS 1u
int spat_kernel_stats(const spat_kernel *k, int64_t seq_len, int64_t heads, int64_t head_dim,
                      unsigned flags, char **json);
/* The pairs query head `head` attends over a whole sequence of length
 * seq_len (at most 2^31): mask[i * seq_len + j] = 1 when position i
 * attends key j, else 0. mask holds seq_len * seq_len bytes. */
int spat_kernel_mask(const spat_kernel *k, int64_t seq_len, int64_t head, unsigned char *mask);
/* The PNG picture `spatc --emit=mask` draws of head `head` at length
 * seq_len: size x size pixels (0: min(seq_len, 1024); larger than seq_len
 * is cut to it), grey by the fraction of pairs each covers. *png (len
 * bytes) is malloc'd: release it with spat_free. */
int spat_kernel_mask_png(const spat_kernel *k, int64_t seq_len, int64_t head, int size,
                         unsigned char **png, size_t *len);
/* Frees what spat_kernel_stats and spat_kernel_mask_png returned. */
void spat_free(void *p);

typedef enum spat_dtype { SPAT_F32 = 0, SPAT_F16 = 1, SPAT_BF16 = 2 } spat_dtype;
typedef enum spat_device { SPAT_DEVICE_CPU = 0, SPAT_DEVICE_CUDA = 1 } spat_device;
typedef enum spat_backend {
    SPAT_BACKEND_AUTO = 0,      /* the fastest available for the device */
    SPAT_BACKEND_REFERENCE = 1, /* portable C, double accumulation (CPU) */
    SPAT_BACKEND_CPU = 2,       /* LLVM-generated x86 code */
    SPAT_BACKEND_CUDA = 3,      /* NVRTC-compiled CUDA */
} spat_backend;

/* Arguments of one forward pass. Tensors are indexed [batch, head, seq, dim]
 * (LSE [batch, head, seq]) through element strides, so BHSD, BSHD or any
 * other layout works without copies. Start from spat_forward_args_init.
 *
 * Strides are in elements and may be negative: the tensor pointer is the
 * address of element [0,0,0,0] and the others may lie below it. A stride of
 * a dimension of extent 1 is never used. O and LSE must not alias
 * themselves (sorted by |stride|, each dimension of extent > 1 must step
 * over the span of those inside it), and the bytes from O's lowest to its
 * highest element must not meet those of Q, K, V or LSE, nor LSE's those
 * of Q, K, V (SPAT_EOVERLAP; Q, K and V may share memory). Every element
 * offset and byte offset must fit in int64 (SPAT_EINVAL). seqlens_q,
 * seqlens_k and q_offsets are host memory. */
typedef struct spat_forward_args {
    int64_t batch, heads_q, heads_kv, seq_q, seq_k, head_dim;
    spat_dtype dtype;
    spat_device device;
    spat_backend backend;
    const void *q, *k, *v; /* Q [B,Hq,Nq,d], K and V [B,Hkv,Nk,d] */
    void *o;               /* like Q */
    float *lse;            /* [B,Hq,Nq] natural-log sum of exp, or NULL */
    int64_t q_stride[4], k_stride[4], v_stride[4], o_stride[4];
    int64_t lse_stride[3];
    /* Optional per-batch valid lengths (padding): rows r >= seqlens_q[b] get
     * O = 0 and LSE = -inf; keys j >= seqlens_k[b] are not there. */
    const int32_t *seqlens_q, *seqlens_k;
    /* Absolute position of query row 0 (KV cache, chunked prefill); query
     * row r is position r + q_offset, and r + q_offset < the key length.
     * q_offsets, when not NULL, gives one offset per batch instead (q_offset
     * must then be 0). */
    int64_t q_offset;
    const int64_t *q_offsets;
    float scale;  /* 0: 1/sqrt(head_dim) */
    int threads;  /* CPU: 0 = every online core; at most 1024 are used */
    void *stream; /* CUDA: a CUstream (NULL: the default stream) */
} spat_forward_args;

/* Zeroes a, stores the shape, and fills contiguous BHSD strides for it
 * (dtype F32, device CPU, backend AUTO, scale 0, threads 0); call again
 * after changing the shape. A stride too large for int64 is stored as
 * INT64_MAX, which spat_forward refuses. */
void spat_forward_args_init(spat_forward_args *a, int64_t batch, int64_t heads_q,
                            int64_t heads_kv, int64_t seq_q, int64_t seq_k, int64_t head_dim);

/* O (and LSE) = softmax(scale Q K^T restricted to the pattern) V. Every
 * argument is checked before anything is written, so on a validation error
 * O and LSE are untouched; only SPAT_ENOMEM (or a driver failure) in the
 * middle of the computation can leave them partly written. A row with no
 * attended key, and a padding row, gets O = 0 and LSE = -inf. The backend
 * AUTO picks the fastest available for the device (on the CPU: the LLVM
 * backend's code for f32 when the kernel has it, else the reference; on
 * SPAT_DEVICE_CUDA: the CUDA backend, which queues its kernels on `stream`
 * and returns without waiting for them).
 * Errors and the argument each names: man/libspat.3. */
int spat_forward(const spat_kernel *k, const spat_forward_args *a);

/* Arguments of one backward pass (training): the gradients of a forward
 * pass's O with respect to Q, K and V. The shape, dtype, device, backend,
 * per-batch lengths, offsets, scale, threads and stream mean what they mean
 * in spat_forward_args, and must be the forward's. Start from
 * spat_backward_args_init.
 *
 * With P = exp(scale Q K^T - LSE) on the attended pairs (0 elsewhere) and
 * D = rowsum(dO o O): dS = P o (dO V^T - D), dQ = scale dS K,
 * dK = scale dS^T Q, dV = P^T dO; a KV head's dK and dV sum over the query
 * heads that read it (GQA). Every element of dQ, dK and dV is written:
 * keys that no query attends get 0, rows without keys and padding rows get
 * dQ = 0. The outputs must not alias themselves, each other or any input
 * (SPAT_EOVERLAP); the inputs may share memory. */
typedef struct spat_backward_args {
    int64_t batch, heads_q, heads_kv, seq_q, seq_k, head_dim;
    spat_dtype dtype;      /* of every tensor but lse */
    spat_device device;
    spat_backend backend;
    const void *q, *k, *v; /* Q [B,Hq,Nq,d], K and V [B,Hkv,Nk,d], as the forward read them */
    const void *o, *dout;  /* O as the forward wrote it, and dL/dO; like Q */
    const float *lse;      /* [B,Hq,Nq] as the forward wrote it (required) */
    void *dq;              /* like Q */
    void *dk, *dv;         /* like K */
    int64_t q_stride[4], k_stride[4], v_stride[4], o_stride[4], dout_stride[4];
    int64_t dq_stride[4], dk_stride[4], dv_stride[4];
    int64_t lse_stride[3];
    const int32_t *seqlens_q, *seqlens_k;
    int64_t q_offset;
    const int64_t *q_offsets;
    float scale;       /* 0: 1/sqrt(head_dim) */
    /* Non-zero: dQ, dK and dV are bitwise the same from run to run (and
     * for any thread count). The CPU backends always are; the field asks
     * it of backends that otherwise sum in a varying order. */
    int deterministic;
    int threads;       /* CPU: 0 = every online core; at most 1024 are used */
    void *stream;      /* CUDA: a CUstream (NULL: the default stream) */
} spat_backward_args;

/* Zeroes a, stores the shape and fills contiguous BHSD strides for every
 * tensor (dtype F32, device CPU, backend AUTO, scale 0, threads 0,
 * deterministic 0), as spat_forward_args_init does. */
void spat_backward_args_init(spat_backward_args *a, int64_t batch, int64_t heads_q,
                             int64_t heads_kv, int64_t seq_q, int64_t seq_k, int64_t head_dim);

/* dQ, dK, dV of the forward pass that wrote O and LSE. Every argument is
 * checked before anything is written (on a validation error dQ, dK and dV
 * are untouched). The backend AUTO picks the fastest available for the
 * device that has backward code for the head dim (on the CPU: the LLVM
 * backend's for f32, else the reference). A kernel.so written before the
 * backward existed still runs the forward, but its backward on the CPU is
 * refused with SPAT_ELOAD (rebuild it with this spatc), never handed to
 * another backend unasked; SPAT_BACKEND_REFERENCE still runs it.
 * Errors and the argument each names: man/libspat.3. */
int spat_backward(const spat_kernel *k, const spat_backward_args *a);

#ifdef __cplusplus
}
#endif
#endif
