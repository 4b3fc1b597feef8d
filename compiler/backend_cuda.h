/* The CUDA backend's generator: kernel plan -> CUDA C source.
 *
 * One source serves every head dim and dtype of a pattern: the runtime
 * (or spatc --cuda-arch) compiles it with NVRTC once per (head dim, dtype,
 * GPU architecture), choosing them with the macros SP_D and SP_DT (the
 * runtime part by part, with SP_KERNEL: see SP_CUDA_PART_*). The
 * source is the engine (compiler/cuda_engine.cuh, pattern-independent)
 * followed by the pattern's schedules and ownership tests with its
 * constants folded in, and the kernel entry points.
 *
 * How a head class's components map to the kernels' passes is decided
 * here, once, by sp_cuda_classify: the generator emits code for it and the
 * runtime launches the passes from it. */
#ifndef SPAT_BACKEND_CUDA_H
#define SPAT_BACKEND_CUDA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "plan.h"

/* The kernels a source defines. */
#define SP_CUDA_K_DIRECT "spat_direct"
#define SP_CUDA_K_REMAP "spat_remap"
#define SP_CUDA_K_ROWS "spat_rows"
#define SP_CUDA_K_MERGE "spat_rows_merge"

/* The parts a source splits into, so that the runtime can compile them as
 * separate NVRTC programs in parallel (nearly all of a compile is NVVM and
 * ptxas, per kernel). The macro SP_KERNEL=<part> keeps one part's kernels;
 * without it the source defines them all (spatc --emit=cuda, the CUBINs of
 * spatc --cuda-arch). spat_rows_merge goes with spat_rows: it is tiny, and
 * is only ever launched after it. Every part defines spat_smem. */
enum {
    SP_CUDA_PART_DIRECT, /* spat_direct */
    SP_CUDA_PART_REMAP,  /* spat_remap */
    SP_CUDA_PART_ROWS,   /* spat_rows, spat_rows_merge */
    SP_CUDA_NPARTS
};
/* No SP_KERNEL: the whole program. */
#define SP_CUDA_PART_ALL (-1)

/* Query rows and threads per CTA of kernels that do not say (spat_tile_rows
 * and spat_threads came with warp specialisation: the engine's SP_BM and
 * SP_NT). */
#define SP_CUDA_BM 64
#define SP_CUDA_THREADS 128
/* Most random blocks per query block the kernels draw (their scratch is
 * shared memory of 16 bytes per block). */
#define SP_CUDA_RMAX 256

typedef enum sp_cuda_pass {
    SP_CUDA_PASS_DIRECT, /* contiguous query tiles, key tiles in position space or gathered */
    SP_CUDA_PASS_REMAP,  /* residue classes of a dilation or stride: strided dense tiles */
    SP_CUDA_PASS_ROWS,   /* global rows, split over key chunks and merged */
} sp_cuda_pass;

typedef struct sp_cuda_class {
    sp_cuda_pass pass[SP_MAX_COMPS]; /* of each component */
    int ndirect;
    int nremap;
    int remap_comp[SP_MAX_COMPS]; /* component of each remap slot, in plan order */
    int64_t remap_d[SP_MAX_COMPS]; /* its dilation or stride */
    int rows;                     /* component index of the global rows, or -1 */
    /* The direct pass writes O and LSE of this class's rows; otherwise the
     * first remap slot does (there are no direct components). */
    bool direct_writes;
    /* Causal, with a dense component or columns that recur with a period
     * (a..b mod s) in the direct pass: a query tile's keys there grow with
     * its rows without bound, and its items are far from alike (SP_GROWS). */
    bool grows;
} sp_cuda_class;

void sp_cuda_classify(const sp_headplan *hp, sp_cuda_class *out);

/* Can the kernels run this plan? Writes the reason to msg when not. */
bool sp_cuda_supported(const sp_plan *p, char *msg, size_t cap);

/* Writes the CUDA C source of the plan to f. Returns 0, or -1 when the
 * plan is not supported (msg says why) or writing fails. */
int sp_cuda_emit(const sp_plan *p, FILE *f, char *msg, size_t cap);

/* The same, into a malloc'd NUL-terminated string. */
int sp_cuda_source(const sp_plan *p, char **src, size_t *len, char *msg, size_t cap);

/* NVRTC options for head dim d, dtype (spat_dtype value), architecture
 * ("sm_90a") and part (SP_CUDA_PART_*, or SP_CUDA_PART_ALL): fills opts
 * (pointers into buf) and returns their count. */
#define SP_CUDA_MAX_OPTS 9
int sp_cuda_options(int d, int dtype, const char *arch, int part, char buf[SP_CUDA_MAX_OPTS][64],
                    const char *opts[SP_CUDA_MAX_OPTS]);

/* The engine text (generated at build time from compiler/cuda_engine.cuh). */
extern const char sp_cuda_engine_text[];

#endif
