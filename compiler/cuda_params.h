/* The argument block of every generated CUDA kernel. The field list is
 * written once, here: the host (runtime/cuda.c) declares its struct from
 * this macro, and the generator pastes the same text into the kernel
 * source, so the two layouts cannot disagree. Every field is 8 bytes (a
 * pointer, a long long or a double) so that no padding differs either,
 * but for the TMA descriptors at the end, 128 bytes each on a 128-byte
 * boundary (sp_tmap), as in the driver's CUtensorMap. */
#ifndef SPAT_CUDA_PARAMS_H
#define SPAT_CUDA_PARAMS_H

/* A TMA descriptor (CUtensorMap); the kernels declare the same type
 * (cuda_engine.cuh). */
typedef struct sp_tmap {
    _Alignas(128) unsigned long long w[16];
} sp_tmap;

#define SP_PARAMS_FIELDS                                                                       \
    const void *q; /* [batch, heads_q, seq_q, D] at element strides qs */                      \
    const void *k;                                                                             \
    const void *v;                                                                             \
    void *o;                                                                                   \
    float *lse;          /* NULL: not wanted (only when no pass merges) */                     \
    const long long *lens; /* device [batch][3]: rows, keys, q_offset; NULL: the scalars */   \
    float *part;         /* rows pass: [batch][heads_q][nch][nu][D + 1] partials */           \
    long long qs[4];                                                                           \
    long long ks[4];                                                                           \
    long long vs[4];                                                                           \
    long long os[4];                                                                           \
    long long ls[3];                                                                           \
    long long batch;                                                                           \
    long long heads_q;                                                                         \
    long long heads_kv;                                                                        \
    long long seq_q;                                                                           \
    long long seq_k;                                                                           \
    long long q_offset;                                                                        \
    double scale_log2;   /* softmax scale times log2(e) */                                    \
    long long slot;      /* remap pass: which remapped component of the class */              \
    long long nu;        /* rows pass: set rows per (batch, head), the most of any */        \
    long long nch;       /* rows pass: key chunks */                                          \
    long long chunk;     /* rows pass: keys per chunk */                                      \
    long long gx;        /* items along x: the grid's x, or for persistent kernels (spat_persist) \
                            the x their gridDim.x CTAs share */                                \
    unsigned long long *tick; /* persistent kernels: the launch's item counter, zero at start */  \
    long long xmajor;    /* persistent kernels: 1 to take the query tile outer and the heads \
                            inner (honoured where the source defines SP_GROWS) */         \
    long long tma;       /* 1: tk and tv describe K and V for TMA (16-bit elements; dims: \
                            d, residue, keys / tmad, KV heads, batch; boxes of 64 x 64) */ \
    long long tmad;      /* the key step they describe: 1, or a remap slot's dilation */     \
    sp_tmap tk;                                                                                \
    sp_tmap tv;

#define SP_PARAMS_STR_(...) #__VA_ARGS__
#define SP_PARAMS_STR(...) SP_PARAMS_STR_(__VA_ARGS__)
#define SP_PARAMS_TEXT SP_PARAMS_STR(SP_PARAMS_FIELDS)

#endif
