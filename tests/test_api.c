/* The public API's error paths: every bad input to spat_forward returns its
 * own status, sets a message naming the argument, and leaves every byte of
 * memory the call could see (Q, K, V, O, LSE and around them) as it was;
 * spat_compile's errors; status texts; the thread-local message. The
 * device-pointer checks run where a CUDA driver and GPU exist. */
#include "config.h"

#include <check.h>
#include <dlfcn.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "spat.h"

enum { B = 2, HQ = 4, HKV = 2, N = 16, D = 64 };
#define NQ ((size_t)B * HQ * N * D)
#define NK ((size_t)B * HKV * N * D)
#define NL ((size_t)B * HQ * N)
/* One block of memory holds every tensor, with slack around, so overlap
 * tests can point tensors into each other and one comparison shows that
 * nothing was written anywhere. */
#define OFF_Q 64
#define OFF_K (OFF_Q + NQ + 64)
#define OFF_V (OFF_K + NK + 64)
#define OFF_O (OFF_V + NK + 64)
#define OFF_L (OFF_O + NQ + 64)
#define MEM (OFF_L + NL + 64)

typedef struct fixture {
    spat_kernel *k, *k4; /* window256 {64, 128}; a 4-head pattern */
    float *mem, *snap;
    spat_forward_args a;
} fixture;

static fixture fx;

static void setup(void)
{
    ck_assert_int_eq(spat_compile("pattern window256 { window 256; }", NULL, NULL, &fx.k), SPAT_OK);
    ck_assert_int_eq(spat_compile("pattern four { global 0; heads 0..3 { window 3; } }", NULL,
                                  NULL, &fx.k4),
                     SPAT_OK);
    fx.mem = malloc(MEM * sizeof(float));
    fx.snap = malloc(MEM * sizeof(float));
    ck_assert(fx.mem && fx.snap);
    for (size_t i = 0; i < MEM; i++)
        fx.mem[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    /* Poison: O and LSE hold a byte pattern no forward pass would write. */
    memset(fx.mem + OFF_O, 0xa5, NQ * sizeof(float));
    memset(fx.mem + OFF_L, 0x5a, NL * sizeof(float));
    memcpy(fx.snap, fx.mem, MEM * sizeof(float));
    spat_forward_args_init(&fx.a, B, HQ, HKV, N, N, D);
    fx.a.q = fx.mem + OFF_Q;
    fx.a.k = fx.mem + OFF_K;
    fx.a.v = fx.mem + OFF_V;
    fx.a.o = fx.mem + OFF_O;
    fx.a.lse = fx.mem + OFF_L;
}

static void teardown(void)
{
    spat_kernel_free(fx.k);
    spat_kernel_free(fx.k4);
    free(fx.mem);
    free(fx.snap);
}

/* The call fails with `code`, says why (containing `needle` when given),
 * and memory is untouched. */
static void expect_k(const spat_kernel *k, const spat_forward_args *a, int code,
                     const char *needle, const char *what)
{
    sp_clear_error();
    int rc = spat_forward(k, a);
    const char *msg = spat_last_error();
    ck_assert_msg(rc == code, "%s: status %d (%s), want %d; message: %s", what, rc,
                  spat_strerror(rc), code, msg);
    ck_assert_msg(msg[0] != '\0', "%s: no message", what);
    if (needle)
        ck_assert_msg(strstr(msg, needle), "%s: message '%s' lacks '%s'", what, msg, needle);
    ck_assert_msg(!memcmp(fx.mem, fx.snap, MEM * sizeof(float)),
                  "%s: memory changed by a failed call", what);
    printf("  %-34s %-14s %s\n", what, spat_strerror(rc), msg);
}

static void expect(const spat_forward_args *a, int code, const char *needle, const char *what)
{
    expect_k(fx.k, a, code, needle, what);
}

START_TEST(fixture_is_valid)
{
    spat_forward_args a = fx.a;
    ck_assert_int_eq(spat_forward(fx.k, &a), SPAT_OK);
    ck_assert(memcmp(fx.mem + OFF_O, fx.snap + OFF_O, NQ * sizeof(float)) != 0);
    ck_assert(memcmp(fx.mem + OFF_L, fx.snap + OFF_L, NL * sizeof(float)) != 0);
    /* Nothing outside O and LSE moved. */
    ck_assert(!memcmp(fx.mem, fx.snap, OFF_O * sizeof(float)));
    ck_assert(!memcmp(fx.mem + OFF_O + NQ, fx.snap + OFF_O + NQ, 64 * sizeof(float)));
    ck_assert(!memcmp(fx.mem + OFF_L + NL, fx.snap + OFF_L + NL, 64 * sizeof(float)));
    /* LSE is optional. */
    a.lse = NULL;
    ck_assert_int_eq(spat_forward(fx.k, &a), SPAT_OK);
    /* Q, K and V may share memory; strides of extent-1 dims are free. */
    a = fx.a;
    a.k = a.v = a.q;
    a.heads_kv = HQ;
    memcpy(a.k_stride, a.q_stride, sizeof a.k_stride);
    memcpy(a.v_stride, a.q_stride, sizeof a.v_stride);
    ck_assert_int_eq(spat_forward(fx.k, &a), SPAT_OK);
    a = fx.a;
    a.batch = 1;
    a.o_stride[0] = 0;
    a.lse_stride[0] = -7;
    ck_assert_msg(spat_forward(fx.k, &a) == SPAT_OK, "%s", spat_last_error());
    /* A 4-head pattern runs with 4 query heads. */
    ck_assert_int_eq(spat_forward(fx.k4, &fx.a), SPAT_OK);
}
END_TEST

START_TEST(null_arguments)
{
    spat_forward_args a = fx.a;
    expect_k(NULL, &a, SPAT_EINVAL, "kernel is NULL", "kernel NULL");
    expect_k(fx.k, NULL, SPAT_EINVAL, "args is NULL", "args NULL");
    a.q = NULL;
    expect(&a, SPAT_EINVAL, "q is NULL", "q NULL");
    a = fx.a, a.k = NULL;
    expect(&a, SPAT_EINVAL, "k is NULL", "k NULL");
    a = fx.a, a.v = NULL;
    expect(&a, SPAT_EINVAL, "v is NULL", "v NULL");
    a = fx.a, a.o = NULL;
    expect(&a, SPAT_EINVAL, "o is NULL", "o NULL");
}
END_TEST

START_TEST(bad_shapes)
{
    const char *names[] = {"batch", "heads_q", "heads_kv", "seq_q", "seq_k", "head_dim"};
    for (int f = 0; f < 6; f++)
        for (int64_t v = 0; v >= -1; v--) {
            spat_forward_args a = fx.a;
            int64_t *field[] = {&a.batch, &a.heads_q, &a.heads_kv, &a.seq_q, &a.seq_k, &a.head_dim};
            *field[f] = v;
            char needle[64], what[64];
            snprintf(needle, sizeof needle, "%s = %" PRId64 ":", names[f], v);
            snprintf(what, sizeof what, "%s = %" PRId64, names[f], v);
            expect(&a, SPAT_EINVAL, needle, what);
        }
    spat_forward_args a = fx.a;
    a.seq_q = 0;
    expect(&a, SPAT_EINVAL, "seq_q = 0: sequence lengths must be positive", "seq_q = 0 text");
    a = fx.a, a.seq_k = ((int64_t)1 << 40) + 1;
    expect(&a, SPAT_EINVAL, "seq_k", "seq_k > 2^40");
}
END_TEST

START_TEST(bad_heads)
{
    spat_forward_args a = fx.a;
    a.heads_kv = 3;
    expect(&a, SPAT_EINVAL, "not a multiple of heads_kv", "heads_q % heads_kv");
    a = fx.a, a.heads_kv = 8;
    expect(&a, SPAT_EINVAL, "heads_kv = 8", "heads_kv > heads_q");
    a = fx.a, a.heads_q = 2, a.heads_kv = 1;
    expect_k(fx.k4, &a, SPAT_EINVAL, "describes 4 heads", "heads_q 2 on a 4-head pattern");
    a = fx.a, a.heads_q = 8, a.heads_kv = 1;
    expect_k(fx.k4, &a, SPAT_EINVAL, "describes 4 heads", "heads_q 8 on a 4-head pattern");
}
END_TEST

START_TEST(bad_head_dim)
{
    spat_forward_args a = fx.a;
    a.head_dim = 96;
    expect(&a, SPAT_EHEADDIM, "head_dim 96: kernel 'window256' was built for 64, 128", "head_dim 96");
    a.head_dim = 32;
    expect(&a, SPAT_EHEADDIM, "head_dim 32", "head_dim 32");
}
END_TEST

START_TEST(bad_enums)
{
    spat_forward_args a = fx.a;
    a.dtype = (spat_dtype)3;
    expect(&a, SPAT_EINVAL, "dtype = 3", "dtype 3");
    a.dtype = (spat_dtype)-1;
    expect(&a, SPAT_EINVAL, "dtype = -1", "dtype -1");
    a = fx.a, a.device = (spat_device)2;
    expect(&a, SPAT_EINVAL, "device = 2", "device 2");
    a = fx.a, a.backend = (spat_backend)4;
    expect(&a, SPAT_EINVAL, "backend = 4", "backend 4");
}
END_TEST

START_TEST(bad_backend_and_device)
{
    spat_forward_args a = fx.a;
    a.device = SPAT_DEVICE_CUDA;
#ifdef SPAT_HAVE_CUDA
    /* This libspat has the CUDA backend: without a driver, or given host
     * memory, the call is refused as one on the wrong device. */
    expect(&a, SPAT_EDEVICE, "CUDA", "device CUDA, host memory");
#else
    expect(&a, SPAT_EBACKEND, "CUDA", "device CUDA, no CUDA backend");
#endif
    a.backend = SPAT_BACKEND_REFERENCE;
    expect(&a, SPAT_EDEVICE, "backend 'reference'", "reference backend on device CUDA");
    a = fx.a, a.backend = SPAT_BACKEND_CUDA;
    expect(&a, SPAT_EDEVICE, "backend 'cuda'", "cuda backend on device CPU");
    /* Until the LLVM backend lands, asking for it by name fails cleanly. */
    if (!fx.k->backends[SPAT_BACKEND_CPU].available) {
        a = fx.a, a.backend = SPAT_BACKEND_CPU;
        expect(&a, SPAT_EBACKEND, "backend 'cpu'", "cpu backend unavailable");
    }
}
END_TEST

/* No backend refuses a dtype yet (the reference takes all three), so the
 * check is exercised by narrowing the reference slot of a private kernel. */
START_TEST(bad_dtype)
{
    spat_kernel *k;
    ck_assert_int_eq(spat_compile("pattern w { window 2; }", NULL, NULL, &k), SPAT_OK);
    k->backends[SPAT_BACKEND_REFERENCE].dtypes = 1u << SPAT_F32;
    spat_forward_args a = fx.a;
    a.dtype = SPAT_BF16;
    a.backend = SPAT_BACKEND_REFERENCE;
    expect_k(k, &a, SPAT_EDTYPE, "dtype bf16", "bf16 on an f32-only backend");
    a.backend = SPAT_BACKEND_AUTO;
    a.dtype = SPAT_F16;
    expect_k(k, &a, SPAT_EDTYPE, "dtype f16", "f16 with no backend for it");
    spat_kernel_free(k);
}
END_TEST

START_TEST(bad_lengths)
{
    int32_t sq[B] = {N, N}, sk[B] = {N, N};
    int64_t offs[B] = {0, 0};
    spat_forward_args a = fx.a;
    a.seqlens_q = sq, a.seqlens_k = sk;
    ck_assert_int_eq(spat_forward(fx.k, &a), SPAT_OK); /* valid as given */
    memcpy(fx.snap, fx.mem, MEM * sizeof(float));
    sq[1] = -1;
    expect(&a, SPAT_EINVAL, "seqlens_q[1] = -1", "seqlens_q < 0");
    sq[1] = N + 1;
    expect(&a, SPAT_EINVAL, "seqlens_q[1] = 17", "seqlens_q > seq_q");
    sq[1] = N;
    sk[0] = -3;
    expect(&a, SPAT_EINVAL, "seqlens_k[0] = -3", "seqlens_k < 0");
    sk[0] = N + 5;
    expect(&a, SPAT_EINVAL, "seqlens_k[0] = 21", "seqlens_k > seq_k");
    sk[0] = 10; /* 16 query rows against 10 keys */
    expect(&a, SPAT_EINVAL, "batch 0", "more rows than keys");
    a = fx.a, a.q_offset = -1;
    expect(&a, SPAT_EINVAL, "q_offset = -1", "q_offset < 0");
    a.q_offset = 1;
    expect(&a, SPAT_EINVAL, "q_offset = 1 plus 16 query rows", "q_offset + seq_q > seq_k");
    a = fx.a, a.q_offsets = offs;
    offs[1] = -2;
    expect(&a, SPAT_EINVAL, "q_offsets[1] = -2", "q_offsets < 0");
    offs[1] = 3;
    expect(&a, SPAT_EINVAL, "q_offsets[1] = 3", "q_offsets + rows > keys");
    offs[1] = 0;
    a.q_offset = 2;
    expect(&a, SPAT_EINVAL, "both given", "q_offset and q_offsets");
}
END_TEST

START_TEST(bad_scalars)
{
    spat_forward_args a = fx.a;
    a.scale = NAN;
    expect(&a, SPAT_EINVAL, "scale = nan", "scale NaN");
    a.scale = INFINITY;
    expect(&a, SPAT_EINVAL, "scale = inf", "scale inf");
    a.scale = -INFINITY;
    expect(&a, SPAT_EINVAL, "scale = -inf", "scale -inf");
    a = fx.a, a.threads = -1;
    expect(&a, SPAT_EINVAL, "threads = -1", "threads < 0");
}
END_TEST

START_TEST(aliasing_output)
{
    spat_forward_args a = fx.a;
    a.o_stride[2] = 0;
    expect(&a, SPAT_EOVERLAP, "o_stride[2] = 0 makes distinct rows of O overlap", "o rows alias");
    a = fx.a, a.o_stride[3] = 0;
    expect(&a, SPAT_EOVERLAP, "o_stride[3] = 0 makes distinct elements of a row of O overlap", "o elements alias");
    a = fx.a, a.o_stride[1] = N * D / 2;
    expect(&a, SPAT_EOVERLAP, "o_stride[1] = 512 makes distinct heads of O overlap", "o heads alias");
    a = fx.a, a.o_stride[0] = a.o_stride[1];
    expect(&a, SPAT_EOVERLAP, "o_stride[", "o batch = head stride");
    a = fx.a, a.o_stride[2] = -D / 2;
    a.o = fx.mem + OFF_O + D * (N - 1);
    expect(&a, SPAT_EOVERLAP, "o_stride[2] = -32", "negative o stride aliasing");
    a = fx.a, a.lse_stride[2] = 0;
    expect(&a, SPAT_EOVERLAP, "lse_stride[2] = 0 makes distinct rows of LSE overlap", "lse rows alias");
    a = fx.a, a.lse_stride[0] = 1;
    expect(&a, SPAT_EOVERLAP, "lse_stride[", "lse batch stride 1");
    /* A transposed, non-overlapping O is fine: d outermost. */
    a = fx.a;
    a.o_stride[3] = B * HQ * N, a.o_stride[0] = HQ * N, a.o_stride[1] = N, a.o_stride[2] = 1;
    ck_assert_msg(spat_forward(fx.k, &a) == SPAT_OK, "%s", spat_last_error());
}
END_TEST

START_TEST(overlapping_tensors)
{
    spat_forward_args a = fx.a;
    a.o = (void *)a.q;
    expect(&a, SPAT_EOVERLAP, "O (bytes", "o == q");
    a = fx.a, a.o = fx.mem + OFF_K + NK - 1; /* last element of K is O's first */
    expect(&a, SPAT_EOVERLAP, "overlaps K", "o overlaps the end of k");
    a = fx.a, a.v = fx.mem + OFF_O - NK + 1; /* V's last element is O's first */
    expect(&a, SPAT_EOVERLAP, "overlaps V", "v overlaps the start of o");
    a = fx.a, a.lse = fx.mem + OFF_Q + 100;
    expect(&a, SPAT_EOVERLAP, "overlaps Q", "lse inside q");
    a = fx.a, a.lse = fx.mem + OFF_O + NQ - 1;
    expect(&a, SPAT_EOVERLAP, "O (bytes", "lse overlaps o");
    a = fx.a, a.lse = fx.mem + OFF_V;
    expect(&a, SPAT_EOVERLAP, "LSE (bytes", "lse == v");
    /* A negative stride moves the extent below the pointer. */
    a = fx.a, a.o = fx.mem + OFF_O + 10;
    a.o_stride[0] = -(int64_t)(OFF_O - OFF_V);
    expect(&a, SPAT_EOVERLAP, "overlaps V", "negative o stride reaching into v");
}
END_TEST

START_TEST(overflowing_sizes)
{
    spat_forward_args a = fx.a;
    a.o_stride[0] = INT64_MAX / 2;
    a.batch = 3;
    expect(&a, SPAT_EINVAL, "overflow", "o element offsets overflow");
    a = fx.a, a.q_stride[0] = INT64_MAX / 4 + 1;
    expect(&a, SPAT_EINVAL, "Q with shape", "q byte offsets overflow");
    a = fx.a, a.k_stride[2] = -((int64_t)1 << 50);
    expect(&a, SPAT_EINVAL, "K with shape", "k below address 0");
    a = fx.a, a.lse_stride[1] = INT64_MAX / 3;
    expect(&a, SPAT_EINVAL, "LSE with shape", "lse offsets overflow");
    a = fx.a;
    int64_t big = (int64_t)1 << 40;
    spat_forward_args_init(&a, big, big, big, big, big, D);
    a.q = fx.a.q, a.k = fx.a.k, a.v = fx.a.v, a.o = fx.a.o, a.lse = fx.a.lse;
    expect(&a, SPAT_EINVAL, "overflow", "shape whose strides overflow");
}
END_TEST

/* ------------------------------------------------------- device memory */

/* The few CUDA driver calls the test makes, declared by hand as libspat's
 * device.c does (no cuda.h needed). */
static void *cuda;

static void *sym(const char *name)
{
    void *f = dlsym(cuda, name);
    ck_assert_msg(f != NULL, "libcuda lacks %s", name);
    return f;
}
#define CU(name, ...) ((int (*)(__VA_ARGS__))sym(#name))

/* Device pointers given for a CPU call are refused; managed and pinned host
 * memory are host memory. Skipped (with a note) without a GPU. */
START_TEST(device_pointers)
{
    cuda = dlopen("libcuda.so.1", RTLD_NOW);
    if (!cuda) {
        printf("  device_pointers: no libcuda.so.1 here, skipped\n");
        return;
    }
    int ndev = 0, dev = 0;
    if (CU(cuInit, unsigned)(0) != 0 || CU(cuDeviceGetCount, int *)(&ndev) != 0 || ndev == 0) {
        printf("  device_pointers: libcuda but no GPU, skipped\n");
        return;
    }
    void *ctx = NULL;
    ck_assert_int_eq(CU(cuDeviceGet, int *, int)(&dev, 0), 0);
    ck_assert_int_eq(CU(cuDevicePrimaryCtxRetain, void **, int)(&ctx, dev), 0);
    ck_assert_int_eq(CU(cuCtxSetCurrent, void *)(ctx), 0);
    unsigned long long dptr = 0, mptr = 0;
    void *hptr = NULL;
    ck_assert_int_eq(CU(cuMemAlloc_v2, unsigned long long *, size_t)(&dptr, NQ * sizeof(float)), 0);
    ck_assert_int_eq(CU(cuMemAllocManaged, unsigned long long *, size_t, unsigned)(&mptr, NQ * sizeof(float), 1u /* GLOBAL */), 0);
    ck_assert_int_eq(CU(cuMemAllocHost_v2, void **, size_t)(&hptr, NQ * sizeof(float)), 0);

    spat_forward_args a = fx.a;
    a.o = (void *)(uintptr_t)dptr;
    expect(&a, SPAT_EDEVICE, "o = ", "o in device memory");
    a = fx.a, a.q = (void *)(uintptr_t)dptr;
    expect(&a, SPAT_EDEVICE, "q = ", "q in device memory");
    a = fx.a, a.lse = (float *)(uintptr_t)dptr;
    expect(&a, SPAT_EDEVICE, "lse = ", "lse in device memory");
    a = fx.a, a.seqlens_k = (const int32_t *)(uintptr_t)dptr;
    expect(&a, SPAT_EDEVICE, "seqlens_k = ", "seqlens_k in device memory");
    /* Managed and pinned memory: the CPU may use them. */
    a = fx.a, a.o = (void *)(uintptr_t)mptr;
    ck_assert_msg(spat_forward(fx.k, &a) == SPAT_OK, "managed O: %s", spat_last_error());
    a = fx.a, a.o = hptr;
    ck_assert_msg(spat_forward(fx.k, &a) == SPAT_OK, "pinned O: %s", spat_last_error());
    ck_assert(!memcmp(hptr, (void *)(uintptr_t)mptr, NQ * sizeof(float)));
    /* Ordinary malloc memory with the driver loaded. */
    ck_assert_int_eq(spat_forward(fx.k, &fx.a), SPAT_OK);
    printf("  device_pointers: ran on a GPU\n");
    CU(cuMemFree_v2, unsigned long long)(dptr);
    CU(cuMemFree_v2, unsigned long long)(mptr);
    CU(cuMemFreeHost, void *)(hptr);
    CU(cuDevicePrimaryCtxRelease_v2, int)(dev);
}
END_TEST

/* --------------------------------------------------------- spat_compile */

static void expect_compile(const char *src, const char *name, const spat_compile_options *o,
                           int code, const char *needle, const char *what)
{
    sp_clear_error();
    spat_kernel *k = (spat_kernel *)&k; /* must come back NULL */
    int rc = spat_compile(src, name, o, &k);
    const char *msg = spat_last_error();
    ck_assert_msg(rc == code, "%s: status %d, want %d: %s", what, rc, code, msg);
    ck_assert_msg(k == NULL, "%s: *out not NULL on failure", what);
    ck_assert_msg(msg[0], "%s: no message", what);
    if (needle)
        ck_assert_msg(strstr(msg, needle), "%s: message '%s' lacks '%s'", what, msg, needle);
    printf("  %-34s %-14s %s\n", what, spat_strerror(rc), msg);
}

START_TEST(compile_errors)
{
    spat_compile_options o = {.filename = "bad.spat"};
    expect_compile("pattern p {\n  window ;\n}\n", NULL, &o, SPAT_ESYNTAX, "bad.spat:2:", "syntax error");
    /* Every error of the source is in the message, with the line shown. */
    expect_compile("pattern p {\n  window ;\n  stride ;\n}\n", NULL, &o, SPAT_ESYNTAX, "bad.spat:3:",
                   "two syntax errors");
    ck_assert(strstr(spat_last_error(), "bad.spat:2:"));
    ck_assert(strstr(spat_last_error(), "stride"));
    /* The offending line is echoed with a caret under it. */
    ck_assert(strstr(spat_last_error(), "  window ;"));
    ck_assert(strstr(spat_last_error(), "^"));
    spat_kernel *k = NULL;
    ck_assert_int_eq(spat_compile("pattern p { window 3; }", NULL, &o, &k), SPAT_OK);
    spat_kernel_free(k);
}
END_TEST

START_TEST(compile_names)
{
    const char *two = "pattern alpha { window 3; }\npattern beta { stride 4; }\n";
    expect_compile(two, NULL, NULL, SPAT_ENOPATTERN, "alpha, beta", "two patterns, no name");
    expect_compile(two, "gamma", NULL, SPAT_ENOPATTERN, "no pattern 'gamma'", "unknown name");
    ck_assert(strstr(spat_last_error(), "alpha, beta"));
    spat_kernel *k;
    ck_assert_int_eq(spat_compile(two, "beta", NULL, &k), SPAT_OK);
    ck_assert_str_eq(spat_kernel_name(k), "beta");
    ck_assert_int_eq(spat_kernel_heads(k), 0);
    const int *dims;
    ck_assert_int_eq(spat_kernel_head_dims(k, &dims), 2);
    ck_assert(dims[0] == 64 && dims[1] == 128);
    spat_kernel_free(k);
    ck_assert_int_eq(spat_compile("pattern h { heads 0..5 { window 1; } }", NULL, NULL, &k), SPAT_OK);
    ck_assert_int_eq(spat_kernel_heads(k), 6);
    spat_kernel_free(k);
    spat_kernel_free(NULL);
    ck_assert_ptr_null(spat_kernel_name(NULL));
    ck_assert_int_eq(spat_kernel_head_dims(NULL, &dims), 0);
}
END_TEST

START_TEST(compile_head_dims)
{
    const char *src = "pattern p { window 3; }";
    struct { int dims[3]; int n; const char *needle; } bad[] = {
        {{12}, 1, "head_dims[0] = 12"},
        {{64, 0}, 2, "head_dims[1] = 0"},
        {{264}, 1, "head_dims[0] = 264"},
        {{-8}, 1, "head_dims[0] = -8"},
        {{64, 128, 7}, 3, "head_dims[2] = 7"},
        {{64}, 0, "n_head_dims = 0"},
        {{64}, -1, "n_head_dims = -1"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        spat_compile_options o = {.head_dims = bad[i].dims, .n_head_dims = bad[i].n};
        expect_compile(src, NULL, &o, SPAT_EINVAL, bad[i].needle, bad[i].needle);
    }
    spat_compile_options o = {.head_dims = NULL, .n_head_dims = 2};
    expect_compile(src, NULL, &o, SPAT_EINVAL, "head_dims is NULL", "NULL dims, n 2");
    /* Duplicates collapse and the list comes back sorted. */
    const int dims[] = {256, 8, 64, 8};
    o = (spat_compile_options){.head_dims = dims, .n_head_dims = 4};
    spat_kernel *k;
    ck_assert_int_eq(spat_compile(src, NULL, &o, &k), SPAT_OK);
    const int *got;
    ck_assert_int_eq(spat_kernel_head_dims(k, &got), 3);
    ck_assert(got[0] == 8 && got[1] == 64 && got[2] == 256);
    spat_kernel_free(k);
    expect_compile(NULL, NULL, NULL, SPAT_EINVAL, "source is NULL", "source NULL");
    sp_clear_error();
    ck_assert_int_eq(spat_compile(src, NULL, NULL, NULL), SPAT_EINVAL);
    ck_assert(spat_last_error()[0]);
}
END_TEST

/* ------------------------------------------------------ status and text */

START_TEST(strerror_every_code)
{
    for (int c = SPAT_OK; c <= SPAT_ENVRTC; c++) {
        const char *s = spat_strerror(c);
        ck_assert(s && s[0]);
        ck_assert_str_ne(s, "unknown status code");
        for (int d = SPAT_OK; d < c; d++)
            ck_assert_str_ne(s, spat_strerror(d));
    }
    ck_assert_str_eq(spat_strerror(-1), "unknown status code");
    ck_assert_str_eq(spat_strerror(SPAT_ENVRTC + 1), "unknown status code");
    ck_assert_str_eq(spat_strerror(SPAT_OK), "success");
}
END_TEST

static void *other_thread(void *arg)
{
    const char **seen = arg;
    seen[0] = spat_last_error()[0] ? "set" : "";
    spat_forward(NULL, NULL);
    seen[1] = strstr(spat_last_error(), "kernel is NULL") ? "mine" : "other";
    return NULL;
}

START_TEST(message_is_per_thread)
{
    sp_set_error(SPAT_EIO, "main thread's message %d", 42);
    const char *seen[2];
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, other_thread, seen), 0);
    pthread_join(t, NULL);
    ck_assert_str_eq(seen[0], "");
    ck_assert_str_eq(seen[1], "mine");
    ck_assert_str_eq(spat_last_error(), "main thread's message 42");
    /* A message may quote the previous one, and a huge one is cut, not overrun. */
    sp_set_error(SPAT_EIO, "outer: %s", spat_last_error());
    ck_assert_str_eq(spat_last_error(), "outer: main thread's message 42");
    char *big = malloc(100000);
    memset(big, 'x', 99999);
    big[99999] = '\0';
    ck_assert_int_eq(sp_set_error(SPAT_ESYNTAX, "%s", big), SPAT_ESYNTAX);
    ck_assert(strlen(spat_last_error()) < 100000);
    ck_assert(strstr(spat_last_error(), "truncated"));
    free(big);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("api");
    TCase *t = tcase_create("forward");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_set_timeout(t, 120);
    tcase_add_test(t, fixture_is_valid);
    tcase_add_test(t, null_arguments);
    tcase_add_test(t, bad_shapes);
    tcase_add_test(t, bad_heads);
    tcase_add_test(t, bad_head_dim);
    tcase_add_test(t, bad_enums);
    tcase_add_test(t, bad_backend_and_device);
    tcase_add_test(t, bad_dtype);
    tcase_add_test(t, bad_lengths);
    tcase_add_test(t, bad_scalars);
    tcase_add_test(t, aliasing_output);
    tcase_add_test(t, overlapping_tensors);
    tcase_add_test(t, overflowing_sizes);
    tcase_add_test(t, device_pointers);
    suite_add_tcase(s, t);
    TCase *c = tcase_create("compile");
    tcase_add_test(c, compile_errors);
    tcase_add_test(c, compile_names);
    tcase_add_test(c, compile_head_dims);
    tcase_add_test(c, strerror_every_code);
    tcase_add_test(c, message_is_per_thread);
    suite_add_tcase(s, c);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? 1 : 0;
}
