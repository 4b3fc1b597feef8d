/* The CUDA backend against the reference backend, on a GPU.
 *
 *   test_gpu [--small | --extra] [--seed N] [--filter TEXT] [--shard I/N]
 *
 * For every pattern in patterns/ and every rule pattern of
 * tests/rule_patterns.c: fresh random Q, K, V (printed seed; --seed
 * repeats a run) stored in the dtype under test, O and LSE poisoned
 * (NaN bytes) before the call, the CUDA result compared with the reference
 * backend run in f32 on the same rounded inputs. ‖O − ref‖ / ‖ref‖ must stay
 * under 1e-2 for bf16, 5e-3 for f16 and 1e-5 for f32, and so must every
 * row on its own, under 2.5e-2, 1e-2 and 5e-5 of the row's norm (or of
 * ROW_FLOOR per element where the row is near 0): a kernel that drops one
 * key of a few rows fails, however small its share of the whole; LSE within 1e-3
 * (16-bit) or 1e-5 (f32) of the reference, relative to max(1, |LSE|);
 * padding rows and rows without keys exactly O = 0, LSE = -inf; bytes
 * between O's elements (padded layouts) untouched. Cases cover awkward
 * lengths (1, 7, 63, 65, 1000), GQA, per-batch lengths, q_offset, BSHD and
 * unaligned row layouts, a missing LSE, and f16 / f32 / head dim 128.
 *
 * --shard I/N runs every N-th case from the I-th (0-based), so that N
 * processes share the cases (tests/gpu/run.sh runs them at once: the run
 * is bound by NVRTC's cold compiles, one core each); the inputs of a case
 * depend on the cases run before it, so --seed repeats a run only with
 * the same --shard.
 *
 * A case that runs longer than $SPAT_GPU_CASE_TIMEOUT seconds (default
 * 300: a cold compile takes a few) is a hang: the program names it and
 * exits with status 3, so that a sharded run reports it instead of
 * running into the caller's time limit.
 *
 * --small runs a handful of cases for compute-sanitizer (memcheck,
 * racecheck, synccheck). The program uses libspat's own driver table
 * (dlopen'd libcuda), so it builds without CUDA headers. Exit status 0
 * when every case passes. */
#include "config.h"

/* A row's error is taken against at least this much per element (V is
 * uniform in [-1, 1], so a row's O is rarely smaller). */
#define ROW_FLOOR 0.01

#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cuda_api.h"
#include "internal.h"
#include "rule_patterns.h"
#include "spat.h"
#include "tensor.h"

static const sp_cu *cu;
static int nfail, npass;
static const char *filter; /* run only cases whose label holds this */
static long shard_i, shard_n = 1, ncase; /* run case k when k mod shard_n = shard_i */
static unsigned case_timeout = 300;     /* seconds; 0: none */
static char running[192];                /* "TIMEOUT <label>\n" of the case under way */
static size_t running_len;

static void on_alarm(int sig)
{
    (void)sig;
    if (write(STDOUT_FILENO, running, running_len) < 0)
        _exit(4);
    _exit(3);
}

static double unif(void) { return test_uniform(-1.0, 1.0); }
static int64_t rint_in(int64_t lo, int64_t hi) { return lo + (int64_t)(test_rnd64() % (uint64_t)(hi - lo + 1)); }

#define CK(call)                                                                                   \
    do {                                                                                           \
        CUresult e_ = (call);                                                                      \
        if (e_ != CUDA_SUCCESS) {                                                                  \
            const char *n_ = "?";                                                                  \
            cu->GetErrorName(e_, &n_);                                                             \
            fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #call, n_);             \
            exit(2);                                                                               \
        }                                                                                          \
    } while (0)

typedef struct gpu_case {
    const char *src, *label;
    int64_t batch, hq, hkv, nq, nk, d, qoff;
    spat_dtype dtype;
    bool varlen, no_lse;
    float scale; /* 0: 1/sqrt(d) */
    int layout; /* 0 BHSD, 1 BSHD, 2 BHSD with rows padded by 3 elements (unaligned) */
} gpu_case;

static size_t esize(spat_dtype t) { return t == SPAT_F32 ? 4 : 2; }

/* Strides of a [b, h, s, d] tensor in the case's layout; returns the
 * element extent. */
static int64_t strides(const gpu_case *c, int64_t h, int64_t s, int64_t st[4])
{
    const int64_t d = c->d, pitch = c->layout == 2 ? d + 3 : d;
    if (c->layout == 1) { /* BSHD */
        st[3] = 1, st[1] = d, st[2] = h * d, st[0] = s * h * d;
    } else {
        st[3] = 1, st[2] = pitch, st[1] = s * pitch, st[0] = h * s * pitch;
    }
    return (c->batch - 1) * st[0] + (h - 1) * st[1] + (s - 1) * st[2] + (d - 1) * st[3] + 1;
}

static CUdeviceptr dalloc(size_t bytes)
{
    CUdeviceptr p;
    CK(cu->MemAlloc(&p, bytes ? bytes : 1));
    return p;
}

static void run_case(const gpu_case *c)
{
    const spat_dtype t = c->dtype;
    const int64_t B = c->batch, Hq = c->hq, Hk = c->hkv, Nq = c->nq, Nk = c->nk, d = c->d;
    int64_t qs[4], ks[4], os[4];
    const int64_t qn = strides(c, Hq, Nq, qs), kn = strides(c, Hk, Nk, ks), on = strides(c, Hq, Nq, os);
    const size_t es = esize(t);
    char *q = malloc(qn * es), *k = malloc(kn * es), *v = malloc(kn * es), *o = malloc(on * es);
    float *rq = malloc(sizeof(float) * B * Hq * Nq * d), *rk = malloc(sizeof(float) * B * Hk * Nk * d),
          *rv = malloc(sizeof(float) * B * Hk * Nk * d), *ro = malloc(sizeof(float) * B * Hq * Nq * d),
          *rl = malloc(sizeof(float) * B * Hq * Nq), *gl = malloc(sizeof(float) * B * Hq * Nq);
    int32_t *sq = malloc(sizeof(int32_t) * B), *sk = malloc(sizeof(int32_t) * B);
    int64_t *qo = malloc(sizeof(int64_t) * B);
    /* Inputs: random in the dtype; the reference reads the same values. */
    memset(q, 0, qn * es);
    memset(k, 0, kn * es);
    memset(v, 0, kn * es);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < Hq; h++)
            for (int64_t r = 0; r < Nq; r++)
                for (int64_t x = 0; x < d; x++) {
                    int64_t i = b * qs[0] + h * qs[1] + r * qs[2] + x * qs[3];
                    test_put(q, t, i, unif() * 1.5);
                    rq[((b * Hq + h) * Nq + r) * d + x] = (float)test_get(q, t, i);
                }
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < Hk; h++)
            for (int64_t r = 0; r < Nk; r++)
                for (int64_t x = 0; x < d; x++) {
                    int64_t i = b * ks[0] + h * ks[1] + r * ks[2] + x * ks[3];
                    test_put(k, t, i, unif() * 1.5);
                    test_put(v, t, i, unif());
                    rk[((b * Hk + h) * Nk + r) * d + x] = (float)test_get(k, t, i);
                    rv[((b * Hk + h) * Nk + r) * d + x] = (float)test_get(v, t, i);
                }
    for (int64_t b = 0; b < B; b++) {
        int64_t nk = c->varlen ? rint_in(1, Nk) : Nk;
        int64_t nq = c->varlen ? rint_in(0, nk < Nq ? nk : Nq) : Nq;
        sk[b] = (int32_t)nk;
        sq[b] = (int32_t)nq;
        qo[b] = c->varlen ? rint_in(0, nk - nq) : c->qoff;
    }

    spat_kernel *kern;
    spat_compile_options co = {.head_dims = (const int[]){(int)d}, .n_head_dims = 1};
    if (spat_compile(c->src, NULL, &co, &kern) != SPAT_OK) {
        printf("FAIL %-40s compile: %s\n", c->label, spat_last_error());
        nfail++;
        goto out;
    }
    /* Reference, f32, contiguous BHSD. */
    spat_forward_args a;
    spat_forward_args_init(&a, B, Hq, Hk, Nq, Nk, d);
    a.q = rq, a.k = rk, a.v = rv, a.o = ro, a.lse = rl;
    a.scale = c->scale;
    a.backend = SPAT_BACKEND_REFERENCE;
    if (c->varlen)
        a.seqlens_q = sq, a.seqlens_k = sk, a.q_offsets = qo;
    else
        a.q_offset = c->qoff;
    if (spat_forward(kern, &a) != SPAT_OK) {
        printf("FAIL %-40s reference: %s\n", c->label, spat_last_error());
        nfail++;
        spat_kernel_free(kern);
        goto out;
    }
    /* GPU. */
    CUdeviceptr dq = dalloc(qn * es), dk = dalloc(kn * es), dv = dalloc(kn * es),
                dout = dalloc(on * es), dl = dalloc(sizeof(float) * B * Hq * Nq);
    CK(cu->MemcpyHtoDAsync(dq, q, qn * es, NULL));
    CK(cu->MemcpyHtoDAsync(dk, k, kn * es, NULL));
    CK(cu->MemcpyHtoDAsync(dv, v, kn * es, NULL));
    memset(o, 0xff, on * es); /* NaN in every dtype */
    memset(gl, 0xff, sizeof(float) * B * Hq * Nq);
    CK(cu->MemcpyHtoDAsync(dout, o, on * es, NULL));
    CK(cu->MemcpyHtoDAsync(dl, gl, sizeof(float) * B * Hq * Nq, NULL));
    CK(cu->StreamSynchronize(NULL));
    spat_forward_args g = a;
    g.backend = SPAT_BACKEND_AUTO;
    g.device = SPAT_DEVICE_CUDA;
    g.dtype = t;
    g.q = (void *)(uintptr_t)dq, g.k = (void *)(uintptr_t)dk, g.v = (void *)(uintptr_t)dv;
    g.o = (void *)(uintptr_t)dout;
    g.lse = c->no_lse ? NULL : (float *)(uintptr_t)dl;
    memcpy(g.q_stride, qs, sizeof qs);
    memcpy(g.k_stride, ks, sizeof ks);
    memcpy(g.v_stride, ks, sizeof ks);
    memcpy(g.o_stride, os, sizeof os);
    int rc = spat_forward(kern, &g);
    if (rc == SPAT_OK) {
        CUresult e = cu->CtxSynchronize();
        if (e != CUDA_SUCCESS)
            rc = sp_cu_error(cu, e, "kernel execution");
    }
    if (rc != SPAT_OK) {
        printf("FAIL %-40s forward: %s\n", c->label, spat_last_error());
        nfail++;
        if (rc == SPAT_ECUDA)
            exit(3); /* the context is likely broken */
    } else {
        CK(cu->MemcpyDtoH(o, dout, on * es));
        CK(cu->MemcpyDtoH(gl, dl, sizeof(float) * B * Hq * Nq));
        double num = 0, den = 0, lerr = 0, worst = -1;
        int64_t wb = 0, wh = 0, wr = 0;
        int bad = 0;
        char why[256] = "";
        for (int64_t b = 0; b < B; b++)
            for (int64_t h = 0; h < Hq; h++)
                for (int64_t r = 0; r < Nq; r++) {
                    const bool valid = r < sq[b];
                    const float lr = rl[(b * Hq + h) * Nq + r], lg = gl[(b * Hq + h) * Nq + r];
                    double rnum = 0, rden = 0;
                    for (int64_t x = 0; x < d; x++) {
                        double og = test_get(o, t, b * os[0] + h * os[1] + r * os[2] + x * os[3]);
                        double oref = ro[((b * Hq + h) * Nq + r) * d + x];
                        if (isnan(og) || (!valid && og != 0)) {
                            if (!bad++)
                                snprintf(why, sizeof why, "O[%lld,%lld,%lld,%lld] = %g (ref %g)",
                                         (long long)b, (long long)h, (long long)r, (long long)x, og, oref);
                            continue;
                        }
                        num += (og - oref) * (og - oref);
                        den += oref * oref;
                        rnum += (og - oref) * (og - oref);
                        rden += oref * oref;
                    }
                    /* A row's error against its own size, or against
                     * ROW_FLOOR per element where the row is near 0 (a
                     * mean of many random V rows). */
                    const double re = sqrt(rnum / (rden > ROW_FLOOR * ROW_FLOOR * d ? rden : ROW_FLOOR * ROW_FLOOR * d));
                    if (re > worst)
                        worst = re, wb = b, wh = h, wr = r;
                    if (c->no_lse)
                        continue;
                    if (isinf(lr) || isinf(lg)) {
                        if (lr != lg && !bad++)
                            snprintf(why, sizeof why, "LSE[%lld,%lld,%lld] = %g, ref %g", (long long)b,
                                     (long long)h, (long long)r, lg, lr);
                    } else {
                        double e = fabs(lg - lr) / (fabs(lr) > 1 ? fabs(lr) : 1);
                        if (isnan(e) && !bad++)
                            snprintf(why, sizeof why, "LSE NaN at row %lld", (long long)r);
                        if (e > lerr)
                            lerr = e;
                    }
                }
        /* Bytes between rows of a padded layout stay as poisoned. */
        if (c->layout == 2)
            for (int64_t i = 0; i < on && !bad; i++) {
                int64_t x = i % os[2];
                if (x >= d && !isnan(test_get(o, t, i)) && !bad++)
                    snprintf(why, sizeof why, "element %lld outside O was written", (long long)i);
            }
        const double rel = den > 0 ? sqrt(num / den) : sqrt(num);
        const double otol = t == SPAT_BF16 ? 1e-2 : t == SPAT_F16 ? 5e-3 : 1e-5;
        const double rtol = t == SPAT_BF16 ? 2.5e-2 : t == SPAT_F16 ? 1e-2 : 5e-5;
        const double ltol = t == SPAT_F32 ? 1e-5 : 1e-3;
        const bool ok = !bad && rel < otol && worst < rtol && lerr < ltol;
        printf("%s %-44s rel %.2e  row %.2e  lse %.2e%s%s\n", ok ? "ok  " : "FAIL", c->label, rel,
               worst, lerr, why[0] ? "  " : "", why);
        if (!ok)
            printf("     worst row: batch %lld head %lld row %lld (of %d), error %.2e, LSE %g (ref %g)\n",
                   (long long)wb, (long long)wh, (long long)wr, sq[wb], worst,
                   gl[(wb * Hq + wh) * Nq + wr], rl[(wb * Hq + wh) * Nq + wr]);
        ok ? npass++ : nfail++;
    }
    cu->MemFree(dq);
    cu->MemFree(dk);
    cu->MemFree(dv);
    cu->MemFree(dout);
    cu->MemFree(dl);
    spat_kernel_free(kern);
out:
    free(q), free(k), free(v), free(o), free(rq), free(rk), free(rv), free(ro), free(rl), free(gl);
    free(sq), free(sk), free(qo);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (fread(s, 1, (size_t)n, f) != (size_t)n)
        n = 0;
    s[n] = 0;
    fclose(f);
    return s;
}

/* SPAT_CUDA_ARCH: a target this GPU cannot run is refused before anything
 * is written; one it can run (its own, without the `a` features) works. */
static void check_arch_env(void)
{
    CUdevice dev;
    int major = 0, minor = 0;
    CK(cu->CtxGetDevice(&dev));
    CK(cu->DeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev));
    CK(cu->DeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev));
    char bad[3][16], good[16];
    snprintf(bad[0], sizeof bad[0], "sm_%d%d", major + 1, 0); /* a newer generation */
    snprintf(bad[1], sizeof bad[1], "sm_%d%d", major, minor + 1);
    snprintf(bad[2], sizeof bad[2], "sm_%d%dx", major, minor);
    snprintf(good, sizeof good, "sm_%d%d", major, minor);
    const int64_t n = 70, d = 64;
    const size_t bytes = (size_t)(n * d * 2);
    CUdeviceptr dq = dalloc(bytes), dout = dalloc(bytes);
    unsigned char *h = calloc(bytes, 1);
    CK(cu->MemcpyHtoDAsync(dq, h, bytes, NULL));
    memset(h, 0x5a, bytes);
    for (int i = 0; i < 4; i++) {
        spat_kernel *k = NULL;
        if (spat_compile("pattern p { window 4; }", NULL, NULL, &k) != SPAT_OK) {
            printf("FAIL arch env: compile: %s\n", spat_last_error());
            nfail++;
            break;
        }
        const char *arch = i < 3 ? bad[i] : good;
        setenv("SPAT_CUDA_ARCH", arch, 1);
        CK(cu->MemcpyHtoDAsync(dout, h, bytes, NULL));
        CK(cu->StreamSynchronize(NULL));
        spat_forward_args g;
        spat_forward_args_init(&g, 1, 1, 1, n, n, d);
        g.device = SPAT_DEVICE_CUDA;
        g.dtype = SPAT_BF16;
        g.q = g.k = g.v = (void *)(uintptr_t)dq;
        g.o = (void *)(uintptr_t)dout;
        const int rc = spat_forward(k, &g);
        CK(cu->CtxSynchronize());
        unsigned char first = 0;
        CK(cu->MemcpyDtoH(&first, dout, 1));
        const bool want_ok = i == 3;
        if (want_ok ? rc != SPAT_OK : rc != SPAT_EDEVICE || first != 0x5a) {
            printf("FAIL arch env SPAT_CUDA_ARCH=%s: rc %d (%s), O[0] byte %#x\n", arch, rc,
                   rc ? spat_last_error() : "ok", first);
            nfail++;
        } else {
            printf("ok   arch env SPAT_CUDA_ARCH=%s: %s\n", arch, rc ? spat_last_error() : "runs");
            npass++;
        }
        spat_kernel_free(k);
    }
    unsetenv("SPAT_CUDA_ARCH");
    free(h);
    CK(cu->MemFree(dq));
    CK(cu->MemFree(dout));
}

static const char *dtname(int t) { return t == SPAT_F32 ? "f32" : t == SPAT_F16 ? "f16" : "bf16"; }

/* A case with softmax scale `scale` (0: the default). */
static void one_scaled(const char *src, const char *name, int64_t heads, int64_t batch, int64_t hkv,
                       int64_t nq, int64_t nk, int64_t qoff, int64_t d, int dtype, bool varlen, int lay,
                       bool no_lse, float scale)
{
    char label[160], sc[32] = "";
    if (scale != 0.f)
        snprintf(sc, sizeof sc, " scale %g", (double)scale);
    snprintf(label, sizeof label, "%s %s d%lld B%lld H%lld/%lld N%lld/%lld%s%s%s%s%s", name,
             dtname(dtype), (long long)d, (long long)batch, (long long)heads, (long long)hkv,
             (long long)nq, (long long)nk, qoff ? " off" : "", varlen ? " varlen" : "",
             lay == 1 ? " bshd" : lay == 2 ? " padded" : "", no_lse ? " nolse" : "", sc);
    if (filter && !strstr(label, filter))
        return;
    if (ncase++ % shard_n != shard_i)
        return;
    running_len = (size_t)snprintf(running, sizeof running, "TIMEOUT %s\n", label);
    if (running_len >= sizeof running)
        running_len = sizeof running - 1;
    alarm(case_timeout);
    gpu_case c = {.src = src, .label = label, .batch = batch, .hq = heads, .hkv = hkv, .nq = nq,
               .nk = nk, .d = d, .qoff = qoff, .dtype = dtype, .varlen = varlen, .no_lse = no_lse,
               .scale = scale, .layout = lay};
    run_case(&c);
    alarm(0);
}

static void one(const char *src, const char *name, int64_t heads, int64_t batch, int64_t hkv,
                int64_t nq, int64_t nk, int64_t qoff, int64_t d, int dtype, bool varlen, int lay,
                bool no_lse)
{
    one_scaled(src, name, heads, batch, hkv, nq, nk, qoff, d, dtype, varlen, lay, no_lse, 0.f);
}

/* Heads a pattern describes (0: any). */
static int64_t pattern_heads(const char *src)
{
    spat_kernel *k;
    if (spat_compile(src, NULL, NULL, &k) != SPAT_OK)
        return 0;
    int64_t h = spat_kernel_heads(k);
    spat_kernel_free(k);
    return h;
}

int main(int argc, char **argv)
{
    bool small = false, extra = false;
    uint64_t seed = (uint64_t)time(NULL);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--small"))
            small = true;
        else if (!strcmp(argv[i], "--extra"))
            extra = true;
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--filter") && i + 1 < argc)
            filter = argv[++i];
        else if (!strcmp(argv[i], "--shard") && i + 1 < argc) {
            char end = 0;
            if (sscanf(argv[++i], "%ld/%ld%c", &shard_i, &shard_n, &end) != 2 || shard_n < 1 || shard_i < 0 ||
                shard_i >= shard_n) {
                fprintf(stderr, "--shard %s: want I/N with 0 <= I < N\n", argv[i]);
                return 2;
            }
        } else {
            fprintf(stderr, "test_gpu: unknown argument %s (see the comment at the top of test_gpu.c)\n",
                    argv[i]);
            return 2;
        }
    }
    /* Line-buffered, so that the log of a shard killed from outside still
     * holds every finished case. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (getenv("SPAT_GPU_CASE_TIMEOUT"))
        case_timeout = (unsigned)strtoul(getenv("SPAT_GPU_CASE_TIMEOUT"), NULL, 10);
    signal(SIGALRM, on_alarm);
    test_rng_set(seed);
    printf("seed %llu\n", (unsigned long long)seed);
    if (!(cu = sp_cu_get())) {
        fprintf(stderr, "%s\n", spat_last_error());
        return 2;
    }
    CUdevice dev;
    CUcontext ctx;
    CK(cu->DeviceGet(&dev, 0));
    CK(cu->DevicePrimaryCtxRetain(&ctx, dev));
    CK(cu->CtxSetCurrent(ctx));
    const char *srcdir = getenv("SPAT_SRCDIR") ? getenv("SPAT_SRCDIR") : ".";
    static const char *const suite[] = {"dense", "causal", "window256", "causal_window1024",
                                        "longformer", "bigbird", "dilated4", "strided128",
                                        "fixed128", "logsparse", "longformer_dilated", "longnet"};
    enum { NS = sizeof suite / sizeof *suite };
    char *ssrc[NS];
    for (int i = 0; i < NS; i++) {
        char p[1024];
        snprintf(p, sizeof p, "%s/patterns/%s.spat", srcdir, suite[i]);
        if (!(ssrc[i] = slurp(p))) {
            fprintf(stderr, "cannot read %s\n", p);
            return 2;
        }
    }
    /* Random blocks among small blocks, rule by rule (--extra). */
    static const char *const bis[] = {
        "pattern a { block 4; window 2 blocks; global first 1 blocks; random 30 blocks seed 1; }",
        "pattern b { block 4; random 30 blocks seed 1; }",
        "pattern c { block 4; window 2 blocks; random 30 blocks seed 1; }",
        "pattern d { block 4; global first 1 blocks; random 30 blocks seed 1; }",
        "pattern e { block 4; window 2 blocks; global first 1 blocks; }",
        "pattern f { block 4; global cols first 1 blocks; random 30 blocks seed 1; }",
        "pattern g { block 4; global rows first 1 blocks; random 30 blocks seed 1; }",
    };
    if (extra) {
        static const int64_t n[] = {64, 65, 66, 129};
        for (size_t i = 0; i < sizeof bis / sizeof *bis; i++)
            for (size_t l = 0; l < 4; l++) {
                char name[8] = {'b', 'i', 's', (char)('a' + i), 0};
                one(bis[i], name, 1, 1, 1, n[l], n[l], 0, 64, SPAT_BF16, false, 0, false);
                one(bis[i], name, 1, 1, 1, n[l], n[l], 0, 64, SPAT_F32, false, 0, false);
            }
    } else if (small) {
        check_arch_env();
        /* direct (gather + band + rows), remap merge, remap store, random, f32 */
        one(ssrc[4], "longformer", 2, 1, 1, 200, 200, 0, 64, SPAT_BF16, false, 0, false);
        one(ssrc[7], "strided128", 2, 1, 1, 300, 300, 0, 64, SPAT_BF16, false, 0, true);
        one(ssrc[6], "dilated4", 2, 1, 1, 130, 130, 0, 64, SPAT_BF16, false, 2, false);
        one(ssrc[5], "bigbird", 2, 1, 1, 300, 300, 0, 64, SPAT_BF16, false, 0, false);
        one(ssrc[8], "fixed128", 2, 2, 1, 200, 260, 0, 64, SPAT_F16, true, 0, false);
        one(ssrc[4], "longformer", 2, 1, 1, 100, 100, 0, 64, SPAT_F32, false, 0, false);
        /* two compute warpgroups on shared tiles (SP_WG), at d = 128 with
         * K and V handed over apart (SP_SPLIT), three for dense at d = 64,
         * all with a producer warpgroup (SP_PWG) */
        one(ssrc[3], "causal_window1024", 2, 1, 1, 300, 300, 0, 64, SPAT_BF16, false, 0, false);
        one(ssrc[1], "causal", 2, 1, 1, 300, 300, 0, 128, SPAT_BF16, false, 0, false);
        one(ssrc[0], "dense", 2, 1, 1, 400, 400, 0, 64, SPAT_BF16, false, 0, false);
        /* random blocks drawn among small ones, a partial last block: the
         * draw's shuffles and barriers (synccheck found a divergent warp
         * there once) */
        one(bis[0], "bisa", 2, 1, 1, 65, 65, 0, 64, SPAT_BF16, false, 0, false);
    } else {
        for (int i = 0; i < NS; i++) {
            int64_t h = pattern_heads(ssrc[i]);
            int64_t H = h ? h : 2;
            one(ssrc[i], suite[i], H, 1, 1, 1000, 1000, 0, 64, SPAT_BF16, false, 0, false);
            one(ssrc[i], suite[i], H, 1, 1, 2500, 2500, 0, 128, SPAT_BF16, false, 0, false);
            one(ssrc[i], suite[i], H, 1, 1, 65, 65, 0, 64, SPAT_F16, false, 0, false);
            one(ssrc[i], suite[i], H, 1, 1, 300, 300, 0, 64, SPAT_F32, false, 0, false);
            one(ssrc[i], suite[i], h ? h : 8, 2, h ? h / 4 : 2, 300, 1100, 0, 64, SPAT_BF16, true, 0,
                false);
            one(ssrc[i], suite[i], H, 1, 1, 70, 1000, 930, 128, SPAT_BF16, false, 0, false);
        }
        /* Random blocks past the 64 answers that each thread of the draw
         * keeps as bits (sp_random_draw tests them again): more than
         * 64 x 32 blocks for the producer warp, 64 x 128 for the four
         * warps of the mma.sync tiles. */
        one("pattern h { block 1; random 3 blocks seed 5; }", "rnd_far", 1, 1, 1, 8300, 8300, 0, 64,
            SPAT_BF16, false, 0, false);
        one("pattern h { block 2; window 1 blocks; random 2 blocks seed 9; }", "rnd_far_w", 2, 1, 1, 4200,
            4200, 0, 128, SPAT_BF16, false, 0, false);
        /* Global rows over more items than one wave of persistent CTAs
         * (132 SMs: 264-528), so that the rows pass doubles its chunk of
         * keys (rows_chunk), at d = 128 up to one chunk for the whole row. */
        one(ssrc[5], "bigbird", 64, 2, 64, 3000, 3000, 0, 64, SPAT_BF16, false, 0, false);
        one(ssrc[5], "bigbird", 64, 2, 16, 3000, 3000, 0, 128, SPAT_BF16, false, 0, false);
        /* Layouts and a missing LSE on the passes that merge. */
        for (int i = 4; i <= 8; i++) {
            one(ssrc[i], suite[i], 4, 2, 2, 333, 333, 0, 64, SPAT_BF16, false, 1, false);
            one(ssrc[i], suite[i], 2, 1, 1, 333, 333, 0, 64, SPAT_BF16, false, 2, true);
            one(ssrc[i], suite[i], 2, 1, 1, 200, 200, 0, 128, SPAT_F32, false, 1, true);
        }
        /* Other softmax scales: the tensor kernels scale in the exponent
         * and take a negative scale by negating Q; a denormal one (which
         * they raise to the least normal float) must still give uniform
         * weights; a large one moves rows' maxima by more than SP_SLACK
         * after their first tile, so that O is rescaled there. */
        static const float scales[] = {-0.2f, 1e-39f, 0.5f, 4.0f};
        static const int passes[] = {1, 4, 6}; /* direct, gather + rows, remap */
        for (size_t i = 0; i < sizeof passes / sizeof *passes; i++)
            for (size_t x = 0; x < sizeof scales / sizeof *scales; x++) {
                const int j = passes[i];
                const float sc = scales[x];
                one_scaled(ssrc[j], suite[j], 2, 1, 1, 333, 333, 0, 64, SPAT_BF16, false, 0, false, sc);
                one_scaled(ssrc[j], suite[j], 2, 1, 1, 200, 200, 0, 128, SPAT_BF16, false, 0, false, sc);
                one_scaled(ssrc[j], suite[j], 2, 1, 1, 150, 150, 0, 64, SPAT_F32, false, 0, false, sc);
            }
        /* Head dims off the wgmma path: K/V copies whose offsets step by
         * rows (32), the element-wise staging (96), per-row offsets (256). */
        static const int64_t odims[] = {32, 96, 256};
        for (size_t i = 0; i < sizeof passes / sizeof *passes; i++)
            for (size_t x = 0; x < sizeof odims / sizeof *odims; x++) {
                const int j = passes[i];
                one(ssrc[j], suite[j], 2, 1, 1, 150, 150, 0, odims[x], SPAT_BF16, false, 0, false);
                one(ssrc[j], suite[j], 2, 1, 1, 70, 70, 0, odims[x], SPAT_F32, false, 0, false);
            }
        /* Every rule pattern at awkward lengths, and in other dtypes and
         * head dims in rotation. */
        static const int64_t lens[] = {1, 7, 63, 65, 200, 1000};
        for (int i = 0; i < n_rule_patterns; i++) {
            int64_t h = pattern_heads(rule_patterns[i]);
            int64_t H = h ? h : 2;
            char name[32];
            snprintf(name, sizeof name, "rule%02d", i);
            for (size_t l = 0; l < sizeof lens / sizeof *lens; l++)
                one(rule_patterns[i], name, H, 1, 1, lens[l], lens[l], 0, 64, SPAT_BF16, false, 0,
                    false);
            const int dt[] = {SPAT_F32, SPAT_F16, SPAT_BF16};
            one(rule_patterns[i], name, H, 1, 1, 150, 150, 0, i % 2 ? 128 : 64, dt[i % 3], false,
                i % 3, i % 4 == 0);
            one(rule_patterns[i], name, h ? h : 4, 3, h ? 1 : 2, 90, 240, 0, 64, SPAT_BF16, true, 0,
                false);
            one(rule_patterns[i], name, H, 1, 1, 33, 400, 367, 64, SPAT_F32, false, 0, false);
        }
    }
    printf("%d passed, %d failed (seed %llu)\n", npass, nfail, (unsigned long long)seed);
    for (int i = 0; i < NS; i++)
        free(ssrc[i]);
    return nfail ? 1 : 0;
}
