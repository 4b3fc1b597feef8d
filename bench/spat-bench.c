/* spat-bench: the CPU backend's speed on one pattern, with its peers
 * measured in the same process.
 *
 *   spat-bench PATTERN.spat|KERNEL.so [--pattern NAME] [-n N] [-d D] [-H H]
 *              [--threads T] [--reps R] [--seed S] [--no-check] [--no-dense]
 *              [--no-sgemm] [--json]
 *
 * For the pattern (JIT-compiled from a .spat file, or loaded from a
 * kernel.so) it runs the CPU backend on fresh random data (batch 1, H heads,
 * N tokens, head dim d, fp32, BHSD), checks rows of the result against the
 * reference backend (three blocks of 32 rows of every head, run through the
 * reference as chunks at their q_offset: the whole reference would take
 * minutes), and prints the median time of R runs and the useful GFLOP/s:
 * 4 * d * (attended pairs) per head, pairs actually attended.
 * With the same threads it then measures OpenBLAS sgemm on a 2048^3
 * product and the dense pattern's kernel on the same shape, and prints the
 * ratios. --json prints one JSON object instead of the text. */
#include "config.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <spat.h>

typedef struct opts {
    const char *file, *pattern;
    int64_t N, d, H;
    int threads, reps;
    uint64_t seed;
    int check, dense, sgemm, json;
} opts;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *t, int n)
{
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

static uint64_t rng(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [-1, 1). */
static void fill(float *x, size_t n, uint64_t *s)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)((double)(rng(s) >> 11) * 0x1p-52 - 1.0);
}

static int usage(void)
{
    fputs("usage: spat-bench PATTERN.spat|KERNEL.so [--pattern NAME] [-n N] [-d D] [-H H]\n"
          "                  [--threads T] [--reps R] [--seed S] [--no-check] [--no-dense]\n"
          "                  [--no-sgemm] [--json]\n",
          stderr);
    return 2;
}

static int parse(int argc, char **argv, opts *o)
{
    *o = (opts){.N = 16384, .d = 64, .H = 16, .threads = 0, .reps = 5, .check = 1, .dense = 1,
                .sgemm = 1};
    o->seed = (uint64_t)time(NULL);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--pattern") && v)
            o->pattern = v, i++;
        else if ((!strcmp(a, "-n") || !strcmp(a, "--seq-len")) && v)
            o->N = atoll(v), i++;
        else if ((!strcmp(a, "-d") || !strcmp(a, "--head-dim")) && v)
            o->d = atoll(v), i++;
        else if ((!strcmp(a, "-H") || !strcmp(a, "--heads")) && v)
            o->H = atoll(v), i++;
        else if (!strcmp(a, "--threads") && v)
            o->threads = atoi(v), i++;
        else if (!strcmp(a, "--reps") && v)
            o->reps = atoi(v), i++;
        else if (!strcmp(a, "--seed") && v)
            o->seed = strtoull(v, NULL, 0), i++;
        else if (!strcmp(a, "--no-check"))
            o->check = 0;
        else if (!strcmp(a, "--no-dense"))
            o->dense = 0;
        else if (!strcmp(a, "--no-sgemm"))
            o->sgemm = 0;
        else if (!strcmp(a, "--json"))
            o->json = 1;
        else if (a[0] != '-' && !o->file)
            o->file = a;
        else
            return -1;
    }
    if (!o->file || o->N < 1 || o->d < 8 || o->H < 1 || o->reps < 1 || o->threads < 0)
        return -1;
    return 0;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *s = malloc(cap);
    for (size_t r; s && (r = fread(s + n, 1, cap - n - 1, f)) > 0;) {
        n += r;
        if (n + 1 == cap) {
            char *g = realloc(s, cap *= 2);
            if (!g)
                free(s);
            s = g;
        }
    }
    fclose(f);
    if (s)
        s[n] = '\0';
    return s;
}

/* The kernel of the file (JIT for a .spat), and how long that took. */
static spat_kernel *get_kernel(const opts *o, double *seconds)
{
    spat_kernel *k = NULL;
    size_t len = strlen(o->file);
    double t0 = now();
    if (len > 3 && !strcmp(o->file + len - 3, ".so")) {
        if (spat_load(o->file, o->pattern, &k))
            fprintf(stderr, "spat-bench: %s\n", spat_last_error());
    } else {
        char *src = slurp(o->file);
        if (!src) {
            fprintf(stderr, "spat-bench: cannot read %s\n", o->file);
            return NULL;
        }
        int dims[1] = {(int)o->d};
        spat_compile_options co = {.head_dims = dims, .n_head_dims = 1, .filename = o->file};
        if (spat_compile(src, o->pattern, &co, &k))
            fprintf(stderr, "spat-bench: %s\n", spat_last_error());
        free(src);
    }
    *seconds = now() - t0;
    return k;
}

typedef struct run {
    const opts *o;
    const float *q, *k, *v;
    float *out, *lse;
} run;

static void args(const run *r, spat_forward_args *a, spat_backend be)
{
    spat_forward_args_init(a, 1, r->o->H, r->o->H, r->o->N, r->o->N, r->o->d);
    a->q = r->q, a->k = r->k, a->v = r->v, a->o = r->out, a->lse = r->lse;
    a->backend = be;
    a->threads = r->o->threads;
}

/* Median seconds of reps forward passes, after a warm-up of at least a
 * quarter of a second (clocks ramp up, pages are touched). */
static double time_forward(const spat_kernel *k, const run *r, int reps)
{
    spat_forward_args a;
    args(r, &a, SPAT_BACKEND_CPU);
    for (double t0 = now(), n = 0; n < 1 || now() - t0 < 0.25; n++)
        if (spat_forward(k, &a)) {
            fprintf(stderr, "spat-bench: %s\n", spat_last_error());
            return -1;
        }
    double *t = malloc(sizeof *t * (size_t)reps);
    for (int i = 0; i < reps; i++) {
        double t0 = now();
        spat_forward(k, &a);
        t[i] = now() - t0;
    }
    double m = median(t, reps);
    free(t);
    return m;
}

/* Blocks of rows (at the start, middle and end, every head) through the
 * reference backend, as chunks at their q_offset against all the keys,
 * compared with the CPU result. Returns the relative error of O over those
 * rows, or -1 on failure; *lse_err gets the largest LSE error. */
static double check(const spat_kernel *k, const run *r, double *lse_err)
{
    const opts *o = r->o;
    const int64_t rows = o->N < 32 ? o->N : 32;
    const int64_t starts[3] = {0, (o->N - rows) / 2, o->N - rows};
    float *ro = malloc(sizeof(float) * (size_t)(o->H * rows * o->d));
    float *rl = malloc(sizeof(float) * (size_t)(o->H * rows));
    double diff2 = 0, norm2 = 0;
    *lse_err = 0;
    for (int si = 0; si < 3 && ro && rl; si++) {
        int64_t r0 = starts[si];
        spat_forward_args a;
        args(r, &a, SPAT_BACKEND_REFERENCE);
        spat_forward_args full = a;
        spat_forward_args_init(&a, 1, o->H, o->H, rows, o->N, o->d);
        memcpy(a.q_stride, full.q_stride, sizeof a.q_stride);
        a.q = r->q + r0 * o->d, a.k = r->k, a.v = r->v, a.o = ro, a.lse = rl;
        a.q_offset = r0;
        a.backend = SPAT_BACKEND_REFERENCE;
        a.threads = o->threads;
        if (spat_forward(k, &a)) {
            fprintf(stderr, "spat-bench: reference: %s\n", spat_last_error());
            free(ro), free(rl);
            return -1;
        }
        for (int64_t h = 0; h < o->H; h++)
            for (int64_t x = 0; x < rows; x++) {
                const float *got = r->out + (h * o->N + r0 + x) * o->d, *want = ro + (h * rows + x) * o->d;
                for (int64_t t = 0; t < o->d; t++) {
                    double e = (double)got[t] - want[t];
                    diff2 += e * e;
                    norm2 += (double)want[t] * want[t];
                }
                float gl = r->lse[h * o->N + r0 + x], wl = rl[h * rows + x];
                double le = gl == wl ? 0 : fabs((double)gl - wl);
                if (!(le <= *lse_err))
                    *lse_err = le;
            }
    }
    free(ro);
    free(rl);
    return norm2 > 0 ? sqrt(diff2 / norm2) : sqrt(diff2);
}

/* OpenBLAS sgemm GFLOP/s on C = A B, 2048^3, with the given threads. */
static double sgemm_rate(int threads, int reps)
{
    const int n = 2048;
    float *A = malloc(sizeof(float) * (size_t)n * n), *B = malloc(sizeof(float) * (size_t)n * n),
          *C = malloc(sizeof(float) * (size_t)n * n);
    uint64_t s = 7;
    fill(A, (size_t)n * n, &s);
    fill(B, (size_t)n * n, &s);
    openblas_set_num_threads(threads);
    for (double t0 = now(), k = 0; k < 1 || now() - t0 < 0.25; k++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, A, n, B, n, 0, C, n);
    double *t = malloc(sizeof *t * (size_t)reps);
    for (int i = 0; i < reps; i++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, A, n, B, n, 0, C, n);
        t[i] = now() - t0;
    }
    double m = median(t, reps);
    free(t), free(A), free(B), free(C);
    return 2.0 * n * n * (double)n / m * 1e-9;
}

int main(int argc, char **argv)
{
    opts o;
    if (parse(argc, argv, &o))
        return usage();
    if (o.threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        o.threads = n > 0 ? (int)n : 1;
    }
    double compile_s;
    spat_kernel *k = get_kernel(&o, &compile_s);
    if (!k)
        return 1;
    if (spat_kernel_heads(k) > 0)
        o.H = spat_kernel_heads(k);
    int64_t pairs = 0;
    for (int64_t h = 0; h < o.H; h++) {
        int64_t p;
        if (spat_kernel_pairs(k, o.N, h, &p)) {
            fprintf(stderr, "spat-bench: %s\n", spat_last_error());
            return 1;
        }
        pairs += p;
    }
    size_t n = (size_t)(o.H * o.N * o.d);
    run r = {.o = &o};
    float *q = malloc(sizeof(float) * n), *kk = malloc(sizeof(float) * n), *v = malloc(sizeof(float) * n);
    r.out = malloc(sizeof(float) * n);
    r.lse = malloc(sizeof(float) * (size_t)(o.H * o.N));
    if (!q || !kk || !v || !r.out || !r.lse) {
        fputs("spat-bench: out of memory\n", stderr);
        return 1;
    }
    uint64_t s = o.seed;
    fill(q, n, &s);
    fill(kk, n, &s);
    fill(v, n, &s);
    r.q = q, r.k = kk, r.v = v;
    double t = time_forward(k, &r, o.reps);
    if (t < 0)
        return 1;
    double useful = 4.0 * (double)o.d * (double)pairs / t * 1e-9;
    double err = -1, lse_err = -1;
    if (o.check && (err = check(k, &r, &lse_err)) < 0)
        return 1;
    double gemm = o.sgemm ? sgemm_rate(o.threads, o.reps) : 0;
    double dense_t = -1, dense_rate = 0;
    if (o.dense) {
        int dims[1] = {(int)o.d};
        spat_compile_options co = {.head_dims = dims, .n_head_dims = 1};
        spat_kernel *dk;
        if (spat_compile("pattern dense { dense; }", NULL, &co, &dk)) {
            fprintf(stderr, "spat-bench: %s\n", spat_last_error());
            return 1;
        }
        /* The dense shape at heads H: the suite's dense kernel. */
        dense_t = time_forward(dk, &r, o.reps < 3 ? o.reps : 3);
        dense_rate = 4.0 * (double)o.d * (double)o.N * (double)o.N * (double)o.H / dense_t * 1e-9;
        spat_kernel_free(dk);
    }
    const char *name = spat_kernel_name(k);
    if (o.json) {
        printf("{\"pattern\": \"%s\", \"N\": %lld, \"d\": %lld, \"H\": %lld, \"threads\": %d, "
               "\"ms\": %.4f, \"pairs\": %lld, \"useful_gflops\": %.2f, \"compile_ms\": %.1f",
               name, (long long)o.N, (long long)o.d, (long long)o.H, o.threads, t * 1e3,
               (long long)pairs, useful, compile_s * 1e3);
        if (o.check)
            printf(", \"relerr\": %.3g, \"lse_err\": %.3g", err, lse_err);
        if (o.sgemm)
            printf(", \"sgemm_gflops\": %.2f, \"ratio_sgemm\": %.4f", gemm, useful / gemm);
        if (o.dense)
            printf(", \"dense_ms\": %.4f, \"dense_gflops\": %.2f", dense_t * 1e3, dense_rate);
        printf(", \"seed\": %llu}\n", (unsigned long long)o.seed);
    } else {
        printf("%s: N %lld, d %lld, H %lld, fp32, %d threads (seed %llu)\n", name, (long long)o.N,
               (long long)o.d, (long long)o.H, o.threads, (unsigned long long)o.seed);
        printf("  %s        %.1f ms\n", o.file[strlen(o.file) - 1] == 'o' ? "load" : "JIT ", compile_s * 1e3);
        printf("  time       %.3f ms (median of %d), %.4g pairs, %.1f useful GFLOP/s\n", t * 1e3,
               o.reps, (double)pairs, useful);
        if (o.check)
            printf("  check      |O - O_ref| / |O_ref| = %.3g, max |LSE - LSE_ref| = %.3g "
                   "(reference backend, 3 blocks of 32 rows of every head)\n", err, lse_err);
        if (o.sgemm)
            printf("  sgemm      %.1f GFLOP/s (OpenBLAS, 2048^3, %d threads): ratio %.2f\n", gemm,
                   o.threads, useful / gemm);
        if (o.dense)
            printf("  dense      %.3f ms, %.1f GFLOP/s (the dense pattern, same shape)\n", dense_t * 1e3,
                   dense_rate);
    }
    spat_kernel_free(k);
    free(q), free(kk), free(v), free(r.out), free(r.lse);
    return err > 1e-4 ? 3 : 0;
}
