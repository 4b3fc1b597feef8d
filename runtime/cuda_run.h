/* The CUDA backend's entry points inside libspat (runtime/cuda.c) and its
 * kernel.so sections (runtime/module_cuda.c). */
#ifndef SPAT_CUDA_RUN_H
#define SPAT_CUDA_RUN_H

#include <stdbool.h>
#include <stddef.h>

#include "cuda_api.h"
#include "internal.h"

/* Fills the CUDA slot of a new kernel (kernel.c). Leaves it unavailable
 * when out of memory. */
void sp_cuda_init_slot(spat_kernel *k);
int sp_cuda_forward(const spat_kernel *k, const sp_fwd *f);

/* Validation for device = SPAT_DEVICE_CUDA (forward.c): the tensors are
 * device memory of one GPU, the per-batch arrays host memory. */
int sp_cuda_check_pointers(const void *const *dev, const char *const *dnames, int ndev,
                           const void *const *host, const char *const *hnames, int nhost);

/* "sm_90a", "sm_80", ... for the current context's GPU. */
int sp_cuda_arch(const sp_cu *cu, char *arch, size_t cap, int *major, int *minor);

/* NVRTC compile through the disk cache: the CUBIN of src for (d, dtype,
 * arch) into *image (malloc'd), of one part of the kernels (SP_CUDA_PART_*)
 * or of them all (SP_CUDA_PART_ALL). Thread-safe. */
int sp_cuda_compile_cached(const char *src, size_t len, const char *name, int d, int dtype,
                           const char *arch, int part, void **image, size_t *size);

/* A CUBIN (or PTX) for (d, dtype) that kernel.so carries for a GPU of
 * compute capability major.minor, built from exactly this source; NULL
 * when there is none. */
const void *sp_cuda_prebuilt(const spat_kernel *k, const char *src, size_t len, int d, int dtype,
                             int major, int minor);

#endif
