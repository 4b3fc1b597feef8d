/* The smallest use of libspat: compile a pattern given as a string, in
 * process, run it on random data, print a checksum and the time.
 *
 *   cc jit.c $(pkg-config --cflags --libs spat) -o jit && ./jit */
#include <spat.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static const char *pattern = "pattern longformer { window 256; global 0..15; }";

int main(void)
{
    const int64_t B = 1, H = 4, N = 2048, D = 64;
    spat_kernel *k;
    if (spat_compile(pattern, NULL, NULL, &k) != SPAT_OK) {
        fprintf(stderr, "compile: %s\n", spat_last_error());
        return 1;
    }
    size_t n = (size_t)(B * H * N * D);
    float *q = malloc(n * sizeof *q), *kk = malloc(n * sizeof *kk), *v = malloc(n * sizeof *v);
    float *o = malloc(n * sizeof *o), *lse = malloc((size_t)(B * H * N) * sizeof *lse);
    srand(1);
    for (size_t x = 0; x < n; x++) {
        q[x] = (float)rand() / RAND_MAX - 0.5f;
        kk[x] = (float)rand() / RAND_MAX - 0.5f;
        v[x] = (float)rand() / RAND_MAX - 0.5f;
    }

    spat_forward_args a;
    spat_forward_args_init(&a, B, H, H, N, N, D);
    a.q = q;
    a.k = kk;
    a.v = v;
    a.o = o;
    a.lse = lse;

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = spat_forward(k, &a);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (rc != SPAT_OK) {
        fprintf(stderr, "forward: %s\n", spat_last_error());
        return 1;
    }
    double sum = 0;
    for (size_t x = 0; x < n; x++)
        sum += o[x];
    printf("%s: B=%lld H=%lld N=%lld d=%lld  checksum %.6f  lse[0] %.6f  %.2f ms\n", spat_kernel_name(k),
           (long long)B, (long long)H, (long long)N, (long long)D, sum, lse[0],
           (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6);
    spat_kernel_free(k);
    free(q);
    free(kk);
    free(v);
    free(o);
    free(lse);
    return 0;
}
