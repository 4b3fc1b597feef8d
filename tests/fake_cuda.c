/* A stand-in for libcuda.so.1 that runs nothing (tests/test_cuda_launch.c).
 *
 * Built as a shared object whose soname is libcuda.so.1: once the test has
 * opened it by its path, the CUDA backend's dlopen("libcuda.so.1") gets it
 * too, so the backend's launches, streams, events and modules can be
 * checked on a machine without a GPU. It claims one Hopper GPU (132 SMs,
 * compute capability 9.0); NVRTC's images are taken as they come. Every
 * call that orders work on a stream is written to a log, a line each:
 *
 *   launch <kernel> <grid x> on s<stream>[ longest first][ tma]
 *   tensor map <dim 0>x<dim 1>x... strides <bytes>,... box <box 0>x<box 1>x...
 *   record e<event> on s<stream>      wait s<stream> for e<event>
 *   sync s<stream>                    free <bytes>       load
 *
 * where s0 is the NULL stream and s1, s2, ... are created ones, and a
 * launch whose arguments ask for the longest items first (xmajor, in the
 * layout of compiler/cuda_params.h) or carry TMA descriptors (tma) says
 * so; a descriptor is checked as the driver documents it (the base 16-byte
 * aligned, strides multiples of 16 bytes under 2^40, boxes of at most 256
 * and rows of at most the 128-byte swizzle) and logged. Memory is
 * host memory; pointers inside cuMemAlloc's blocks are device memory. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_params.h"

typedef int CUresult;
typedef unsigned long long CUdeviceptr;

enum {
    OK = 0,
    INVALID_VALUE = 1,
    NOT_FOUND = 500,
    FAKE_FAILURE = 999,
};

struct CUstream_st {
    int id;
};
struct CUevent_st {
    int id;
};
struct CUfunc_st {
    char name[64];
};
struct CUmod_st {
    int id;
};
struct CUctx_st {
    int id;
};

static struct CUctx_st g_ctx = {1};
static char g_log[1 << 16];
static size_t g_len;
static int g_streams, g_events, g_fail_streams;
static char g_fail_launch[64];

static void note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(g_log + g_len, sizeof g_log - g_len - 1, fmt, ap);
    va_end(ap);
    if (n > 0 && g_len + (size_t)n + 1 < sizeof g_log) {
        g_len += (size_t)n;
        g_log[g_len++] = '\n';
        g_log[g_len] = '\0';
    }
}

static int sid(const struct CUstream_st *s) { return s ? s->id : 0; }

/* The test's controls. */
const char *fake_cuda_log(void) { return g_log; }
void fake_cuda_clear(void)
{
    g_len = 0;
    g_log[0] = '\0';
}
void fake_cuda_fail_streams(int on) { g_fail_streams = on; }
void fake_cuda_fail_launch(const char *kernel) { snprintf(g_fail_launch, sizeof g_fail_launch, "%s", kernel); }

/* Device memory: the blocks cuMemAlloc gave out. */
static struct {
    char *p;
    size_t n;
} g_blocks[256];

static int block_of(CUdeviceptr p)
{
    for (int i = 0; i < 256; i++)
        if (g_blocks[i].p && (uintptr_t)p >= (uintptr_t)g_blocks[i].p &&
            (uintptr_t)p < (uintptr_t)g_blocks[i].p + g_blocks[i].n)
            return i;
    return -1;
}

CUresult cuInit(unsigned flags)
{
    (void)flags;
    return OK;
}
/* NVRTC asks a loaded driver for its private tables; it has none. */
CUresult cuGetExportTable(const void **table, const void *id)
{
    (void)id;
    *table = NULL;
    return 801; /* CUDA_ERROR_NOT_SUPPORTED */
}
CUresult cuDriverGetVersion(int *v)
{
    *v = 13000;
    return OK;
}
CUresult cuGetErrorName(CUresult e, const char **s)
{
    *s = e == FAKE_FAILURE ? "CUDA_ERROR_FAKE" : "CUDA_ERROR_OTHER";
    return OK;
}
CUresult cuGetErrorString(CUresult e, const char **s)
{
    (void)e;
    *s = "a failure the fake driver was asked for";
    return OK;
}
CUresult cuCtxGetCurrent(struct CUctx_st **c)
{
    *c = &g_ctx;
    return OK;
}
CUresult cuCtxPushCurrent_v2(struct CUctx_st *c)
{
    (void)c;
    return OK;
}
CUresult cuCtxPopCurrent_v2(struct CUctx_st **c)
{
    if (c)
        *c = &g_ctx;
    return OK;
}
CUresult cuCtxGetDevice(int *d)
{
    *d = 0;
    return OK;
}
CUresult cuCtxSetCurrent(struct CUctx_st *c)
{
    (void)c;
    return OK;
}
CUresult cuCtxSynchronize(void) { return OK; }
CUresult cuDeviceGet(int *d, int ordinal)
{
    *d = ordinal;
    return OK;
}
CUresult cuDevicePrimaryCtxRetain(struct CUctx_st **c, int d)
{
    (void)d;
    *c = &g_ctx;
    return OK;
}

CUresult cuDeviceGetAttribute(int *v, int attr, int d)
{
    (void)d;
    switch (attr) {
    case 16: /* multiprocessors */
        *v = 132;
        return OK;
    case 75: /* compute capability */
        *v = 9;
        return OK;
    case 76:
        *v = 0;
        return OK;
    case 97: /* shared memory per block, opt-in */
        *v = 232448;
        return OK;
    case 115: /* memory pools: no, so scratch comes from cuMemAlloc */
        *v = 0;
        return OK;
    }
    *v = 0;
    return OK;
}

CUresult cuPointerGetAttribute(void *data, int attr, CUdeviceptr p)
{
    if (block_of(p) < 0)
        return INVALID_VALUE;
    switch (attr) {
    case 1: /* context */
        *(struct CUctx_st **)data = &g_ctx;
        return OK;
    case 2: /* memory type: device */
        *(unsigned *)data = 2;
        return OK;
    case 8: /* managed */
        *(int *)data = 0;
        return OK;
    case 9: /* device ordinal */
        *(int *)data = 0;
        return OK;
    }
    return INVALID_VALUE;
}

CUresult cuModuleLoadData(struct CUmod_st **m, const void *image)
{
    static int next;
    if (!image)
        return INVALID_VALUE;
    *m = calloc(1, sizeof **m);
    (*m)->id = ++next;
    note("load");
    return OK;
}
CUresult cuModuleUnload(struct CUmod_st *m)
{
    free(m);
    return OK;
}
CUresult cuModuleGetFunction(struct CUfunc_st **f, struct CUmod_st *m, const char *name)
{
    (void)m;
    /* One handle per name, for the process. */
    static struct CUfunc_st fns[16];
    for (int i = 0; i < 16; i++)
        if (!fns[i].name[0] || !strcmp(fns[i].name, name)) {
            snprintf(fns[i].name, sizeof fns[i].name, "%s", name);
            *f = &fns[i];
            return OK;
        }
    return NOT_FOUND;
}
/* The launch geometry a module states: a producer warp and one compute
 * warpgroup (160 threads, 64 rows), persistent. */
static int g_smem = 60000, g_threads = 160, g_rows = 64, g_persist = 1;
CUresult cuModuleGetGlobal_v2(CUdeviceptr *p, size_t *bytes, struct CUmod_st *m, const char *name)
{
    (void)m;
    int *v = !strcmp(name, "spat_smem")        ? &g_smem
             : !strcmp(name, "spat_threads")   ? &g_threads
             : !strcmp(name, "spat_tile_rows") ? &g_rows
             : !strcmp(name, "spat_persist")   ? &g_persist
                                               : NULL;
    if (!v)
        return NOT_FOUND;
    *p = (CUdeviceptr)(uintptr_t)v;
    *bytes = sizeof *v;
    return OK;
}
CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t n)
{
    memcpy(dst, (const void *)(uintptr_t)src, n);
    return OK;
}
CUresult cuFuncSetAttribute(struct CUfunc_st *f, int attr, int v)
{
    (void)f, (void)attr, (void)v;
    return OK;
}
CUresult cuFuncGetAttribute(int *v, int attr, struct CUfunc_st *f)
{
    (void)attr, (void)f;
    *v = 0;
    return OK;
}
CUresult cuOccupancyMaxActiveBlocksPerMultiprocessor(int *n, struct CUfunc_st *f, int threads, size_t smem)
{
    (void)f, (void)threads, (void)smem;
    *n = 4;
    return OK;
}

CUresult cuLaunchKernel(struct CUfunc_st *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                        unsigned bz, unsigned smem, struct CUstream_st *s, void **params, void **extra)
{
    (void)gy, (void)gz, (void)bx, (void)by, (void)bz, (void)smem, (void)extra;
    if (!strcmp(f->name, g_fail_launch))
        return FAKE_FAILURE;
    struct args {
        SP_PARAMS_FIELDS
    };
    const struct args *a = params[0];
    note("launch %s %u on s%d%s%s", f->name, gx, sid(s), a->xmajor ? " longest first" : "", a->tma ? " tma" : "");
    return OK;
}

CUresult cuMemAlloc_v2(CUdeviceptr *p, size_t n)
{
    for (int i = 0; i < 256; i++)
        if (!g_blocks[i].p) {
            g_blocks[i].p = calloc(1, n ? n : 1);
            g_blocks[i].n = n ? n : 1;
            *p = (CUdeviceptr)(uintptr_t)g_blocks[i].p;
            return g_blocks[i].p ? OK : INVALID_VALUE;
        }
    return INVALID_VALUE;
}
CUresult cuMemFree_v2(CUdeviceptr p)
{
    const int i = block_of(p);
    if (i < 0)
        return INVALID_VALUE;
    note("free %zu", g_blocks[i].n);
    free(g_blocks[i].p);
    g_blocks[i].p = NULL;
    return OK;
}
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void *src, size_t n, struct CUstream_st *s)
{
    (void)s;
    memcpy((void *)(uintptr_t)dst, src, n);
    return OK;
}
CUresult cuTensorMapEncodeTiled(void *map, int dtype, unsigned rank, void *base, const unsigned long long *dims,
                                const unsigned long long *strides, const unsigned *box, const unsigned *estrides,
                                int interleave, int swizzle, int l2, int oob)
{
    (void)l2, (void)oob;
    const int esize = dtype == 6 || dtype == 9 ? 2 : 0; /* FLOAT16, BFLOAT16: all the backend asks for */
    if (!map || !esize || rank < 1 || rank > 5 || ((uintptr_t)base & 15) || interleave != 0 ||
        (swizzle == 3 && box[0] * esize > 128))
        return INVALID_VALUE;
    char line[256];
    int n = snprintf(line, sizeof line, "tensor map ");
    for (unsigned i = 0; i < rank; i++) {
        if (!dims[i] || dims[i] > 1ull << 32 || !box[i] || box[i] > 256 || !estrides[i] || estrides[i] > 8 ||
            (i > 0 && (strides[i - 1] % 16 || strides[i - 1] >= 1ull << 40)))
            return INVALID_VALUE;
        n += snprintf(line + n, sizeof line - (size_t)n, "%s%llu", i ? "x" : "", dims[i]);
    }
    n += snprintf(line + n, sizeof line - (size_t)n, " strides ");
    for (unsigned i = 1; i < rank; i++)
        n += snprintf(line + n, sizeof line - (size_t)n, "%s%llu", i > 1 ? "," : "", strides[i - 1]);
    n += snprintf(line + n, sizeof line - (size_t)n, " box ");
    for (unsigned i = 0; i < rank; i++)
        n += snprintf(line + n, sizeof line - (size_t)n, "%s%u", i ? "x" : "", box[i]);
    note("%s", line);
    memset(map, 0, 128);
    return OK;
}

CUresult cuMemsetD32Async(CUdeviceptr dst, unsigned v, size_t n, struct CUstream_st *s)
{
    (void)s;
    for (size_t i = 0; i < n; i++)
        memcpy((char *)(uintptr_t)dst + 4 * i, &v, 4);
    return OK;
}

CUresult cuStreamSynchronize(struct CUstream_st *s)
{
    note("sync s%d", sid(s));
    return OK;
}
CUresult cuStreamCreate(struct CUstream_st **s, unsigned flags)
{
    (void)flags;
    if (g_fail_streams)
        return FAKE_FAILURE;
    *s = calloc(1, sizeof **s);
    (*s)->id = ++g_streams;
    return OK;
}
CUresult cuStreamDestroy_v2(struct CUstream_st *s)
{
    free(s);
    return OK;
}
CUresult cuEventCreate(struct CUevent_st **e, unsigned flags)
{
    (void)flags;
    *e = calloc(1, sizeof **e);
    (*e)->id = ++g_events;
    return OK;
}
CUresult cuEventDestroy_v2(struct CUevent_st *e)
{
    free(e);
    return OK;
}
CUresult cuEventRecord(struct CUevent_st *e, struct CUstream_st *s)
{
    note("record e%d on s%d", e->id, sid(s));
    return OK;
}
CUresult cuStreamWaitEvent(struct CUstream_st *s, struct CUevent_st *e, unsigned flags)
{
    (void)flags;
    note("wait s%d for e%d", sid(s), e->id);
    return OK;
}
