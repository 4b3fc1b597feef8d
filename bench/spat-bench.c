/* spat-bench: the CPU backend's speed on one pattern, with its peers
 * measured in the same process.
 *
 *   spat-bench PATTERN.spat|KERNEL.so [--pattern NAME] [-n N] [-d D] [-H H]
 *              [--threads T] [--reps R] [--seed S] [--no-check] [--no-dense]
 *              [--no-sgemm] [--backward] [--backend auto|cpu|reference] [--json]
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
 * ratios. --json prints one JSON object instead of the text.
 *
 * --backward then times spat_backward on the same Q, K, V with the
 * forward's O and LSE and a random dO (backend --backend: auto, cpu or
 * reference; auto by default), and prints the median of R runs, the useful
 * backward GFLOP/s (10 * d * pairs per head: 2.5 times the forward's), its
 * ratio to the forward's useful GFLOP/s, the worst per-row relative error
 * against the reference backward (max over rows of max|err| / max|ref| of
 * the row; dQ of three blocks of 32 query rows of every head, run through
 * the reference as chunks at their q_offset, and dQ, dK, dV of a separate
 * full call at N = min(N, 512)), and the peak resident memory the call adds
 * (peak_rss_added below says how). */
#include "config.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <malloc.h> /* malloc_trim */
#endif

#include <spat.h>

typedef struct opts {
    const char *file, *pattern;
    int64_t N, d, H;
    int threads, reps;
    uint64_t seed;
    int check, dense, sgemm, json;
    int backward;
    spat_backend backend; /* of the backward */
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
          "                  [--no-sgemm] [--backward] [--backend auto|cpu|reference]\n"
          "                  [--json]\n",
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
        else if (!strcmp(a, "--backward"))
            o->backward = 1;
        else if (!strcmp(a, "--backend") && v) {
            if (!strcmp(v, "auto"))
                o->backend = SPAT_BACKEND_AUTO;
            else if (!strcmp(v, "cpu"))
                o->backend = SPAT_BACKEND_CPU;
            else if (!strcmp(v, "reference"))
                o->backend = SPAT_BACKEND_REFERENCE;
            else
                return -1;
            i++;
        }
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
    const float *dout;     /* the backward's inputs and outputs (--backward) */
    float *dq, *dk, *dv;
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

/* ================================================================ backward */

static void bargs(const run *r, spat_backward_args *b, spat_backend be)
{
    spat_backward_args_init(b, 1, r->o->H, r->o->H, r->o->N, r->o->N, r->o->d);
    b->q = r->q, b->k = r->k, b->v = r->v, b->o = r->out, b->dout = r->dout, b->lse = r->lse;
    b->dq = r->dq, b->dk = r->dk, b->dv = r->dv;
    b->backend = be;
    b->threads = r->o->threads;
}

static const char *backend_name(spat_backend be)
{
    return be == SPAT_BACKEND_CPU ? "cpu" : be == SPAT_BACKEND_REFERENCE ? "reference" : "auto";
}

/* A line "Key:   123 kB" of /proc/self/status, in kB (-1: none). */
static long long status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long long v = -1;
    size_t n = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, n) && line[n] == ':') {
            v = atoll(line + n + 1);
            break;
        }
    fclose(f);
    return v;
}

/* Resets the resident high-water mark (VmHWM) to the current resident
 * size: "5" to /proc/self/clear_refs (Linux 4.0 on). 0 on success. */
static int reset_hwm(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f)
        return -1;
    int bad = fputs("5", f) < 0;
    bad |= fclose(f) != 0;
    return bad ? -1 : 0;
}

/* How the peak resident memory a call adds is measured.
 *
 * Before the call, malloc_trim(0) hands the free pages of every malloc
 * arena back to the kernel, so that the call cannot reuse memory that
 * something earlier freed (the forward, the checks) without it showing as
 * new resident pages. Then "5" written to /proc/self/clear_refs resets the
 * process's resident high-water mark (VmHWM) to its resident size; VmRSS,
 * read next, is the base, and VmHWM read after the call is the call's peak:
 * the difference is the most the call had resident beyond what was there
 * (its scratch, the stacks its threads touched), not the caller's buffers,
 * which are touched before. getrusage's ru_maxrss is the same mark but
 * keeps the peaks of exited threads, which clear_refs does not reset, so
 * VmHWM is read. Where clear_refs cannot be written, VmHWM after minus
 * VmRSS before is still the call's peak when the call raised the mark;
 * when it did not, the peak hid under an earlier one and is unknown. */
typedef struct rss_probe {
    long long base_kb, hwm0_kb;
    int reset;
} rss_probe;

static void rss_before(rss_probe *p)
{
#ifdef __GLIBC__
    malloc_trim(0);
#endif
    p->hwm0_kb = status_kb("VmHWM");
    p->reset = reset_hwm() == 0;
    p->base_kb = status_kb("VmRSS");
}

/* MiB the call added at its peak; NAN when it cannot be known. */
static double rss_after(const rss_probe *p)
{
    long long hwm = status_kb("VmHWM");
    if (p->base_kb < 0 || hwm < 0 || (!p->reset && hwm <= p->hwm0_kb))
        return NAN;
    return (double)(hwm > p->base_kb ? hwm - p->base_kb : 0) / 1024.0;
}

/* Median seconds of reps backward passes with backend be. The first call
 * is measured for memory (*peak_mib) and counts as warm-up, which goes on
 * for at least a quarter of a second; *ran gets the backend that ran (for
 * AUTO: the CPU backend when it takes the call, else the reference). */
static double time_backward(const spat_kernel *k, const run *r, spat_backend be, int reps,
                            double *peak_mib, spat_backend *ran)
{
    spat_backward_args b;
    bargs(r, &b, be);
    rss_probe p;
    rss_before(&p);
    double t0 = now();
    if (spat_backward(k, &b)) {
        fprintf(stderr, "spat-bench: backward (%s): %s\n", backend_name(be), spat_last_error());
        return -1;
    }
    *peak_mib = rss_after(&p);
    *ran = be;
    if (be == SPAT_BACKEND_AUTO) {
        /* AUTO runs the fastest backend with backward code: on host memory
         * the CPU backend when it has it, else the reference. */
        spat_backward_args c = b;
        c.backend = SPAT_BACKEND_CPU;
        *ran = spat_backward(k, &c) == SPAT_OK ? SPAT_BACKEND_CPU : SPAT_BACKEND_REFERENCE;
    }
    while (now() - t0 < 0.25)
        spat_backward(k, &b);
    double *t = malloc(sizeof *t * (size_t)reps);
    for (int i = 0; i < reps; i++) {
        double t1 = now();
        spat_backward(k, &b);
        t[i] = now() - t1;
    }
    double m = median(t, reps);
    free(t);
    return m;
}

/* The worst relative error of a row: max over the rows of
 * max|got - want| / max|want| of the row (a row whose reference is all
 * zero counts its max|got|); INFINITY when a value is not a number. */
static double row_err(const float *got, const float *want, int64_t rows, int64_t d)
{
    double worst = 0;
    for (int64_t x = 0; x < rows; x++) {
        double e = 0, m = 0;
        for (int64_t t = 0; t < d; t++) {
            double g = got[x * d + t], w = want[x * d + t], diff = fabs(g - w);
            if (isnan(diff))
                return INFINITY;
            e = diff > e ? diff : e;
            m = fabs(w) > m ? fabs(w) : m;
        }
        double re = m > 0 ? e / m : e;
        worst = re > worst ? re : worst;
    }
    return worst;
}

typedef struct bwd_err {
    double dq_rows;       /* dQ of the full call, blocks of rows vs the reference */
    double dq, dk, dv;    /* the full call at N = n_small vs the reference */
    int64_t n_small;
} bwd_err;

static float *falloc(size_t n) { return malloc(sizeof(float) * (n ? n : 1)); }

/* The backward checked against the reference backward, two ways:
 *  - dQ of the timed call's last run, three blocks of 32 query rows (start,
 *    middle, end) of every head, against the reference run on just those
 *    rows (seq_q = 32, q_offset = r0, Q, O, dO and LSE read in place): a
 *    row's dQ depends on that row alone (and all of K, V), so the chunk's
 *    dQ must equal the full call's rows;
 *  - dQ, dK and dV of a separate full call at N = min(N, 512) on fresh data
 *    (O and LSE from the CPU forward), the backend under test and the
 *    reference given the same inputs: dK and dV sum over every query row,
 *    which no chunk of rows can check.
 * Returns 0, or -1 on failure. */
static int check_backward(const spat_kernel *k, const run *r, spat_backend be, bwd_err *out)
{
    const opts *o = r->o;
    const int64_t H = o->H, N = o->N, d = o->d;
    const int64_t rows = N < 32 ? N : 32;
    const int64_t starts[3] = {0, (N - rows) / 2, N - rows};
    int rc = -1;
    float *cdq = falloc((size_t)(H * rows * d)), *cdk = falloc((size_t)(H * N * d)),
          *cdv = falloc((size_t)(H * N * d));
    *out = (bwd_err){0};
    if (!cdq || !cdk || !cdv)
        goto done_a;
    for (int si = 0; si < 3; si++) {
        int64_t r0 = starts[si];
        spat_backward_args full, b;
        bargs(r, &full, SPAT_BACKEND_REFERENCE);
        spat_backward_args_init(&b, 1, H, H, rows, N, d);
        memcpy(b.q_stride, full.q_stride, sizeof b.q_stride);
        memcpy(b.o_stride, full.o_stride, sizeof b.o_stride);
        memcpy(b.dout_stride, full.dout_stride, sizeof b.dout_stride);
        memcpy(b.lse_stride, full.lse_stride, sizeof b.lse_stride);
        b.q = r->q + r0 * d, b.k = r->k, b.v = r->v, b.o = r->out + r0 * d;
        b.dout = r->dout + r0 * d, b.lse = r->lse + r0;
        b.dq = cdq, b.dk = cdk, b.dv = cdv;
        b.q_offset = r0;
        b.backend = SPAT_BACKEND_REFERENCE;
        b.threads = o->threads;
        if (spat_backward(k, &b)) {
            fprintf(stderr, "spat-bench: reference backward: %s\n", spat_last_error());
            goto done_a;
        }
        for (int64_t h = 0; h < H; h++) {
            double e = row_err(r->dq + (h * N + r0) * d, cdq + h * rows * d, rows, d);
            out->dq_rows = e > out->dq_rows ? e : out->dq_rows;
        }
    }
    rc = 0;
done_a:
    free(cdq), free(cdk), free(cdv);
    if (rc)
        return rc;

    /* The full call at a small N. */
    rc = -1;
    opts o2 = *o;
    o2.N = N < 512 ? N : 512;
    out->n_small = o2.N;
    size_t n = (size_t)(H * o2.N * d);
    float *buf[12];
    int nb = 0;
    for (; nb < 12; nb++)
        if (!(buf[nb] = falloc(nb == 4 ? (size_t)(H * o2.N) : n)))
            break;
    if (nb == 12) {
        run s = {.o = &o2, .q = buf[0], .k = buf[1], .v = buf[2], .out = buf[3], .lse = buf[4],
                 .dout = buf[5], .dq = buf[6], .dk = buf[7], .dv = buf[8]};
        uint64_t seed = o->seed ^ 0x5bd1e995u;
        fill(buf[0], n, &seed), fill(buf[1], n, &seed), fill(buf[2], n, &seed);
        fill(buf[5], n, &seed);
        spat_forward_args a;
        args(&s, &a, SPAT_BACKEND_CPU);
        spat_backward_args b;
        if (spat_forward(k, &a)) {
            fprintf(stderr, "spat-bench: forward at N = %lld: %s\n", (long long)o2.N,
                    spat_last_error());
        } else if (bargs(&s, &b, be), spat_backward(k, &b)) {
            fprintf(stderr, "spat-bench: backward (%s) at N = %lld: %s\n", backend_name(be),
                    (long long)o2.N, spat_last_error());
        } else {
            b.dq = buf[9], b.dk = buf[10], b.dv = buf[11];
            b.backend = SPAT_BACKEND_REFERENCE;
            if (spat_backward(k, &b)) {
                fprintf(stderr, "spat-bench: reference backward at N = %lld: %s\n",
                        (long long)o2.N, spat_last_error());
            } else {
                out->dq = row_err(buf[6], buf[9], H * o2.N, d);
                out->dk = row_err(buf[7], buf[10], H * o2.N, d);
                out->dv = row_err(buf[8], buf[11], H * o2.N, d);
                rc = 0;
            }
        }
    } else {
        fputs("spat-bench: out of memory\n", stderr);
    }
    while (nb > 0)
        free(buf[--nb]);
    return rc;
}

static double max4(double a, double b, double c, double d)
{
    double m = a > b ? a : b;
    m = c > m ? c : m;
    return d > m ? d : m;
}

/* A JSON number, or null where it is not finite. */
static void json_num(const char *key, const char *fmt, double v)
{
    printf(", \"%s\": ", key);
    if (isfinite(v))
        printf(fmt, v);
    else
        fputs("null", stdout);
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
    /* The backward, before sgemm and the dense kernel so that its memory is
     * measured right after the forward's. */
    double bt = -1, bwd_rate = 0, bwd_peak = NAN, bwd_worst = NAN;
    spat_backend bwd_ran = o.backend;
    bwd_err be = {0};
    float *dout = NULL;
    if (o.backward) {
        dout = malloc(sizeof(float) * n);
        r.dq = malloc(sizeof(float) * n), r.dk = malloc(sizeof(float) * n);
        r.dv = malloc(sizeof(float) * n);
        if (!dout || !r.dq || !r.dk || !r.dv) {
            fputs("spat-bench: out of memory\n", stderr);
            return 1;
        }
        fill(dout, n, &s);
        r.dout = dout;
        /* Resident before the call, so that the memory measured is the call's. */
        memset(r.dq, 0, sizeof(float) * n), memset(r.dk, 0, sizeof(float) * n);
        memset(r.dv, 0, sizeof(float) * n);
        if ((bt = time_backward(k, &r, o.backend, o.reps, &bwd_peak, &bwd_ran)) < 0)
            return 1;
        bwd_rate = 10.0 * (double)o.d * (double)pairs / bt * 1e-9;
        if (o.check) {
            if (check_backward(k, &r, bwd_ran, &be))
                return 1;
            bwd_worst = max4(be.dq_rows, be.dq, be.dk, be.dv);
        }
    }
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
        if (o.backward) {
            printf(", \"bwd_backend\": \"%s\", \"bwd_ms\": %.4f, \"bwd_gflops\": %.2f, "
                   "\"bwd_over_fwd\": %.4f", backend_name(bwd_ran), bt * 1e3, bwd_rate,
                   bwd_rate / useful);
            if (o.check) {
                json_num("bwd_err", "%.3g", bwd_worst);
                json_num("bwd_err_dq_rows", "%.3g", be.dq_rows);
                json_num("bwd_err_dq", "%.3g", be.dq);
                json_num("bwd_err_dk", "%.3g", be.dk);
                json_num("bwd_err_dv", "%.3g", be.dv);
                printf(", \"bwd_check_n\": %lld", (long long)be.n_small);
            }
            json_num("bwd_peak_mib", "%.1f", bwd_peak);
        }
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
        if (o.backward) {
            printf("  backward   %.3f ms (median of %d, backend %s), %.1f useful GFLOP/s "
                   "(10 d pairs): %.2f of the forward's rate\n", bt * 1e3, o.reps,
                   backend_name(bwd_ran), bwd_rate, bwd_rate / useful);
            if (o.check)
                printf("  bwd check  worst row max|err| / max|ref| = %.3g: dQ %.3g (3 blocks of 32 "
                       "rows of every head, reference on those rows); dQ %.3g, dK %.3g, dV %.3g "
                       "(full call at N = %lld)\n", bwd_worst, be.dq_rows, be.dq, be.dk, be.dv,
                       (long long)be.n_small);
            printf("  bwd memory %.1f MiB peak resident added by the call (VmHWM - VmRSS)\n",
                   bwd_peak);
        }
    }
    spat_kernel_free(k);
    free(q), free(kk), free(v), free(r.out), free(r.lse);
    free(dout), free(r.dq), free(r.dk), free(r.dv);
    /* Exit 3 when a check fails: the forward's O beyond 1e-4 of the
     * reference, a backward row beyond 1e-3 (or not a number). */
    return err > 1e-4 || (o.backward && o.check && !(bwd_worst <= 1e-3)) ? 3 : 0;
}
