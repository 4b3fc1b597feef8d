/* The CUDA driver API and NVRTC, opened with dlopen. libspat must load,
 * and its CPU path work, on machines without a GPU or a toolkit, so
 * nothing links against libcuda or libnvrtc and no CUDA header is needed
 * to build: the few types, constants and entry points the backend uses are
 * declared here (values from cuda.h and nvrtc.h, stable since CUDA 11).
 *
 * Each library is opened once per process, on first use (pthread_once),
 * never when libspat loads. */
#ifndef SPAT_CUDA_API_H
#define SPAT_CUDA_API_H

#include <stdbool.h>
#include <stddef.h>

typedef int CUresult;
typedef int CUdevice;
typedef struct CUctx_st *CUcontext;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef struct CUstream_st *CUstream;
typedef struct CUevent_st *CUevent;
typedef unsigned long long CUdeviceptr;
typedef struct _nvrtcProgram *nvrtcProgram;

enum {
    CUDA_SUCCESS = 0,
    CUDA_ERROR_INVALID_VALUE = 1,
    CUDA_ERROR_NOT_FOUND = 500,
    CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16,
    CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75,
    CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76,
    CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97,
    CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED = 115,
    CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES = 1,
    CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8,
    CU_POINTER_ATTRIBUTE_CONTEXT = 1,
    CU_POINTER_ATTRIBUTE_MEMORY_TYPE = 2,
    CU_POINTER_ATTRIBUTE_IS_MANAGED = 8,
    CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL = 9,
    CU_MEMORYTYPE_HOST = 1,
    CU_MEMORYTYPE_DEVICE = 2,
    CU_STREAM_NON_BLOCKING = 1,
    CU_EVENT_DISABLE_TIMING = 2,
    CU_TENSOR_MAP_DATA_TYPE_FLOAT16 = 6,
    CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 = 9,
    CU_TENSOR_MAP_INTERLEAVE_NONE = 0,
    CU_TENSOR_MAP_SWIZZLE_128B = 3,
    CU_TENSOR_MAP_L2_PROMOTION_L2_256B = 3,
    CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE = 0,
    NVRTC_SUCCESS = 0,
};

/* Driver entry points (the _v2 names where cuda.h maps to them). */
typedef struct sp_cu {
    CUresult (*Init)(unsigned flags);
    CUresult (*DriverGetVersion)(int *v);
    CUresult (*GetErrorName)(CUresult e, const char **s);
    CUresult (*GetErrorString)(CUresult e, const char **s);
    CUresult (*CtxGetCurrent)(CUcontext *c);
    CUresult (*CtxPushCurrent)(CUcontext c);
    CUresult (*CtxPopCurrent)(CUcontext *c);
    CUresult (*CtxGetDevice)(CUdevice *d);
    CUresult (*DeviceGetAttribute)(int *v, int attr, CUdevice d);
    CUresult (*PointerGetAttribute)(void *data, int attr, CUdeviceptr p);
    CUresult (*ModuleLoadData)(CUmodule *m, const void *image);
    CUresult (*ModuleUnload)(CUmodule m);
    CUresult (*ModuleGetFunction)(CUfunction *f, CUmodule m, const char *name);
    CUresult (*ModuleGetGlobal)(CUdeviceptr *p, size_t *bytes, CUmodule m, const char *name);
    CUresult (*FuncSetAttribute)(CUfunction f, int attr, int value);
    CUresult (*FuncGetAttribute)(int *v, int attr, CUfunction f);
    CUresult (*OccupancyMaxActiveBlocksPerMultiprocessor)(int *n, CUfunction f, int threads, size_t smem);
    CUresult (*LaunchKernel)(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                             unsigned by, unsigned bz, unsigned smem, CUstream s, void **params,
                             void **extra);
    CUresult (*MemAlloc)(CUdeviceptr *p, size_t bytes);
    CUresult (*MemFree)(CUdeviceptr p);
    CUresult (*MemAllocAsync)(CUdeviceptr *p, size_t bytes, CUstream s); /* NULL before 11.2 */
    CUresult (*MemFreeAsync)(CUdeviceptr p, CUstream s);
    CUresult (*MemcpyHtoDAsync)(CUdeviceptr dst, const void *src, size_t bytes, CUstream s);
    CUresult (*MemsetD32Async)(CUdeviceptr dst, unsigned value, size_t n, CUstream s);
    CUresult (*MemcpyDtoH)(void *dst, CUdeviceptr src, size_t bytes);
    CUresult (*StreamSynchronize)(CUstream s);
    /* A second stream for the rows pass beside the others (NULL where
     * the driver lacks one of them: the passes then run one after another). */
    CUresult (*StreamCreate)(CUstream *s, unsigned flags);
    CUresult (*StreamDestroy)(CUstream s);
    CUresult (*EventCreate)(CUevent *e, unsigned flags);
    CUresult (*EventDestroy)(CUevent e);
    CUresult (*EventRecord)(CUevent e, CUstream s);
    CUresult (*StreamWaitEvent)(CUstream s, CUevent e, unsigned flags);
    /* A TMA descriptor (CUtensorMap, 128 bytes) of a tiled tensor (NULL
     * before CUDA 12: the kernels then copy K and V themselves). */
    CUresult (*TensorMapEncodeTiled)(void *map, int dtype, unsigned rank, void *base, const unsigned long long *dims,
                                     const unsigned long long *strides, const unsigned *box,
                                     const unsigned *estrides, int interleave, int swizzle, int l2, int oob);
    /* For programs that make their own context (tests, benchmarks). */
    CUresult (*DeviceGet)(CUdevice *d, int ordinal);
    CUresult (*DevicePrimaryCtxRetain)(CUcontext *c, CUdevice d);
    CUresult (*CtxSetCurrent)(CUcontext c);
    CUresult (*CtxSynchronize)(void);
    int version; /* cuDriverGetVersion: 13000 for 13.0 */
} sp_cu;

typedef struct sp_nvrtc {
    int (*Version)(int *major, int *minor);
    int (*CreateProgram)(nvrtcProgram *p, const char *src, const char *name, int nheaders,
                         const char *const *headers, const char *const *names);
    int (*DestroyProgram)(nvrtcProgram *p);
    int (*CompileProgram)(nvrtcProgram p, int nopts, const char *const *opts);
    int (*GetProgramLogSize)(nvrtcProgram p, size_t *n);
    int (*GetProgramLog)(nvrtcProgram p, char *log);
    int (*GetCUBINSize)(nvrtcProgram p, size_t *n);
    int (*GetCUBIN)(nvrtcProgram p, char *cubin);
    int (*GetPTXSize)(nvrtcProgram p, size_t *n);
    int (*GetPTX)(nvrtcProgram p, char *ptx);
    const char *(*GetErrorString)(int e);
    int major, minor;
    char path[512]; /* the library that was opened */
} sp_nvrtc;

/* The driver table, after cuInit succeeded; else NULL with the message set
 * (SPAT_EDEVICE: no driver or no usable GPU). */
const sp_cu *sp_cu_get(void);
/* NVRTC, or NULL with the message set (SPAT_ENVRTC). Search order: the
 * file $SPAT_NVRTC, <configured CUDA path>/lib64/libnvrtc.so, then the
 * sonames libnvrtc.so.13, .12 and libnvrtc.so on the library path. */
const sp_nvrtc *sp_nvrtc_get(void);

/* Sets the message of a failed driver call ("what: CUDA_ERROR_X: text")
 * and returns SPAT_ECUDA. */
int sp_cu_error(const sp_cu *cu, CUresult e, const char *what);

/* Compiles CUDA C source with NVRTC. On success *out (malloc'd) holds the
 * CUBIN, or the PTX text with its NUL when ptx is true, and *log (malloc'd,
 * NUL-terminated, possibly empty) the compiler's log; both may be NULL on
 * failure. Returns SPAT_OK, SPAT_ENVRTC (the message holds NVRTC's error
 * and the whole log) or SPAT_ENOMEM. */
int sp_nvrtc_compile(const sp_nvrtc *nv, const char *src, const char *name,
                     const char *const *opts, int nopts, bool ptx, void **out, size_t *len,
                     char **log);

#endif
