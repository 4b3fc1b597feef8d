/* The CUDA backend: compiles a kernel's generated CUDA source with NVRTC
 * for the GPU that holds the tensors (or takes a matching CUBIN from
 * kernel.so, or one from the disk cache), loads it with the driver API and
 * launches its passes on the caller's stream.
 *
 * State per spat_kernel (behind a mutex, since kernels are shared by
 * threads): the generated source, made on first use, and the loaded
 * modules per (CUDA context, head dim, dtype): the whole program when it
 * comes from kernel.so, else one module per part of the source (direct,
 * remap, rows; backend_cuda.h), which NVRTC compiles as separate programs
 * in parallel threads, since nearly all of a compile is per-kernel code
 * generation. Modules live until the kernel is freed.
 *
 * A forward call: the context is the one q was allocated in (pushed for
 * the call when another is current); the passes of sp_cuda_classify run in
 * stream order (direct, each remap slot, rows and their merge). Scratch
 * memory (per-batch lengths, an LSE buffer when the caller passed none but
 * passes merge, the rows pass's partials) comes from the stream-ordered
 * allocator and goes back to it after the last launch. Launch errors are
 * reported; errors of the running kernels surface, as usual in CUDA, at
 * the caller's next synchronisation. */
#include "config.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "backend_cuda.h"
#include "cuda_api.h"
#include "cuda_cache.h"
#include "cuda_params.h"
#include "cuda_run.h"
#include "internal.h"

typedef struct hparams {
    SP_PARAMS_FIELDS
} hparams;

enum { K_DIRECT, K_REMAP, K_ROWS, K_MERGE, NKERNELS };
static const char *const kernel_names[NKERNELS] = {SP_CUDA_K_DIRECT, SP_CUDA_K_REMAP, SP_CUDA_K_ROWS,
                                                   SP_CUDA_K_MERGE};
/* The part of the source that defines each kernel. */
static const int kernel_part[NKERNELS] = {SP_CUDA_PART_DIRECT, SP_CUDA_PART_REMAP, SP_CUDA_PART_ROWS,
                                          SP_CUDA_PART_ROWS};
static const char *const part_names[SP_CUDA_NPARTS] = {"direct", "remap", "rows"};

/* Keys per chunk of the rows pass, at least: a multiple of both engines'
 * tiles. */
#define ROWS_CHUNK 1024

/* The direct pass of a class whose query tiles' keys grow with their rows
 * (sp_cuda_class.grows) runs its longest items first (p.xmajor, SP_ORDER
 * in cuda_engine.cuh) where they fill at most this many waves of the
 * persistent CTAs. Measured on an H100 (BENCHMARKS.md), longest first
 * against head by head: causal at 3.9, 5.2, 7.8 and 10.4 items a CTA
 * +28, +33, +6 and +10 %; at 15.5 (d = 128, N = 16384) -1.6 %, at 20.8
 * +0.4 %: with many items the tail is short and the CTAs running at once
 * read the keys of every head. */
#define XMAJOR_WAVES 12

typedef struct cmod {
    CUcontext ctx;
    int d, dtype;
    CUmodule mod[SP_CUDA_NPARTS]; /* the whole program, or one per part */
    int nmod;
    CUfunction fn[NKERNELS]; /* each from the module that defines it */
    int smem;  /* dynamic shared memory of the tile kernels */
    int threads; /* per CTA, of every kernel */
    int bm;      /* query rows per CTA of the tile kernels */
    bool persist; /* the tile kernels loop over their items (spat_persist) */
    unsigned ctas[NKERNELS]; /* persistent: CTAs of each kernel that fit on the GPU at once */
    bool pools; /* the device has the stream-ordered allocator */
    CUstream side; /* the rows pass's, beside the others (NULL: after them, on theirs) */
} cmod;

typedef struct cstate {
    pthread_mutex_t mu;
    char *src;
    size_t len;
    sp_cuda_class *cc; /* [nclasses] */
    cmod **mods; /* each apart: a caller keeps its pointer while others are added */
    int nmods, cap;
} cstate;

static void release(void *state)
{
    cstate *st = state;
    if (!st)
        return;
    /* The driver may be gone at exit, or the context destroyed: unloading
     * is best effort. */
    const sp_cu *cu = st->nmods ? sp_cu_get() : NULL;
    for (int i = 0; i < st->nmods; i++) {
        for (int j = 0; cu && j < st->mods[i]->nmod; j++)
            cu->ModuleUnload(st->mods[i]->mod[j]);
        if (cu && st->mods[i]->side)
            cu->StreamDestroy(st->mods[i]->side);
        free(st->mods[i]);
    }
    free(st->mods);
    free(st->src);
    free(st->cc);
    pthread_mutex_destroy(&st->mu);
    free(st);
}

void sp_cuda_init_slot(spat_kernel *k)
{
    sp_backend_slot *s = &k->backends[SPAT_BACKEND_CUDA];
    cstate *st = calloc(1, sizeof *st);
    if (!st)
        return;
    st->cc = calloc((size_t)k->plan->nclasses, sizeof *st->cc);
    if (!st->cc || pthread_mutex_init(&st->mu, NULL) != 0) {
        free(st->cc);
        free(st);
        return;
    }
    for (int c = 0; c < k->plan->nclasses; c++)
        sp_cuda_classify(&k->plan->classes[c], &st->cc[c]);
    s->available = true;
    s->dtypes = 1u << SPAT_F32 | 1u << SPAT_F16 | 1u << SPAT_BF16;
    for (int i = 0; i < k->nhd; i++)
        s->forward[i] = sp_cuda_forward;
    s->state = st;
    s->release = release;
}

/* ------------------------------------------------------------- modules */

int sp_cuda_arch(const sp_cu *cu, char *arch, size_t cap, int *major, int *minor)
{
    CUdevice dev;
    CUresult e = cu->CtxGetDevice(&dev);
    if (e != CUDA_SUCCESS)
        return sp_cu_error(cu, e, "cuCtxGetDevice");
    if ((e = cu->DeviceGetAttribute(major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev)) ||
        (e = cu->DeviceGetAttribute(minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev)))
        return sp_cu_error(cu, e, "cuDeviceGetAttribute");
    if (*major < 7)
        return sp_set_error(SPAT_EDEVICE, "the GPU has compute capability %d.%d; spat's CUDA kernels "
                            "need 7.0 or later", *major, *minor);
    /* sm_90a: Hopper's architecture-specific features (wgmma) where the
     * GPU is exactly 9.0. */
    const char *env = getenv("SPAT_CUDA_ARCH");
    if (!env || !*env) {
        snprintf(arch, cap, "sm_%d%d%s", *major, *minor, *major == 9 && *minor == 0 ? "a" : "");
        return SPAT_OK;
    }
    /* A chosen target (sm_90 on Hopper runs the mma.sync tiles): a CUBIN
     * loads on a GPU of its major version and no older minor, and an
     * architecture-specific one only on its own. */
    unsigned num = 0;
    char suffix = 0, end = 0;
    int n = sscanf(env, "sm_%3u%c%c", &num, &suffix, &end);
    const int emaj = (int)num / 10, emin = (int)num % 10;
    if (n < 1 || n > 2 || (n == 2 && suffix != 'a') || emaj != *major || emin > *minor ||
        (n == 2 && emin != *minor))
        return sp_set_error(SPAT_EDEVICE, "SPAT_CUDA_ARCH=%s does not run on this GPU (compute capability "
                            "%d.%d): use sm_%d<minor>, minor at most %d, or sm_%d%da", env, *major, *minor,
                            *major, *minor, *major, *minor);
    snprintf(arch, cap, "%s", env);
    return SPAT_OK;
}

static int ensure_source(const spat_kernel *k, cstate *st)
{
    if (st->src)
        return SPAT_OK;
    char msg[512];
    if (sp_cuda_source(k->plan, &st->src, &st->len, msg, sizeof msg) != 0)
        return sp_set_error(SPAT_EBACKEND, "%s", msg);
    return SPAT_OK;
}

int sp_cuda_compile_cached(const char *src, size_t len, const char *name, int d, int dtype,
                           const char *arch, int part, void **image, size_t *size)
{
    const sp_nvrtc *nv = sp_nvrtc_get();
    if (!nv)
        return SPAT_ENVRTC;
    char buf[SP_CUDA_MAX_OPTS][64];
    const char *opts[SP_CUDA_MAX_OPTS];
    int nopts = sp_cuda_options(d, dtype, arch, part, buf, opts);
    char ver[64];
    snprintf(ver, sizeof ver, "nvrtc %d.%d %s", nv->major, nv->minor, PACKAGE_STRING);
    const char *parts[SP_CUDA_MAX_OPTS + 2];
    size_t lens[SP_CUDA_MAX_OPTS + 2];
    parts[0] = src;
    lens[0] = len;
    parts[1] = ver;
    lens[1] = strlen(ver);
    for (int i = 0; i < nopts; i++) {
        parts[i + 2] = opts[i];
        lens[i + 2] = strlen(opts[i]);
    }
    sp_cache_key key = sp_cache_key_of(parts, lens, nopts + 2);
    char dir[4096];
    bool cache = sp_cache_dir(dir, sizeof dir) == 0;
    if (cache && sp_cache_get(dir, key, image, size) == 0)
        return SPAT_OK;
    char *log = NULL;
    int rc = sp_nvrtc_compile(nv, src, name, opts, nopts, false, image, size, &log);
    free(log);
    if (rc == SPAT_OK && cache)
        sp_cache_put(dir, key, *image, *size);
    return rc;
}

/* Which kernels the source defines (backend_cuda.c emits the remap and
 * rows kernels only for plans that have such components). */
static unsigned kernels_defined(const spat_kernel *k, const cstate *st)
{
    unsigned mask = 1u << K_DIRECT;
    for (int c = 0; c < k->plan->nclasses; c++) {
        if (st->cc[c].nremap)
            mask |= 1u << K_REMAP;
        if (st->cc[c].rows >= 0)
            mask |= 1u << K_ROWS | 1u << K_MERGE;
    }
    return mask;
}

static void unload(const sp_cu *cu, cmod *m)
{
    for (int i = 0; i < m->nmod; i++)
        cu->ModuleUnload(m->mod[i]);
    m->nmod = 0;
    memset(m->fn, 0, sizeof m->fn);
}

/* An int the kernels' source defines (spat_smem, spat_threads, spat_tile_rows) into *v;
 * *v keeps dflt where the module lacks it and dflt >= 0. */
static int module_int(const sp_cu *cu, CUmodule mod, const char *name, int dflt, int *v)
{
    CUdeviceptr g;
    size_t bytes = 0;
    CUresult e = cu->ModuleGetGlobal(&g, &bytes, mod, name);
    if (e == CUDA_ERROR_NOT_FOUND && dflt >= 0) {
        *v = dflt;
        return SPAT_OK;
    }
    if (e == CUDA_SUCCESS && bytes != sizeof(int))
        return sp_set_error(SPAT_ECUDA, "the compiled module's %s is not an int", name);
    if (e == CUDA_SUCCESS)
        e = cu->MemcpyDtoH(v, g, sizeof *v);
    if (e != CUDA_SUCCESS) {
        char what[64];
        snprintf(what, sizeof what, "reading the compiled module's %s", name);
        return sp_cu_error(cu, e, what);
    }
    return SPAT_OK;
}

/* Loads one image into m: a module more, and from it the kernels of the
 * mask want, spat_smem, spat_threads and spat_tile_rows, on which all of m's
 * modules must agree. On failure this image's module is unloaded; m's others stay. */
static int load_image(const sp_cu *cu, cmod *m, const void *image, unsigned want)
{
    CUmodule mod;
    CUresult e = cu->ModuleLoadData(&mod, image);
    if (e != CUDA_SUCCESS)
        return sp_cu_error(cu, e, "cuModuleLoadData (the kernels compiled by NVRTC)");
    CUfunction fn[NKERNELS] = {0};
    int rc = SPAT_OK, smem = 0, threads = 0, bm = 0, persist = 0;
    for (int i = 0; i < NKERNELS && rc == SPAT_OK; i++)
        if (want >> i & 1 && cu->ModuleGetFunction(&fn[i], mod, kernel_names[i]) != CUDA_SUCCESS)
            rc = sp_set_error(SPAT_ECUDA, "the compiled module lacks %s", kernel_names[i]);
    /* spat_threads and spat_tile_rows came with warp specialisation:
     * CUBINs of an older spatc (kernel.so) lack them and run
     * SP_CUDA_THREADS and SP_CUDA_BM. */
    if (rc == SPAT_OK)
        rc = module_int(cu, mod, "spat_smem", -1, &smem);
    if (rc == SPAT_OK)
        rc = module_int(cu, mod, "spat_threads", SP_CUDA_THREADS, &threads);
    if (rc == SPAT_OK)
        rc = module_int(cu, mod, "spat_tile_rows", SP_CUDA_BM, &bm);
    /* (and persistent kernels after them: older modules are not) */
    if (rc == SPAT_OK)
        rc = module_int(cu, mod, "spat_persist", 0, &persist);
    if (rc == SPAT_OK && (threads < 32 || threads % 32 != 0 || threads > 1024 || bm < 1 || bm > 1024))
        rc = sp_set_error(SPAT_ECUDA, "the compiled module's spat_threads (%d) or spat_tile_rows (%d) "
                          "is out of range", threads, bm);
    if (rc == SPAT_OK && m->nmod > 0 &&
        (smem != m->smem || threads != m->threads || bm != m->bm || (persist != 0) != m->persist))
        rc = sp_set_error(SPAT_ECUDA, "the kernels' parts disagree on their shared memory (%d and %d "
                          "bytes), threads (%d and %d), rows (%d and %d) or persistence (%d and %d)",
                          m->smem, smem, m->threads, threads, m->bm, bm, m->persist, persist != 0);
    if (rc != SPAT_OK) {
        cu->ModuleUnload(mod);
        return rc;
    }
    m->mod[m->nmod++] = mod;
    m->smem = smem;
    m->threads = threads;
    m->bm = bm;
    m->persist = persist != 0;
    for (int i = 0; i < NKERNELS; i++)
        if (want >> i & 1)
            m->fn[i] = fn[i];
    return SPAT_OK;
}

/* Loads the images (want[i]: the kernels image i defines) into m and
 * prepares the tile kernels' shared memory. All or nothing: on failure
 * m holds no module. */
static int load_module(const sp_cu *cu, cmod *m, const void *const *images, const unsigned *want, int n)
{
    int rc = SPAT_OK;
    for (int i = 0; i < n && rc == SPAT_OK; i++)
        rc = load_image(cu, m, images[i], want[i]);
    if (rc == SPAT_OK && !m->fn[K_DIRECT])
        rc = sp_set_error(SPAT_ECUDA, "the compiled modules lack " SP_CUDA_K_DIRECT);
    if (rc != SPAT_OK) {
        unload(cu, m);
        return rc;
    }
    CUdevice dev;
    int optin = 0, pools = 0, sms = 0;
    cu->CtxGetDevice(&dev);
    cu->DeviceGetAttribute(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev);
    if (sms < 1)
        sms = 1;
    /* A testing aid: fewer persistent CTAs, each with more items. */
    const char *ctas = getenv("SPAT_CUDA_CTAS");
    const long cap = ctas ? strtol(ctas, NULL, 10) : 0;
    cu->DeviceGetAttribute(&optin, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, dev);
    cu->DeviceGetAttribute(&pools, CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED, dev);
    m->pools = pools && cu->MemAllocAsync;
    for (int i = 0; i < NKERNELS; i++) {
        if (!m->fn[i] || i == K_MERGE)
            continue;
        int stat = 0;
        cu->FuncGetAttribute(&stat, CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES, m->fn[i]);
        if (m->smem + stat > optin) {
            unload(cu, m);
            return sp_set_error(SPAT_EDEVICE, "head_dim %d needs %d bytes of shared memory per block; "
                                "this GPU allows %d", m->d, m->smem + stat, optin);
        }
        CUresult e = cu->FuncSetAttribute(m->fn[i], CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                          m->smem);
        if (e != CUDA_SUCCESS) {
            unload(cu, m);
            return sp_cu_error(cu, e, "cuFuncSetAttribute (dynamic shared memory)");
        }
        if (!m->persist)
            continue;
        int per_sm = 0;
        e = cu->OccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, m->fn[i], m->threads, (size_t)m->smem);
        if (e == CUDA_SUCCESS && per_sm < 1)
            e = CUDA_ERROR_INVALID_VALUE;
        if (e != CUDA_SUCCESS) {
            unload(cu, m);
            return sp_cu_error(cu, e, "cuOccupancyMaxActiveBlocksPerMultiprocessor (persistent kernels)");
        }
        m->ctas[i] = (unsigned)per_sm * (unsigned)sms;
        if (cap > 0 && m->ctas[i] > (unsigned)cap)
            m->ctas[i] = (unsigned)cap;
    }
    return SPAT_OK;
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* One part's compile, on a thread of its own. */
typedef struct part_job {
    const char *src, *name, *arch;
    size_t len;
    int d, dtype, part;
    unsigned want; /* the kernels it defines */
    int rc;
    char *msg; /* the thread's error message, when rc is not SPAT_OK */
    void *image;
    size_t size;
    double ms;
} part_job;

static void compile_part(part_job *j)
{
    const double t0 = now_ms();
    j->rc = sp_cuda_compile_cached(j->src, j->len, j->name, j->d, j->dtype, j->arch, j->part, &j->image,
                                   &j->size);
    j->ms = now_ms() - t0;
    /* Messages are per thread: the caller's thread raises it again. */
    if (j->rc != SPAT_OK)
        j->msg = strdup(spat_last_error());
}

static void *compile_thread(void *arg)
{
    compile_part(arg);
    return NULL;
}

/* Compiles the jobs concurrently: jobs[0] on this thread, each other on a
 * thread of its own, or after jobs[0] where no thread can be started.
 * Returns the error of the first failing job (in part order). */
static int compile_parts(part_job *jobs, int n)
{
    pthread_t t[SP_CUDA_NPARTS];
    bool started[SP_CUDA_NPARTS] = {false};
    pthread_attr_t attr;
    const bool attr_ok = pthread_attr_init(&attr) == 0;
    /* NVRTC used to run on the caller's stack, typically 8 MiB; a thread's
     * default can be far smaller (128 KiB with musl). */
    if (attr_ok)
        pthread_attr_setstacksize(&attr, (size_t)8 << 20);
    for (int i = 1; i < n; i++)
        started[i] = pthread_create(&t[i], attr_ok ? &attr : NULL, compile_thread, &jobs[i]) == 0;
    if (attr_ok)
        pthread_attr_destroy(&attr);
    compile_part(&jobs[0]);
    for (int i = 1; i < n; i++) {
        if (started[i])
            pthread_join(t[i], NULL);
        else
            compile_part(&jobs[i]);
    }
    for (int i = 0; i < n; i++)
        if (jobs[i].rc != SPAT_OK)
            return sp_set_error(jobs[i].rc, "%s", jobs[i].msg ? jobs[i].msg : spat_strerror(jobs[i].rc));
    return SPAT_OK;
}

/* The module for (current context, d, dtype): loaded, or built now.
 * SPAT_CUDA_VERBOSE in the environment reports where it came from and
 * what it cost, on stderr. */
static int get_module(const spat_kernel *k, cstate *st, const sp_cu *cu, CUcontext ctx, int d,
                      int dtype, cmod **out)
{
    pthread_mutex_lock(&st->mu);
    for (int i = 0; i < st->nmods; i++)
        if (st->mods[i]->ctx == ctx && st->mods[i]->d == d && st->mods[i]->dtype == dtype) {
            *out = st->mods[i];
            pthread_mutex_unlock(&st->mu);
            return SPAT_OK;
        }
    int rc = SPAT_OK, major = 0, minor = 0, njobs = 0;
    char arch[32], name[300];
    part_job jobs[SP_CUDA_NPARTS];
    const void *prebuilt = NULL;
    cmod *m = NULL;
    if ((rc = sp_cuda_arch(cu, arch, sizeof arch, &major, &minor)) != SPAT_OK ||
        (rc = ensure_source(k, st)) != SPAT_OK)
        goto done;
    if (st->nmods == st->cap) {
        int cap = st->cap ? 2 * st->cap : 4;
        cmod **g = realloc(st->mods, sizeof *g * (size_t)cap);
        if (!g) {
            rc = sp_set_error(SPAT_ENOMEM, "out of memory for CUDA modules");
            goto done;
        }
        st->mods = g;
        st->cap = cap;
    }
    if (!(m = calloc(1, sizeof *m))) {
        rc = sp_set_error(SPAT_ENOMEM, "out of memory for a CUDA module");
        goto done;
    }
    m->ctx = ctx;
    m->d = d;
    m->dtype = dtype;
    const unsigned defined = kernels_defined(k, st);
    prebuilt = sp_cuda_prebuilt(k, st->src, st->len, d, dtype, major, minor);
    if (prebuilt && load_module(cu, m, &prebuilt, &defined, 1) == SPAT_OK)
        goto loaded;
    /* No usable CUBIN in kernel.so: NVRTC (or the disk cache), a program
     * per part. */
    snprintf(name, sizeof name, "%s.cu", k->name);
    for (int p = 0; p < SP_CUDA_NPARTS; p++) {
        unsigned want = 0;
        for (int i = 0; i < NKERNELS; i++)
            if (kernel_part[i] == p && defined >> i & 1)
                want |= 1u << i;
        if (want)
            jobs[njobs++] = (part_job){.src = st->src, .len = st->len, .name = name, .arch = arch, .d = d,
                                       .dtype = dtype, .part = p, .want = want};
    }
    const double t0 = now_ms();
    if ((rc = compile_parts(jobs, njobs)) != SPAT_OK)
        goto done;
    const double t1 = now_ms();
    const void *images[SP_CUDA_NPARTS] = {NULL};
    unsigned want[SP_CUDA_NPARTS] = {0};
    for (int i = 0; i < njobs; i++) {
        images[i] = jobs[i].image;
        want[i] = jobs[i].want;
    }
    if ((rc = load_module(cu, m, images, want, njobs)) != SPAT_OK)
        goto done;
    if (getenv("SPAT_CUDA_VERBOSE")) {
        char each[256];
        size_t n = 0;
        each[0] = '\0';
        for (int i = 0; i < njobs && n < sizeof each; i++) {
            int w = snprintf(each + n, sizeof each - n, "%s%s %.1f ms, %zu bytes", i ? "; " : "",
                             part_names[jobs[i].part], jobs[i].ms, jobs[i].size);
            n += w > 0 ? (size_t)w : 0;
        }
        fprintf(stderr, "spat: %s d=%d dtype=%d %s: %d CUBIN%s (NVRTC or cache, a thread each) in %.1f ms: "
                "%s; module load %.1f ms\n", k->name, d, dtype, arch, njobs, njobs > 1 ? "s" : "", t1 - t0,
                each, now_ms() - t1);
    }
loaded:
    /* Without a stream of its own the rows pass runs after the others, so
     * a failure here costs time, not results. */
    if (defined >> K_ROWS & 1 && cu->StreamCreate &&
        cu->StreamCreate(&m->side, CU_STREAM_NON_BLOCKING) != CUDA_SUCCESS)
        m->side = NULL;
    st->mods[st->nmods++] = m;
    *out = m;
    m = NULL;
done:
    free(m); /* a module that failed to load (load_module unloaded it) */
    for (int i = 0; i < njobs; i++) {
        free(jobs[i].image);
        free(jobs[i].msg);
    }
    pthread_mutex_unlock(&st->mu);
    return rc;
}

/* ------------------------------------------------------------- launches */

/* Largest count of `global rows` rows inside one batch's query positions,
 * over the batches and the head classes in use. */
static int rows_bound(const spat_kernel *k, const cstate *st, const sp_fwd *f, int64_t *nu)
{
    const spat_forward_args *a = f->a;
    *nu = 0;
    const bool per_batch = a->seqlens_q || a->seqlens_k || a->q_offsets;
    for (int64_t h = 0; h < a->heads_q; h++) {
        const int cls = k->plan->nheads > 0 ? k->plan->head_class[h] : 0;
        const int rc = st->cc[cls].rows;
        if (rc < 0)
            continue;
        bool first = true; /* one head per class is enough: sets do not depend on the head */
        for (int64_t g = 0; g < h && first; g++)
            first = (k->plan->nheads > 0 ? k->plan->head_class[g] : 0) != cls;
        if (!first)
            continue;
        for (int64_t b = 0; b < (per_batch ? a->batch : 1); b++) {
            const int64_t nq = sp_fwd_nq(f, b), nk = sp_fwd_nk(f, b), off = sp_fwd_qoff(f, b);
            if (nq <= 0)
                continue;
            sp_view v;
            if (sp_view_init(&v, k->plan, h, nk) != 0)
                return sp_set_error(SPAT_ENOMEM, "out of memory resolving global rows");
            int64_t n = 0;
            for (int s = 0; s < v.c[rc].nspans; s++) {
                int64_t lo = v.c[rc].spans[s].lo > off ? v.c[rc].spans[s].lo : off;
                int64_t hi = v.c[rc].spans[s].hi < off + nq - 1 ? v.c[rc].spans[s].hi : off + nq - 1;
                if (lo <= hi)
                    n += hi - lo + 1;
            }
            sp_view_free(&v);
            if (n > *nu)
                *nu = n;
        }
    }
    return SPAT_OK;
}

typedef struct scratch {
    CUdeviceptr base;
    bool async;
} scratch;

static int scratch_alloc(const sp_cu *cu, const cmod *m, CUstream s, size_t bytes, scratch *sc)
{
    sc->base = 0;
    sc->async = m->pools;
    if (bytes == 0)
        return SPAT_OK;
    CUresult e = sc->async ? cu->MemAllocAsync(&sc->base, bytes, s) : cu->MemAlloc(&sc->base, bytes);
    if (e != CUDA_SUCCESS)
        return sp_cu_error(cu, e, sc->async ? "cuMemAllocAsync (scratch)" : "cuMemAlloc (scratch)");
    return SPAT_OK;
}

static void scratch_free(const sp_cu *cu, CUstream s, scratch *sc)
{
    if (!sc->base)
        return;
    if (sc->async) {
        cu->MemFreeAsync(sc->base, s);
    } else {
        /* Without the stream-ordered allocator the kernels must finish
         * before the memory can go. */
        cu->StreamSynchronize(s);
        cu->MemFree(sc->base);
    }
}

/* Launches kind over the items gx x heads x batch: a CTA each, or for
 * persistent kernels as many CTAs as run at once (fewer where there are
 * fewer items), which share them; longest first (XMAJOR_WAVES) where the
 * items' keys grow with x. */
static int launch(const sp_cu *cu, const cmod *m, int kind, unsigned gx, bool grows, hparams *p, CUstream s)
{
    if (gx == 0)
        return SPAT_OK;
    void *args[] = {(void *)p};
    unsigned smem = kind == K_MERGE ? 0u : (unsigned)m->smem;
    unsigned threads = (unsigned)m->threads;
    unsigned grid[3] = {gx, (unsigned)p->heads_q, (unsigned)p->batch};
    p->gx = gx;
    p->xmajor = 0;
    if (m->persist && kind != K_MERGE) {
        const uint64_t items = (uint64_t)gx * (uint64_t)p->heads_q * (uint64_t)p->batch;
        grid[0] = items < m->ctas[kind] ? (unsigned)items : m->ctas[kind];
        grid[1] = grid[2] = 1;
        p->xmajor = grows && items <= (uint64_t)XMAJOR_WAVES * m->ctas[kind];
    }
    CUresult e = cu->LaunchKernel(m->fn[kind], grid[0], grid[1], grid[2], threads, 1, 1, smem, s, args, NULL);
    if (e != CUDA_SUCCESS) {
        char what[96];
        snprintf(what, sizeof what, "cuLaunchKernel (%s, %u x %u x %u blocks)", kernel_names[kind], grid[0],
                 grid[1], grid[2]);
        return sp_cu_error(cu, e, what);
    }
    return SPAT_OK;
}

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* A TMA descriptor of K or V (base, element strides st) for keys D
 * apart, as the persistent kernels read it (sp_params.tma): 16-bit
 * elements, dims (d, residue, keys / D, KV heads, batch), position r + D *
 * m at residue r and index m; boxes of 64 x 1 x 64 in the 128-byte swizzle
 * of their tiles. False where TMA cannot describe the tensor (a stride not
 * a multiple of 16 bytes, a driver before CUDA 12, ...): the kernels then
 * copy every tile themselves. A dim of size 1 gets the packed stride,
 * whatever the caller's. */
static bool tensor_map(const sp_cu *cu, sp_tmap *map, const void *base, const int64_t st[4], int64_t D,
                       const spat_forward_args *a)
{
    /* (D < 1: the head classes' dilations disagree; the kernels' box
     * coordinates are 32-bit) */
    if (!cu->TensorMapEncodeTiled || a->dtype == SPAT_F32 || a->head_dim % 64 != 0 || a->head_dim > 256 ||
        st[3] != 1 || ((uintptr_t)base & 15) != 0 || D < 1 || st[2] > INT64_MAX / D || a->seq_k > INT32_MAX)
        return false;
    const unsigned long long dims[5] = {(unsigned long long)a->head_dim, (unsigned long long)D,
                                        (unsigned long long)cdiv(a->seq_k, D), (unsigned long long)a->heads_kv,
                                        (unsigned long long)a->batch};
    const int64_t step[4] = {st[2], st[2] * D, st[1], st[0]}; /* residue, index, head, batch */
    unsigned long long strides[4];
    for (int i = 0; i < 4; i++) {
        strides[i] = dims[i + 1] == 1 ? (i ? strides[i - 1] * dims[i] : dims[0] * 2) : (unsigned long long)step[i] * 2;
        if (step[i] < 0 || strides[i] == 0 || strides[i] % 16 != 0 || strides[i] >= 1ull << 40)
            return false;
    }
    static const unsigned box[5] = {64, 1, 64, 1, 1}, ones[5] = {1, 1, 1, 1, 1};
    return cu->TensorMapEncodeTiled(map, a->dtype == SPAT_BF16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
                                                                : CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
                                    5, (void *)base, dims, strides, box, ones, CU_TENSOR_MAP_INTERLEAVE_NONE,
                                    CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                                    CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

/* K's and V's descriptors in p for keys D apart; p->tma says whether
 * there are any. */
static void tensor_maps(const sp_cu *cu, const cmod *m, hparams *p, int64_t D, const spat_forward_args *a)
{
    p->tmad = D;
    p->tma = m->persist && tensor_map(cu, &p->tk, a->k, a->k_stride, D, a) &&
             tensor_map(cu, &p->tv, a->v, a->v_stride, D, a);
}

/* Keys per chunk of the rows pass over nu global rows: ROWS_CHUNK, doubled
 * while its items (row tiles x chunks x heads x batch) would need more than
 * one wave of the persistent CTAs, since a second, partial wave costs
 * nearly a whole one. Measured on an H100 (BENCHMARKS.md): bigbird at
 * d = 128, 512 items for 264 CTAs with 1024 keys, took 7 % less time with
 * 2048; smaller chunks, more items in one wave, lost 1 to 40 % (more
 * partials to merge, shorter runs of tiles). */
static int64_t rows_chunk(const cmod *m, int64_t nu, const spat_forward_args *a)
{
    int64_t chunk = ROWS_CHUNK;
    if (!m->persist || nu <= 0)
        return chunk;
    const int64_t per_chunk = cdiv(nu, m->bm) * a->heads_q * a->batch;
    while (chunk < a->seq_k && per_chunk * cdiv(a->seq_k, chunk) > (int64_t)m->ctas[K_ROWS])
        chunk *= 2;
    return chunk;
}

static int run(const spat_kernel *k, const cstate *st, const sp_cu *cu, const cmod *m,
               const sp_fwd *f)
{
    const spat_forward_args *a = f->a;
    CUstream s = (CUstream)a->stream;
    if (a->heads_q > 65535 || a->batch > 65535)
        return sp_set_error(SPAT_EINVAL, "heads_q = %lld, batch = %lld: the CUDA backend launches "
                            "at most 65535 of each", (long long)a->heads_q, (long long)a->batch);
    /* What the classes in use need. */
    bool direct = a->seqlens_q != NULL, merges = false, grows = false;
    int nslots = 0;
    int64_t remap_x[SP_MAX_COMPS] = {0};
    int64_t remap_d[SP_MAX_COMPS] = {0}; /* each slot's dilation, where the classes in use agree; else -1 */
    for (int64_t h = 0; h < a->heads_q; h++) {
        const sp_cuda_class *c = &st->cc[k->plan->nheads > 0 ? k->plan->head_class[h] : 0];
        direct |= c->direct_writes;
        grows |= c->grows;
        merges |= c->rows >= 0 || c->nremap > (c->direct_writes ? 0 : 1);
        if (c->nremap > nslots)
            nslots = c->nremap;
        for (int sl = 0; sl < c->nremap; sl++) {
            int64_t x = c->remap_d[sl] * cdiv(cdiv(a->seq_q, c->remap_d[sl]), m->bm);
            remap_d[sl] = remap_d[sl] == 0 || remap_d[sl] == c->remap_d[sl] ? c->remap_d[sl] : -1;
            if (x > remap_x[sl])
                remap_x[sl] = x;
        }
    }
    int64_t nu = 0;
    int rc = rows_bound(k, st, f, &nu);
    if (rc != SPAT_OK)
        return rc;
    const int64_t chunk = rows_chunk(m, nu, a);
    const int64_t nch = cdiv(a->seq_k, chunk);
    const bool per_batch = a->seqlens_q || a->seqlens_k || a->q_offsets;
    /* Scratch: the item counters of persistent launches (direct, remap
     * slots, rows), lengths, LSE, partials, each 256-byte aligned. */
    size_t off_lens = 0, off_lse = 0, off_part = 0, total = 0;
    const size_t nticks = m->persist ? (size_t)nslots + 2 : 0;
    total += (nticks * sizeof(uint64_t) + 255) & ~(size_t)255;
    if (per_batch) {
        off_lens = total;
        total += ((size_t)a->batch * 3 * sizeof(int64_t) + 255) & ~(size_t)255;
    }
    const bool lse_scratch = merges && !a->lse;
    if (lse_scratch) {
        off_lse = total;
        total += ((size_t)a->batch * (size_t)a->heads_q * (size_t)a->seq_q * sizeof(float) + 255) &
                 ~(size_t)255;
    }
    if (nu > 0) {
        off_part = total;
        total += (size_t)a->batch * (size_t)a->heads_q * (size_t)nch * (size_t)nu *
                 (size_t)(a->head_dim + 1) * sizeof(float);
    }
    for (int sl = 0; sl < nslots; sl++)
        if (remap_x[sl] > INT32_MAX)
            return sp_set_error(SPAT_EINVAL, "seq_q = %lld is too long for one launch",
                                (long long)a->seq_q);
    if (cdiv(a->seq_q, m->bm) > INT32_MAX || cdiv(nu, m->bm) * nch > INT32_MAX)
        return sp_set_error(SPAT_EINVAL, "seq_q = %lld is too long for one launch", (long long)a->seq_q);

    scratch sc;
    if ((rc = scratch_alloc(cu, m, s, total, &sc)) != SPAT_OK)
        return rc;
    CUevent fork = NULL, join = NULL; /* the rows pass beside the others */
    bool waited = true;
    if (nticks > 0) {
        CUresult e = cu->MemsetD32Async(sc.base, 0, nticks * 2, s);
        if (e != CUDA_SUCCESS) {
            rc = sp_cu_error(cu, e, "cuMemsetD32Async (item counters)");
            goto out;
        }
    }
    hparams p;
    memset(&p, 0, sizeof p);
    p.q = a->q;
    p.k = a->k;
    p.v = a->v;
    p.o = a->o;
    p.lse = a->lse;
    memcpy(p.qs, a->q_stride, sizeof p.qs);
    memcpy(p.ks, a->k_stride, sizeof p.ks);
    memcpy(p.vs, a->v_stride, sizeof p.vs);
    memcpy(p.os, a->o_stride, sizeof p.os);
    memcpy(p.ls, a->lse_stride, sizeof p.ls);
    p.batch = a->batch;
    p.heads_q = a->heads_q;
    p.heads_kv = a->heads_kv;
    p.seq_q = a->seq_q;
    p.seq_k = a->seq_k;
    p.q_offset = a->q_offset;
    p.scale_log2 = f->scale * 1.4426950408889634;
    p.nu = nu;
    p.nch = nch;
    p.chunk = chunk;
    tensor_maps(cu, m, &p, 1, a);
    if (lse_scratch) {
        p.lse = (float *)(uintptr_t)(sc.base + off_lse);
        p.ls[0] = a->heads_q * a->seq_q;
        p.ls[1] = a->seq_q;
        p.ls[2] = 1;
    }
    if (nu > 0)
        p.part = (float *)(uintptr_t)(sc.base + off_part);
    int64_t *lens = NULL;
    if (per_batch) {
        lens = malloc(sizeof *lens * 3 * (size_t)a->batch);
        if (!lens) {
            rc = sp_set_error(SPAT_ENOMEM, "out of memory for per-batch lengths");
            goto out;
        }
        for (int64_t b = 0; b < a->batch; b++) {
            lens[3 * b] = sp_fwd_nq(f, b);
            lens[3 * b + 1] = sp_fwd_nk(f, b);
            lens[3 * b + 2] = sp_fwd_qoff(f, b);
        }
        /* From pageable memory the copy is staged before the call returns,
         * so lens may go right after. */
        CUresult e = cu->MemcpyHtoDAsync(sc.base + off_lens, lens, sizeof *lens * 3 * (size_t)a->batch, s);
        free(lens);
        if (e != CUDA_SUCCESS) {
            rc = sp_cu_error(cu, e, "cuMemcpyHtoDAsync (per-batch lengths)");
            goto out;
        }
        p.lens = (const long long *)(uintptr_t)(sc.base + off_lens);
    }
    /* Counter i of the persistent launches, at the start of the scratch. */
#define TICK(i) (nticks ? (unsigned long long *)(uintptr_t)(sc.base + (i) * sizeof(uint64_t)) : NULL)
    /* The rows pass reads Q, K and V and writes its partials, nothing the
     * direct and remap passes write: it runs on m->side beside them, and
     * the merge, which reads both, after all of them. It goes first, so
     * that its CTAs (a wave at most, rows_chunk) start at once and the
     * persistent CTAs of the others take the SMs they leave and, as they
     * end, the rest. */
    const unsigned rows_x = (unsigned)(cdiv(nu, m->bm) * nch);
    const bool beside = nu > 0 && m->side && (direct || nslots > 0);
    if (beside) {
        CUresult e;
        if ((e = cu->EventCreate(&fork, CU_EVENT_DISABLE_TIMING)) != CUDA_SUCCESS ||
            (e = cu->EventCreate(&join, CU_EVENT_DISABLE_TIMING)) != CUDA_SUCCESS ||
            (e = cu->EventRecord(fork, s)) != CUDA_SUCCESS ||
            (e = cu->StreamWaitEvent(m->side, fork, 0)) != CUDA_SUCCESS) {
            rc = sp_cu_error(cu, e, "forking the rows pass onto its stream");
            goto out;
        }
        p.tick = TICK(1 + nslots);
        waited = false;
        if ((rc = launch(cu, m, K_ROWS, rows_x, false, &p, m->side)) != SPAT_OK)
            goto out;
        if ((e = cu->EventRecord(join, m->side)) != CUDA_SUCCESS) {
            rc = sp_cu_error(cu, e, "cuEventRecord (the rows pass's end)");
            goto out;
        }
    }
    p.tick = TICK(0);
    if (direct && (rc = launch(cu, m, K_DIRECT, (unsigned)cdiv(a->seq_q, m->bm), grows, &p, s)))
        goto out;
    for (int sl = 0; sl < nslots; sl++) {
        /* (the driver copies the arguments at the launch) */
        hparams pr = p;
        pr.slot = sl;
        pr.tick = TICK(1 + sl);
        tensor_maps(cu, m, &pr, remap_d[sl], a);
        if ((rc = launch(cu, m, K_REMAP, (unsigned)remap_x[sl], false, &pr, s)) != SPAT_OK)
            goto out;
    }
    p.tick = TICK(1 + nslots);
#undef TICK
    if (beside) {
        CUresult e = cu->StreamWaitEvent(s, join, 0);
        if (e != CUDA_SUCCESS) {
            rc = sp_cu_error(cu, e, "cuStreamWaitEvent (the rows pass's end)");
            goto out;
        }
        waited = true;
    } else if (nu > 0 && (rc = launch(cu, m, K_ROWS, rows_x, false, &p, s)) != SPAT_OK)
        goto out;
    if (nu > 0 && (rc = launch(cu, m, K_MERGE, (unsigned)cdiv(nu, m->threads / 32), false, &p, s)) != SPAT_OK)
        goto out;
out:
    /* The scratch goes back in s's order: after the rows pass, whatever
     * failed (else its partials could land in freed memory). Only a
     * failure leaves it unwaited, so rc already holds the error. */
    if (!waited)
        cu->StreamSynchronize(m->side);
    if (fork)
        cu->EventDestroy(fork);
    if (join)
        cu->EventDestroy(join);
    scratch_free(cu, s, &sc);
    return rc;
}

int sp_cuda_forward(const spat_kernel *k, const sp_fwd *f)
{
    const spat_forward_args *a = f->a;
    const sp_cu *cu = sp_cu_get();
    if (!cu)
        return SPAT_EDEVICE;
    cstate *st = k->backends[SPAT_BACKEND_CUDA].state;
    CUcontext ctx = NULL, cur = NULL;
    CUresult e = cu->PointerGetAttribute(&ctx, CU_POINTER_ATTRIBUTE_CONTEXT,
                                         (CUdeviceptr)(uintptr_t)a->q);
    if (e != CUDA_SUCCESS || !ctx)
        return sp_set_error(SPAT_EDEVICE, "q = %p: the CUDA driver knows no context for it", a->q);
    cu->CtxGetCurrent(&cur);
    const bool push = cur != ctx;
    if (push && (e = cu->CtxPushCurrent(ctx)) != CUDA_SUCCESS)
        return sp_cu_error(cu, e, "cuCtxPushCurrent (the context of q)");
    cmod *m = NULL;
    int rc = get_module(k, st, cu, ctx, (int)a->head_dim, (int)a->dtype, &m);
    if (rc == SPAT_OK)
        rc = run(k, st, cu, m, f);
    if (push)
        cu->CtxPopCurrent(&cur);
    return rc;
}

/* --------------------------------------------------------- validation */

int sp_cuda_check_pointers(const void *const *dev, const char *const *dnames, int ndev,
                           const void *const *host, const char *const *hnames, int nhost)
{
    const sp_cu *cu = sp_cu_get();
    if (!cu)
        return SPAT_EDEVICE;
    int ord0 = -1, first = -1;
    for (int i = 0; i < ndev; i++) {
        if (!dev[i])
            continue;
        unsigned type = 0;
        int ord = -1;
        CUresult e = cu->PointerGetAttribute(&type, CU_POINTER_ATTRIBUTE_MEMORY_TYPE,
                                             (CUdeviceptr)(uintptr_t)dev[i]);
        if (e != CUDA_SUCCESS || type != CU_MEMORYTYPE_DEVICE)
            return sp_set_error(SPAT_EDEVICE, "%s = %p is %s, but device = SPAT_DEVICE_CUDA needs "
                                "CUDA device memory", dnames[i], dev[i],
                                e != CUDA_SUCCESS ? "not CUDA memory" : "host memory");
        cu->PointerGetAttribute(&ord, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL,
                                (CUdeviceptr)(uintptr_t)dev[i]);
        if (ord0 < 0) {
            ord0 = ord;
            first = i;
        } else if (ord != ord0) {
            return sp_set_error(SPAT_EDEVICE, "%s = %p is on GPU %d, %s on GPU %d: all tensors "
                                "must be on one device", dnames[i], dev[i], ord, dnames[first],
                                ord0);
        }
    }
    int i = sp_device_find_gpu_pointer(host, nhost);
    if (i >= 0)
        return sp_set_error(SPAT_EDEVICE, "%s = %p is CUDA device memory; it must be host memory "
                            "(libspat copies what the kernels need)", hnames[i], host[i]);
    return SPAT_OK;
}
