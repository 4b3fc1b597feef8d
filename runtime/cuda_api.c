/* Opening the CUDA driver and NVRTC with dlopen (see cuda_api.h), and
 * NVRTC compilation with its errors turned into spat errors. */
#include "config.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_api.h"
#include "internal.h"

/* The two tables are process-wide and written once, under pthread_once;
 * after that they are read-only. A failure is remembered with its message
 * (a machine without a driver stays without one). */
static pthread_once_t cu_once = PTHREAD_ONCE_INIT, nv_once = PTHREAD_ONCE_INIT;
static sp_cu cu_table;
static sp_nvrtc nv_table;
static bool cu_ok, nv_ok;
static char cu_msg[1024], nv_msg[2048];

#define SYM(lib, tab, field, name, required)                                                  \
    do {                                                                                       \
        *(void **)&(tab)->field = dlsym(lib, name);                                            \
        if (!(tab)->field && (required)) {                                                     \
            snprintf(msg, cap, "%s has no symbol %s", libname, name);                          \
            return false;                                                                      \
        }                                                                                      \
    } while (0)

static bool cu_symbols(void *lib, sp_cu *t, const char *libname, char *msg, size_t cap)
{
    SYM(lib, t, Init, "cuInit", true);
    SYM(lib, t, DriverGetVersion, "cuDriverGetVersion", true);
    SYM(lib, t, GetErrorName, "cuGetErrorName", true);
    SYM(lib, t, GetErrorString, "cuGetErrorString", true);
    SYM(lib, t, CtxGetCurrent, "cuCtxGetCurrent", true);
    SYM(lib, t, CtxPushCurrent, "cuCtxPushCurrent_v2", true);
    SYM(lib, t, CtxPopCurrent, "cuCtxPopCurrent_v2", true);
    SYM(lib, t, CtxGetDevice, "cuCtxGetDevice", true);
    SYM(lib, t, DeviceGetAttribute, "cuDeviceGetAttribute", true);
    SYM(lib, t, PointerGetAttribute, "cuPointerGetAttribute", true);
    SYM(lib, t, ModuleLoadData, "cuModuleLoadData", true);
    SYM(lib, t, ModuleUnload, "cuModuleUnload", true);
    SYM(lib, t, ModuleGetFunction, "cuModuleGetFunction", true);
    SYM(lib, t, ModuleGetGlobal, "cuModuleGetGlobal_v2", true);
    SYM(lib, t, FuncSetAttribute, "cuFuncSetAttribute", true);
    SYM(lib, t, FuncGetAttribute, "cuFuncGetAttribute", true);
    SYM(lib, t, OccupancyMaxActiveBlocksPerMultiprocessor, "cuOccupancyMaxActiveBlocksPerMultiprocessor", true);
    SYM(lib, t, LaunchKernel, "cuLaunchKernel", true);
    SYM(lib, t, MemAlloc, "cuMemAlloc_v2", true);
    SYM(lib, t, MemFree, "cuMemFree_v2", true);
    SYM(lib, t, MemAllocAsync, "cuMemAllocAsync", false);
    SYM(lib, t, MemFreeAsync, "cuMemFreeAsync", false);
    SYM(lib, t, MemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2", true);
    SYM(lib, t, MemsetD32Async, "cuMemsetD32Async", true);
    SYM(lib, t, MemcpyDtoH, "cuMemcpyDtoH_v2", true);
    SYM(lib, t, StreamSynchronize, "cuStreamSynchronize", true);
    SYM(lib, t, StreamCreate, "cuStreamCreate", false);
    SYM(lib, t, StreamDestroy, "cuStreamDestroy_v2", false);
    SYM(lib, t, EventCreate, "cuEventCreate", false);
    SYM(lib, t, EventDestroy, "cuEventDestroy_v2", false);
    SYM(lib, t, EventRecord, "cuEventRecord", false);
    SYM(lib, t, StreamWaitEvent, "cuStreamWaitEvent", false);
    SYM(lib, t, TensorMapEncodeTiled, "cuTensorMapEncodeTiled", false);
    if (!t->StreamCreate || !t->StreamDestroy || !t->EventCreate || !t->EventDestroy || !t->EventRecord ||
        !t->StreamWaitEvent)
        t->StreamCreate = NULL;
    SYM(lib, t, DeviceGet, "cuDeviceGet", true);
    SYM(lib, t, DevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain", true);
    SYM(lib, t, CtxSetCurrent, "cuCtxSetCurrent", true);
    SYM(lib, t, CtxSynchronize, "cuCtxSynchronize", true);
    if (!t->MemAllocAsync || !t->MemFreeAsync)
        t->MemAllocAsync = NULL, t->MemFreeAsync = NULL;
    return true;
}

static void cu_open(void)
{
    const char *libname = "libcuda.so.1";
    char *msg = cu_msg;
    size_t cap = sizeof cu_msg;
    void *lib = dlopen(libname, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        const char *e = dlerror();
        snprintf(cu_msg, sizeof cu_msg, "the CUDA driver cannot be loaded (%s): no NVIDIA driver "
                 "on this machine?", e ? e : libname);
        return;
    }
    if (!cu_symbols(lib, &cu_table, libname, msg, cap))
        return; /* the handle stays open: harmless, and the message is kept */
    CUresult e = cu_table.Init(0);
    if (e != CUDA_SUCCESS) {
        const char *name = "?", *text = "?";
        cu_table.GetErrorName(e, &name);
        cu_table.GetErrorString(e, &text);
        snprintf(cu_msg, sizeof cu_msg, "cuInit failed: %s: %s (no usable GPU?)", name, text);
        return;
    }
    cu_table.DriverGetVersion(&cu_table.version);
    cu_ok = true;
}

const sp_cu *sp_cu_get(void)
{
    pthread_once(&cu_once, cu_open);
    if (!cu_ok) {
        sp_set_error(SPAT_EDEVICE, "device = SPAT_DEVICE_CUDA, but %s", cu_msg);
        return NULL;
    }
    return &cu_table;
}

int sp_cu_error(const sp_cu *cu, CUresult e, const char *what)
{
    const char *name = NULL, *text = NULL;
    if (cu) {
        cu->GetErrorName(e, &name);
        cu->GetErrorString(e, &text);
    }
    return sp_set_error(SPAT_ECUDA, "%s: %s (%d): %s", what, name ? name : "CUDA error", e,
                        text ? text : "unknown error");
}

/* ------------------------------------------------------------------ NVRTC */

static bool nv_symbols(void *lib, sp_nvrtc *t, const char *libname, char *msg, size_t cap)
{
    SYM(lib, t, Version, "nvrtcVersion", true);
    SYM(lib, t, CreateProgram, "nvrtcCreateProgram", true);
    SYM(lib, t, DestroyProgram, "nvrtcDestroyProgram", true);
    SYM(lib, t, CompileProgram, "nvrtcCompileProgram", true);
    SYM(lib, t, GetProgramLogSize, "nvrtcGetProgramLogSize", true);
    SYM(lib, t, GetProgramLog, "nvrtcGetProgramLog", true);
    SYM(lib, t, GetCUBINSize, "nvrtcGetCUBINSize", true);
    SYM(lib, t, GetCUBIN, "nvrtcGetCUBIN", true);
    SYM(lib, t, GetPTXSize, "nvrtcGetPTXSize", true);
    SYM(lib, t, GetPTX, "nvrtcGetPTX", true);
    SYM(lib, t, GetErrorString, "nvrtcGetErrorString", true);
    return true;
}

static void nv_open(void)
{
    char configured[512];
    snprintf(configured, sizeof configured, "%s/lib64/libnvrtc.so", SPAT_CUDA_PATH);
    const char *env = getenv("SPAT_NVRTC");
    const char *cands[] = {env && *env ? env : NULL, configured, "libnvrtc.so.13", "libnvrtc.so.12",
                           "libnvrtc.so"};
    size_t len = 0;
    nv_msg[0] = '\0';
    for (size_t i = 0; i < sizeof cands / sizeof *cands; i++) {
        if (!cands[i])
            continue;
        void *lib = dlopen(cands[i], RTLD_NOW | RTLD_LOCAL);
        if (!lib) {
            const char *e = dlerror();
            if (len < sizeof nv_msg) {
                int n = snprintf(nv_msg + len, sizeof nv_msg - len, "\n  %s", e ? e : cands[i]);
                len += n > 0 ? (size_t)n : 0;
            }
            continue;
        }
        char why[256];
        if (!nv_symbols(lib, &nv_table, cands[i], why, sizeof why)) {
            if (len < sizeof nv_msg) {
                int n = snprintf(nv_msg + len, sizeof nv_msg - len, "\n  %s", why);
                len += n > 0 ? (size_t)n : 0;
            }
            dlclose(lib);
            continue;
        }
        nv_table.Version(&nv_table.major, &nv_table.minor);
        snprintf(nv_table.path, sizeof nv_table.path, "%s", cands[i]);
        nv_ok = true;
        return;
    }
}

const sp_nvrtc *sp_nvrtc_get(void)
{
    pthread_once(&nv_once, nv_open);
    if (!nv_ok) {
        sp_set_error(SPAT_ENVRTC,
                     "NVRTC (libnvrtc) cannot be loaded; set SPAT_NVRTC to its path. Tried:%s",
                     nv_msg);
        return NULL;
    }
    return &nv_table;
}

int sp_nvrtc_compile(const sp_nvrtc *nv, const char *src, const char *name,
                     const char *const *opts, int nopts, bool ptx, void **out, size_t *len,
                     char **log)
{
    *out = NULL;
    *len = 0;
    *log = NULL;
    nvrtcProgram prog = NULL;
    int e = nv->CreateProgram(&prog, src, name, 0, NULL, NULL);
    if (e != NVRTC_SUCCESS)
        return sp_set_error(SPAT_ENVRTC, "nvrtcCreateProgram: %s", nv->GetErrorString(e));
    int ce = nv->CompileProgram(prog, nopts, opts);
    size_t n = 0;
    int rc = SPAT_OK;
    if (nv->GetProgramLogSize(prog, &n) == NVRTC_SUCCESS && (*log = malloc(n + 1))) {
        (*log)[0] = '\0';
        if (nv->GetProgramLog(prog, *log) != NVRTC_SUCCESS)
            (*log)[0] = '\0';
        (*log)[n] = '\0';
    }
    if (ce != NVRTC_SUCCESS) {
        char optline[1024];
        size_t ol = 0;
        optline[0] = '\0';
        for (int i = 0; i < nopts && ol < sizeof optline; i++) {
            int w = snprintf(optline + ol, sizeof optline - ol, " %s", opts[i]);
            ol += w > 0 ? (size_t)w : 0;
        }
        rc = sp_set_error(SPAT_ENVRTC, "NVRTC could not compile %s (%s; options:%s):\n%s", name,
                          nv->GetErrorString(ce), optline, *log ? *log : "(no log)");
    } else {
        int se = ptx ? nv->GetPTXSize(prog, &n) : nv->GetCUBINSize(prog, &n);
        if (se != NVRTC_SUCCESS) {
            rc = sp_set_error(SPAT_ENVRTC, "NVRTC: cannot get the %s of %s: %s", ptx ? "PTX" : "CUBIN",
                              name, nv->GetErrorString(se));
        } else if (!(*out = malloc(n ? n : 1))) {
            rc = sp_set_error(SPAT_ENOMEM, "out of memory for NVRTC's output (%zu bytes)", n);
        } else if ((se = ptx ? nv->GetPTX(prog, *out) : nv->GetCUBIN(prog, *out)) != NVRTC_SUCCESS) {
            rc = sp_set_error(SPAT_ENVRTC, "NVRTC: cannot get the %s of %s: %s", ptx ? "PTX" : "CUBIN",
                              name, nv->GetErrorString(se));
        } else {
            *len = n;
        }
    }
    nv->DestroyProgram(&prog);
    if (rc != SPAT_OK) {
        free(*out);
        *out = NULL;
        *len = 0;
    }
    return rc;
}
