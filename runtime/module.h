/* kernel.so: what `spatc -o kernel.so` writes and spat_load reads.
 *
 * A kernel.so is an ordinary shared object that exports one data symbol,
 * `spat_module_v1`, a struct sp_module_desc (below). It holds the pattern
 * source, and for each pattern compiled into the file its name, head count,
 * head dims and plan hash. The loader re-parses the source and rebuilds the
 * plan; a plan hash that differs means the file came from another compiler
 * version, whose plan (and so whose compiled code) this libspat cannot
 * trust, and the load is refused.
 *
 * Versioning. `abi_version` changes only when a change is incompatible (a
 * field changes meaning or moves); the loader refuses any other version.
 * Compatible growth appends fields at the end of a struct: every struct
 * records its own size as written (`size`, and the array element sizes
 * `pattern_size`, `section_size`), the loader steps through arrays by the
 * recorded element size and reads a field only when the recorded size
 * covers it (SP_MODULE_HAS). So an older libspat reads a newer file's known
 * fields, and a newer libspat sees that an older file lacks the new ones.
 *
 * Sections carry what the backends add: CPU kernels compiled by the LLVM
 * backend (a table of entry points per pattern and head dim), CUDA C
 * source, PTX or CUBIN blobs per GPU architecture. A loader skips kinds it
 * does not know. Every file carries each pattern's CUDA source; the layout
 * of the CUDA sections is described in runtime/module_cuda.c.
 *
 * Digest. spatc appends a trailer to the shared object it built (after the
 * ELF image, where the dynamic loader never looks): SP_MODULE_TRAILER_BYTES
 * bytes, the 8 bytes of SP_MODULE_TRAILER_MAGIC, then the length n of the
 * file before the trailer and XXH64 (digest.h) of those n bytes with seed
 * SP_MODULE_DIGEST_SEED, both 64-bit little-endian. The digest covers
 * everything spat reads from the file (descriptor, tables, source, CPU
 * info, code, CUDA text and binaries) and the ELF structures that place
 * them; spat_load checks it before dlopen maps the file, and refuses a file
 * without it (written by an older spatc, or rewritten since, e.g. by strip)
 * or with a wrong one. The fields are then checked for range and
 * consistency all the same (a spatc bug must not become a wild read). */
#ifndef SPAT_MODULE_H
#define SPAT_MODULE_H

#include <stddef.h>
#include <stdint.h>

#include "ir.h"

#define SP_MODULE_SYMBOL "spat_module_v1"
#define SP_MODULE_MAGIC 0x31444f4d54415053ull /* "SPATMOD1" in little-endian bytes */
#define SP_MODULE_ABI 1u

#define SP_MODULE_TRAILER_MAGIC "SPATSUM1"
#define SP_MODULE_TRAILER_BYTES 24u
#define SP_MODULE_DIGEST_SEED 0x5350415444494753ull /* "SGIDTAPS" */

/* The trailer of the n bytes at file (module.h, Digest) into out. */
void sp_module_trailer(const void *file, size_t n, unsigned char out[SP_MODULE_TRAILER_BYTES]);

/* Section kinds. */
enum {
    SP_SECTION_CPU_FORWARD = 1, /* entries: forward kernels for (pattern, head_dim); arch: x86 level */
    SP_SECTION_CUDA_SOURCE = 2, /* data: CUDA C source (bytes, no NUL needed) */
    SP_SECTION_PTX = 3,         /* data: PTX text for arch (sm_XY as XY) */
    SP_SECTION_CUBIN = 4,       /* data: CUBIN for arch */
};

/* The descriptor types. They are written once, in this macro, which both
 * declares them here and is pasted as text into every generated module
 * source (SP_MODULE_TYPES_TEXT), so writer and loader cannot disagree. */
#define SP_MODULE_TYPES                                                                    \
    struct sp_module_section {                                                             \
        uint32_t size;     /* sizeof(struct sp_module_section) of the writer */            \
        uint32_t kind;     /* SP_SECTION_* */                                              \
        uint32_t pattern;  /* index into patterns */                                       \
        int32_t head_dim;  /* 0: every head dim */                                         \
        uint32_t arch;     /* CUDA sm_XY as XY; CPU feature level; 0: any */              \
        uint32_t flags;                                                                    \
        uint64_t bytes;    /* length of data */                                            \
        const void *data;                                                                  \
        void (*const *entries)(void); /* code entry points, typed by kind */               \
        uint64_t nentries;                                                                 \
    };                                                                                     \
    struct sp_module_pattern {                                                             \
        uint32_t size;     /* sizeof(struct sp_module_pattern) of the writer */            \
        uint32_t n_head_dims;                                                              \
        const char *name;                                                                  \
        int64_t nheads;    /* 0: any number of heads */                                    \
        uint64_t plan_hash; /* sp_plan_hash of the writer's plan */                        \
        const int32_t *head_dims;                                                          \
    };                                                                                     \
    struct sp_module_desc {                                                                \
        uint64_t magic;        /* SP_MODULE_MAGIC */                                       \
        uint32_t abi_version;  /* SP_MODULE_ABI */                                         \
        uint32_t size;         /* sizeof(struct sp_module_desc) of the writer */           \
        const char *producer;  /* "spat 0.1.0" */                                          \
        const char *source_name;                                                           \
        const char *source;    /* source_len bytes and a NUL */                            \
        uint64_t source_len;                                                               \
        uint32_t npatterns;                                                                \
        uint32_t pattern_size;                                                             \
        const struct sp_module_pattern *patterns;                                          \
        uint32_t nsections;                                                                \
        uint32_t section_size;                                                             \
        const struct sp_module_section *sections;                                          \
    };

SP_MODULE_TYPES

typedef struct sp_module_desc sp_module_desc;
typedef struct sp_module_pattern sp_module_pattern;
typedef struct sp_module_section sp_module_section;

#define SP_MODULE_STR_(...) #__VA_ARGS__
#define SP_MODULE_STR(...) SP_MODULE_STR_(__VA_ARGS__)
#define SP_MODULE_TYPES_TEXT SP_MODULE_STR(SP_MODULE_TYPES)

/* Does a struct of recorded size `size` hold member m of type T? */
#define SP_MODULE_HAS(T, m, size) (offsetof(T, m) + sizeof(((T *)0)->m) <= (size))

/* A section the writer adds (module_cuda.c makes the CUDA ones). */
typedef struct sp_wsection {
    uint32_t kind, pattern, arch, flags;
    int32_t head_dim;
    void *data; /* malloc'd */
    size_t len;
    char **entries;    /* CPU code: symbols of the linked object, malloc'd */
    uint32_t nentries;
} sp_wsection;

struct sp_plan;
/* The CUDA sections of patterns plans[0..nplans-1] (indices as in the
 * file): each one's generated CUDA source, and with archs (a comma list
 * of sm_XY[a] and compute_XY[a]; NULL or "": none) NVRTC's CUBIN or PTX
 * for every head dim and dtype. Returns a spat_status with the message
 * set; *out is freed with sp_module_sections_free. */
int sp_module_cuda_sections(const struct sp_plan *const *plans, int nplans, const int *hd, int nhd,
                            const char *archs, sp_wsection **out, int *nout);
void sp_module_sections_free(sp_wsection *s, int n);

/* The CPU sections of patterns plans[0..nplans-1] (module_cpu.c), and the
 * object files (one per head dim: obj[x], objlen[x] bytes, malloc'd, x <
 * *nobj <= nhd) that define their entries: LLVM-generated code for the
 * target cpu / features (NULL: the host), the head dims compiled at once.
 * Without LLVM, or on a host that is not x86-64 when no target is named,
 * there are none. Sections are freed with sp_module_cpu_sections_free. */
int sp_module_cpu_sections(const struct sp_plan *const *plans, int nplans, const int *hd, int nhd,
                           const char *cpu, const char *features, sp_wsection **out, int *nout,
                           char **obj, size_t *objlen, int *nobj);
void sp_module_cpu_sections_free(sp_wsection *s, int n);

/* Writes kernel.so to `path`: the descriptor of the patterns `names` of prog
 * (names NULL or nnames 0: every pattern of prog), specialised for head
 * dims head_dims[0..nhd-1] (NULL: {64, 128}), with `source` (len bytes) as
 * the embedded pattern text and `source_name` naming it in messages.
 *
 * It generates a C file, compiles it with the C compiler named by the
 * environment variable SPAT_CC (split at blanks, so "ccache gcc" works), or
 * else the compiler configure found, as `-shared -fPIC -O0`, inside a
 * temporary directory next to path, and renames the result over path only
 * when everything succeeded. A failure leaves an existing file at path
 * untouched; the temporary directory is always removed.
 *
 * Returns 0 (SPAT_OK) or a spat_status (SPAT_EINVAL bad arguments,
 * SPAT_ENOPATTERN unknown name, SPAT_ESYNTAX a pattern the plan refuses,
 * SPAT_EIO files or the C compiler, SPAT_ENOMEM); the message goes to err
 * (NULL allowed, errlen bytes) and to spat_last_error. */
int sp_module_write(const char *path, const char *source, size_t len, const char *source_name,
                    const sp_program *prog, const char *const *names, int nnames,
                    const int *head_dims, int nhd, char *err, size_t errlen);
/* What else the writer may put in kernel.so. */
typedef struct sp_module_opts {
    const char *cuda_archs;   /* NVRTC code for these GPUs (sp_module_cuda_sections) */
    const char *cpu;          /* the CPU code's LLVM target (NULL: the host) */
    const char *cpu_features;
} sp_module_opts;
int sp_module_write_opts(const char *path, const char *source, size_t len, const char *source_name,
                         const sp_program *prog, const char *const *names, int nnames,
                         const int *head_dims, int nhd, const sp_module_opts *o, char *err,
                         size_t errlen);
/* The same, also embedding code that NVRTC compiles now for the CUDA
 * architectures in cuda_archs (see sp_module_cuda_sections). */
int sp_module_write_cuda(const char *path, const char *source, size_t len, const char *source_name,
                         const sp_program *prog, const char *const *names, int nnames,
                         const int *head_dims, int nhd, const char *cuda_archs, char *err,
                         size_t errlen);

#endif
