/* spat-run: the main job end to end. Loads a kernel.so that spatc wrote,
 * runs one forward pass on random inputs through libspat, and prints what a
 * user wants to know: the shape, the work the pattern needs, the time and
 * the useful throughput, and how far the result is from libspat's
 * reference backend on the same inputs.
 *
 *   spat-run KERNEL.so [--pattern NAME] [--seq-len N] [--heads H] [--head-dim D]
 *            [--batch B] [--threads T] [--backend auto|reference|cpu] */
#include <spat.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* Standard normal numbers from a fixed xorshift stream (Box-Muller). */
static void randn(float *x, size_t n, uint64_t seed)
{
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < n; i += 2) {
        double u[2];
        for (int k = 0; k < 2; k++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            u[k] = ((s >> 11) + 0.5) * 0x1p-53;
        }
        double r = sqrt(-2 * log(u[0]));
        x[i] = (float)(r * cos(2 * M_PI * u[1]));
        if (i + 1 < n)
            x[i + 1] = (float)(r * sin(2 * M_PI * u[1]));
    }
}

static int fail(const char *what)
{
    fprintf(stderr, "spat-run: %s: %s\n", what, spat_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    const char *path = NULL, *name = NULL, *backend = "auto";
    long long N = 4096, H = 8, D = 64, Bt = 1, T = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--pattern") && v) name = v, i++;
        else if (!strcmp(a, "--seq-len") && v) N = atoll(v), i++;
        else if (!strcmp(a, "--heads") && v) H = atoll(v), i++;
        else if (!strcmp(a, "--head-dim") && v) D = atoll(v), i++;
        else if (!strcmp(a, "--batch") && v) Bt = atoll(v), i++;
        else if (!strcmp(a, "--threads") && v) T = atoll(v), i++;
        else if (!strcmp(a, "--backend") && v) backend = v, i++;
        else if (a[0] != '-' && !path) path = a;
        else {
            fprintf(stderr, "usage: spat-run KERNEL.so [--pattern NAME] [--seq-len N] [--heads H] "
                            "[--head-dim D] [--batch B] [--threads T] [--backend auto|reference|cpu]\n");
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "spat-run: no kernel.so given\n");
        return 2;
    }
    spat_kernel *k;
    if (spat_load(path, name, &k))
        return fail(path);
    if (spat_kernel_heads(k) > 0)
        H = spat_kernel_heads(k);

    int64_t pairs = 0;
    for (long long h = 0; h < H; h++) {
        int64_t p;
        if (spat_kernel_pairs(k, N, h, &p))
            return fail("pairs");
        pairs += p;
    }
    double flops = 4.0 * (double)D * (double)pairs * (double)Bt;

    size_t n = (size_t)(Bt * H * N * D);
    float *q = malloc(n * sizeof *q), *kk = malloc(n * sizeof *kk), *v = malloc(n * sizeof *v);
    float *o = malloc(n * sizeof *o), *ref = malloc(n * sizeof *ref);
    float *lse = malloc((size_t)(Bt * H * N) * sizeof *lse), *lref = malloc((size_t)(Bt * H * N) * sizeof *lref);
    if (!q || !kk || !v || !o || !ref || !lse || !lref) {
        fprintf(stderr, "spat-run: out of memory\n");
        return 1;
    }
    randn(q, n, 1);
    randn(kk, n, 2);
    randn(v, n, 3);

    spat_forward_args a;
    spat_forward_args_init(&a, Bt, H, H, N, N, D);
    a.q = q, a.k = kk, a.v = v, a.o = o, a.lse = lse;
    a.threads = (int)T;
    a.backend = !strcmp(backend, "reference") ? SPAT_BACKEND_REFERENCE
              : !strcmp(backend, "cpu")       ? SPAT_BACKEND_CPU
                                              : SPAT_BACKEND_AUTO;
    printf("%s: pattern %s, batch %lld, heads %lld, seq %lld, head dim %lld, fp32\n", path, spat_kernel_name(k),
           Bt, H, N, D);
    printf("  pairs      %.4g per head (density %.3g%%), %.3g GFLOP useful\n", (double)pairs / H,
           100.0 * (double)pairs / ((double)H * N * N), flops / 1e9);

    double best = INFINITY;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now();
        if (spat_forward(k, &a))
            return fail("forward");
        double t = now() - t0;
        best = t < best ? t : best;
    }
    printf("  time       %.2f ms (best of 3, backend %s)  %.2f useful GFLOP/s\n", best * 1e3, backend,
           flops / best / 1e9);

    a.o = ref, a.lse = lref, a.backend = SPAT_BACKEND_REFERENCE;
    if (spat_forward(k, &a))
        return fail("reference");
    double num = 0, den = 0, lerr = 0, sum = 0;
    for (size_t x = 0; x < n; x++) {
        num += (double)(o[x] - ref[x]) * (o[x] - ref[x]);
        den += (double)ref[x] * ref[x];
        sum += o[x];
    }
    for (size_t x = 0; x < (size_t)(Bt * H * N); x++)
        if (isfinite(lref[x]))
            lerr = fmax(lerr, fabs(lse[x] - lref[x]));
    printf("  check      |O - O_ref| / |O_ref| = %.2e, max |LSE - LSE_ref| = %.2e (reference backend)\n",
           den > 0 ? sqrt(num / den) : sqrt(num), lerr);
    printf("  output     checksum %.6f, O[0,0,0,0:4] = %.5f %.5f %.5f %.5f, LSE[0,0,0] = %.5f\n", sum, o[0], o[1],
           o[2], o[3], lse[0]);
    spat_kernel_free(k);
    free(q), free(kk), free(v), free(o), free(ref), free(lse), free(lref);
    return 0;
}
