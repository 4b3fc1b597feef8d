/* The CUDA backend's launches, on a driver that runs nothing
 * (tests/fake_cuda.c, opened before libspat looks for libcuda.so.1): which
 * kernels go on which stream in which order, the rows pass's grid, the
 * fallback without a second stream, the error path, the remap passes'
 * order, and the cache of loaded modules. NVRTC compiles the kernels for the fake's sm_90a as for
 * a real GPU (skipped without NVRTC); the numbers the kernels would compute
 * are tests/gpu's. */
#include "config.h"

#include <check.h>
#include <dlfcn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_api.h"
#include "spat.h"
#include "testutil.h"

#ifndef FAKE_CUDA
#error "build with -DFAKE_CUDA=<path of the fake libcuda.so.1>"
#endif

static const char *(*fake_log)(void);
static void (*fake_clear)(void);
static void (*fake_fail_streams)(int);
static void (*fake_fail_launch)(const char *);
static int (*fake_alloc)(unsigned long long *, size_t);
static int (*fake_free)(unsigned long long);

static spat_kernel *compile_pattern(const char *name)
{
    const char *dir = getenv("SPAT_SRCDIR") ? getenv("SPAT_SRCDIR") : ".";
    char path[1024];
    snprintf(path, sizeof path, "%s/patterns/%s.spat", dir, name);
    char *src = test_slurp(path);
    static const int dims[] = {64};
    spat_compile_options o = {.head_dims = dims, .n_head_dims = 1};
    spat_kernel *k = NULL;
    ck_assert_msg(spat_compile(src, NULL, &o, &k) == SPAT_OK, "%s: %s", name, spat_last_error());
    free(src);
    return k;
}

/* One forward on the fake GPU: Q, K, V and O of the shape's size (the
 * backend checks that they do not overlap; nothing reads them), the
 * default stream, no LSE (the passes that merge get one in scratch). The
 * log then holds what the forward asked of the driver. */
static int forward(const spat_kernel *k, int64_t batch, int64_t heads, int64_t n, int64_t d, spat_dtype dt)
{
    static unsigned long long t[4];
    for (int i = 0; i < 4; i++)
        if (t[i])
            ck_assert(fake_free(t[i]) == 0);
    const size_t bytes = (size_t)(batch * heads * n * d) * (dt == SPAT_F32 ? 4 : 2);
    for (int i = 0; i < 4; i++)
        ck_assert(fake_alloc(&t[i], bytes) == 0);
    spat_forward_args a;
    spat_forward_args_init(&a, batch, heads, heads, n, n, d);
    a.dtype = dt;
    a.device = SPAT_DEVICE_CUDA;
    a.q = (const void *)(uintptr_t)t[0];
    a.k = (const void *)(uintptr_t)t[1];
    a.v = (const void *)(uintptr_t)t[2];
    a.o = (void *)(uintptr_t)t[3];
    fake_clear();
    return spat_forward(k, &a);
}

/* The log's lines, in order. */
typedef struct {
    char line[32][96];
    int n;
} lines;

static lines log_lines(void)
{
    lines L = {.n = 0};
    const char *p = fake_log();
    while (*p && L.n < 32) {
        const char *e = strchr(p, '\n');
        const size_t len = e ? (size_t)(e - p) : strlen(p);
        snprintf(L.line[L.n++], sizeof L.line[0], "%.*s", (int)len, p);
        p += len + (e != NULL);
    }
    return L;
}

/* The first line of the log at or after from (NULL: none) that starts
 * with prefix, into line; empty when there is none. */
static void line_from(const char *from, const char *prefix, char line[96])
{
    const char *p = from ? strstr(from, prefix) : NULL;
    snprintf(line, 96, "%.*s", p ? (int)strcspn(p, "\n") : 0, p ? p : "");
}

/* Does s end with suffix? */
static bool ends_with(const char *s, const char *suffix)
{
    const size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* Longformer's global rows (16) run on a stream of the kernel's own,
 * forked from the caller's after what it had queued, launched before the
 * direct pass, joined back before the merge; then the scratch goes. */
START_TEST(rows_pass_runs_beside_the_direct_pass)
{
    spat_kernel *k = compile_pattern("longformer");
    ck_assert_msg(forward(k, 1, 16, 16384, 64, SPAT_BF16) == SPAT_OK, "%s", spat_last_error());
    lines L = log_lines();
    int fork = 0, side = 0, fork2 = 0, grid = 0, side2 = 0, join = 0, side3 = 0, join2 = 0;
    ck_assert_msg(L.n >= 8, "%s", fake_log());
    int i = 0;
    while (i < L.n && (!strcmp(L.line[i], "load") || !strncmp(L.line[i], "tensor map ", 11)))
        i++;
    ck_assert_msg(sscanf(L.line[i], "record e%d on s0", &fork) == 1, "%s", fake_log());
    ck_assert_msg(sscanf(L.line[i + 1], "wait s%d for e%d", &side, &fork2) == 2 && side != 0 && fork2 == fork,
                  "%s", fake_log());
    /* 1 row tile x 16 chunks of 1024 keys x 16 heads: one wave of the
     * 528 CTAs (4 a SM) */
    ck_assert_msg(sscanf(L.line[i + 2], "launch spat_rows %d on s%d", &grid, &side2) == 2 && grid == 256 &&
                      side2 == side,
                  "%s", fake_log());
    ck_assert_msg(sscanf(L.line[i + 3], "record e%d on s%d", &join, &side3) == 2 && side3 == side, "%s",
                  fake_log());
    ck_assert_msg(!strncmp(L.line[i + 4], "launch spat_direct ", 19) && strstr(L.line[i + 4], " on s0"), "%s",
                  fake_log());
    ck_assert_msg(sscanf(L.line[i + 5], "wait s0 for e%d", &join2) == 1 && join2 == join, "%s", fake_log());
    ck_assert_msg(!strncmp(L.line[i + 6], "launch spat_rows_merge ", 23) && strstr(L.line[i + 6], " on s0"),
                  "%s", fake_log());
    /* cuMemAlloc's scratch (the fake has no memory pools) goes once the
     * stream is done with it */
    int j = i + 7;
    if (j < L.n && !strcmp(L.line[j], "sync s0"))
        j++;
    ck_assert_msg(j == L.n - 1 && !strncmp(L.line[j], "free ", 5), "%s", fake_log());
    spat_kernel_free(k);
}
END_TEST

/* bigbird's 128 global rows over 64 heads and 2 batches: 2 row tiles x
 * 3 chunks of 1024 keys x 128 would be 768 items for 528 CTAs, so the
 * chunk doubles to 2048 keys: 512 items, one wave. */
START_TEST(rows_chunk_doubles_to_one_wave)
{
    spat_kernel *k = compile_pattern("bigbird");
    ck_assert_msg(forward(k, 2, 64, 3000, 64, SPAT_BF16) == SPAT_OK, "%s", spat_last_error());
    ck_assert_msg(strstr(fake_log(), "launch spat_rows 512 on s") != NULL, "%s", fake_log());
    spat_kernel_free(k);
}
END_TEST

/* Where the second stream cannot be made, the passes run in turn on the
 * caller's stream, with no events. */
START_TEST(without_a_stream_the_passes_run_in_turn)
{
    fake_fail_streams(1);
    spat_kernel *k = compile_pattern("longformer");
    const int rc = forward(k, 1, 16, 16384, 64, SPAT_BF16);
    fake_fail_streams(0);
    ck_assert_msg(rc == SPAT_OK, "%s", spat_last_error());
    const char *log = fake_log();
    const char *d = strstr(log, "launch spat_direct "), *r = strstr(log, "launch spat_rows 256 on s0"),
               *m = strstr(log, "launch spat_rows_merge ");
    ck_assert_msg(d && r && m && d < r && r < m && !strstr(log, "record") && !strstr(log, "wait"), "%s", log);
    spat_kernel_free(k);
}
END_TEST

/* A launch that fails after the fork: the error comes back with the
 * driver's name for it, and the rows pass's stream is waited for before
 * the scratch it writes is freed. */
START_TEST(a_failed_launch_waits_for_the_rows_pass)
{
    spat_kernel *k = compile_pattern("longformer");
    fake_fail_launch("spat_direct");
    const int rc = forward(k, 1, 16, 16384, 64, SPAT_BF16);
    fake_fail_launch("");
    ck_assert_int_eq(rc, SPAT_ECUDA);
    ck_assert_msg(strstr(spat_last_error(), "CUDA_ERROR_FAKE") && strstr(spat_last_error(), "spat_direct"), "%s",
                  spat_last_error());
    const char *log = fake_log();
    int side = 0;
    const char *r = strstr(log, "launch spat_rows ");
    ck_assert_msg(r && sscanf(r, "launch spat_rows %*d on s%d", &side) == 1 && side != 0, "%s", log);
    char sync[32];
    snprintf(sync, sizeof sync, "sync s%d\n", side);
    const char *s = strstr(log, sync), *f = strstr(log, "free ");
    ck_assert_msg(s && f && r < s && s < f && !strstr(log, "merge"), "%s", log);
    spat_kernel_free(k);
}
END_TEST

/* strided128's residue classes merge into O after the direct pass, on the
 * caller's stream; a pattern without global rows forks nothing. */
START_TEST(remap_passes_follow_the_direct_pass)
{
    spat_kernel *k = compile_pattern("strided128");
    ck_assert_msg(forward(k, 1, 16, 16384, 64, SPAT_BF16) == SPAT_OK, "%s", spat_last_error());
    const char *log = fake_log(), *d = strstr(log, "launch spat_direct "), *r = strstr(log, "launch spat_remap ");
    ck_assert_msg(d && r && d < r && strstr(d, " on s0") < r && strstr(r, " on s0") && !strstr(log, "record") &&
                      !strstr(log, "wait") && !strstr(log, "spat_rows"),
                  "%s", log);
    spat_kernel_free(k);
}
END_TEST

/* The direct pass of a pattern whose query tiles' keys grow with their
 * rows (causal, fixed128) takes its longest items first while they fill
 * at most 12 waves of the CTAs (the fake's 528: 6336 items), and head by
 * head past that; patterns whose items are alike always go head by head. */
START_TEST(growing_items_run_longest_first_while_few)
{
    static const struct {
        const char *pattern;
        int64_t batch, heads, n;
        bool longest;
    } cases[] = {
        {"causal", 99, 64, 64, true},     /* one query tile: 6336 items */
        {"causal", 100, 64, 64, false},   /* 6400 */
        {"causal", 1, 16, 16384, true},
        {"fixed128", 1, 16, 16384, true},
        {"dense", 1, 16, 16384, false},
        {"strided128", 1, 16, 16384, false},
        {"causal_window1024", 1, 16, 16384, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        spat_kernel *k = compile_pattern(cases[i].pattern);
        ck_assert_msg(forward(k, cases[i].batch, cases[i].heads, cases[i].n, 64, SPAT_BF16) == SPAT_OK, "%s",
                      spat_last_error());
        const char *log = fake_log();
        char line[96];
        line_from(log, "launch spat_direct ", line);
        ck_assert_msg(line[0], "%s", log);
        ck_assert_msg((strstr(line, " longest first") != NULL) == cases[i].longest,
                      "%s, batch %lld, %lld heads, N = %lld: %s", cases[i].pattern, (long long)cases[i].batch,
                      (long long)cases[i].heads, (long long)cases[i].n, log);
        ck_assert_msg(cases[i].longest || !strstr(log, "longest first"), "%s: %s", cases[i].pattern, log);
        spat_kernel_free(k);
    }
}
END_TEST

/* The persistent kernels get TMA descriptors of K and V where the driver
 * can make them: 16-bit elements, head dims in 64s, strides in whole
 * 16-byte steps; dims (d, residue, keys / step, KV heads, batch) with the
 * caller's strides, a dim of size 1 the packed one. The direct pass's
 * step is 1, a remap slot's its dilation or stride, where every head
 * class in use has the same. Elsewhere no descriptor, and the kernels
 * copy K and V themselves. */
START_TEST(tma_descriptors_where_the_layout_allows)
{
    spat_kernel *k = compile_pattern("dense");
    ck_assert_msg(forward(k, 2, 4, 1000, 64, SPAT_BF16) == SPAT_OK, "%s", spat_last_error());
    const char *log = fake_log(), *map = "tensor map 64x1x1000x4x2 strides 128,128,128000,512000 box 64x1x64x1x1\n";
    ck_assert_msg(strstr(log, map) && strstr(strstr(log, map) + 1, map) && strstr(log, " on s0 tma\n") &&
                      strstr(log, "launch spat_direct ") < strstr(log, " on s0 tma\n"),
                  "%s", log);
    ck_assert_msg(forward(k, 1, 1, 1000, 64, SPAT_BF16) == SPAT_OK, "%s", spat_last_error());
    ck_assert_msg(strstr(fake_log(), "tensor map 64x1x1000x1x1 strides 128,128,128000,128000 box 64x1x64x1x1\n"),
                  "%s", fake_log());
    ck_assert_msg(forward(k, 1, 2, 1000, 64, SPAT_F32) == SPAT_OK, "%s", spat_last_error());
    ck_assert_msg(!strstr(fake_log(), "tensor map") && !strstr(fake_log(), " tma"), "%s", fake_log());
    spat_kernel_free(k);

    /* strided128's residue classes: 128 of 8 keys each */
    k = compile_pattern("strided128");
    ck_assert_msg(forward(k, 1, 2, 1000, 64, SPAT_BF16) == SPAT_OK, "%s", spat_last_error());
    log = fake_log();
    char line[96];
    line_from(strstr(log, "tensor map 64x128x8x2x1 strides 128,16384,128000,256000 box 64x1x64x1x1\n"),
              "launch spat_remap ", line);
    ck_assert_msg(ends_with(line, " tma"), "%s", log);
    spat_kernel_free(k);

    /* one remap slot, dilation 2 for two heads and 4 for the others: no descriptor for it */
    static const int dims[] = {64};
    spat_compile_options o = {.head_dims = dims, .n_head_dims = 1};
    ck_assert_msg(spat_compile("pattern m { heads 0..1 { window 256 dilation 2; } heads 2..3 { window 256 "
                               "dilation 4; } }",
                               NULL, &o, &k) == SPAT_OK,
                  "%s", spat_last_error());
    ck_assert_msg(forward(k, 1, 4, 1000, 64, SPAT_BF16) == SPAT_OK, "%s", spat_last_error());
    log = fake_log();
    line_from(log, "launch spat_remap ", line);
    ck_assert_msg(line[0] && !strstr(line, " tma"), "%s", log);
    spat_kernel_free(k);
}
END_TEST

/* Six (head dim, dtype) pairs load six modules, past the first growth of
 * the kernel's table of them; the first pair's module is found again, not
 * loaded anew. */
START_TEST(loaded_modules_are_found_again)
{
    spat_kernel *k = NULL;
    static const int dims[] = {32, 64, 128};
    spat_compile_options o = {.head_dims = dims, .n_head_dims = 3};
    ck_assert_msg(spat_compile("pattern w { window 16; }", NULL, &o, &k) == SPAT_OK, "%s", spat_last_error());
    static const spat_dtype dts[] = {SPAT_F16, SPAT_BF16};
    for (int t = 0; t < 2; t++)
        for (int i = 0; i < 3; i++) {
            ck_assert_msg(forward(k, 1, 2, 100, dims[i], dts[t]) == SPAT_OK, "%s", spat_last_error());
            ck_assert_msg(strstr(fake_log(), "load\n") != NULL, "d = %d: %s", dims[i], fake_log());
        }
    ck_assert_msg(forward(k, 1, 2, 100, 32, SPAT_F16) == SPAT_OK, "%s", spat_last_error());
    ck_assert_msg(strstr(fake_log(), "load") == NULL && strstr(fake_log(), "launch spat_direct ") != NULL, "%s",
                  fake_log());
    spat_kernel_free(k);
}
END_TEST

int main(void)
{
    /* NVRTC compiles as for a real GPU; without it there is nothing to
     * launch. */
    if (!sp_nvrtc_get()) {
        printf("SKIP: NVRTC is not available here (%s)\n", spat_last_error());
        return 77;
    }
    /* Loaded by its path before the backend looks: its dlopen of
     * "libcuda.so.1" then finds this object by its soname. */
    void *h = dlopen(FAKE_CUDA, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "cannot open the fake driver %s: %s\n", FAKE_CUDA, dlerror());
        return EXIT_FAILURE;
    }
    *(void **)&fake_log = dlsym(h, "fake_cuda_log");
    *(void **)&fake_clear = dlsym(h, "fake_cuda_clear");
    *(void **)&fake_fail_streams = dlsym(h, "fake_cuda_fail_streams");
    *(void **)&fake_fail_launch = dlsym(h, "fake_cuda_fail_launch");
    *(void **)&fake_alloc = dlsym(h, "cuMemAlloc_v2");
    *(void **)&fake_free = dlsym(h, "cuMemFree_v2");
    if (!fake_log || !fake_clear || !fake_fail_streams || !fake_fail_launch || !fake_alloc || !fake_free) {
        fprintf(stderr, "%s lacks the fake's controls\n", FAKE_CUDA);
        return EXIT_FAILURE;
    }
    char cache[64];
    if (!test_tmpdir_make(cache, sizeof cache, "spat-launch")) {
        perror("mkdtemp");
        return EXIT_FAILURE;
    }
    setenv("SPAT_CACHE_DIR", cache, 1);
    unsetenv("SPAT_CUDA_ARCH");
    unsetenv("SPAT_CUDA_FLAGS");
    Suite *s = suite_create("cuda_launch");
    TCase *t = tcase_create("launch");
    tcase_set_timeout(t, 300);
    tcase_add_test(t, rows_pass_runs_beside_the_direct_pass);
    tcase_add_test(t, rows_chunk_doubles_to_one_wave);
    tcase_add_test(t, without_a_stream_the_passes_run_in_turn);
    tcase_add_test(t, a_failed_launch_waits_for_the_rows_pass);
    tcase_add_test(t, remap_passes_follow_the_direct_pass);
    tcase_add_test(t, growing_items_run_longest_first_while_few);
    tcase_add_test(t, tma_descriptors_where_the_layout_allows);
    tcase_add_test(t, loaded_modules_are_found_again);
    suite_add_tcase(s, t);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    const int failed = srunner_ntests_failed(r);
    srunner_free(r);
    test_tmpdir_remove(cache);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
