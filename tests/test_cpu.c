/* The LLVM CPU backend against the reference backend, on fresh random
 * inputs each run (the seed is printed; SPAT_TEST_SEED repeats a run).
 *
 * Every pattern of patterns/ and every rule pattern, at awkward lengths and
 * head dims 32, 64 and 128; GQA; strided, padded and reversed layouts;
 * q_offset and chunked prefill; varlen; thread counts; the AVX2 and SSE
 * code forced on an AVX-512 host; JIT and kernel.so bit for bit; a
 * kernel.so for features this CPU lacks refused. Outputs live in buffers
 * larger than their layout, poisoned, so an unwritten element or a write
 * outside O and LSE shows; inputs are surrounded by NaN, so a read outside
 * them shows in O. */
#include "config.h"

#include <check.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpu.h"
#include "frontend.h"
#include "internal.h"
#include "module.h"
#include "rule_patterns.h"
#include "spat.h"
#include "tensor.h"
#include "testutil.h"

/* ---------------------------------------------------------------- cases */

static tcase base_case(int64_t heads, int64_t L, int64_t d)
{
    tcase c = tcase_base(heads, L, d);
    c.threads = 2;
    return c;
}

static float f32_at(const tensor *t, int64_t b, int64_t h, int64_t r, int64_t x)
{
    return (float)tensor_get(t, SPAT_F32, tensor_off(t, b, h, r, x));
}

/* Runs c on the CPU backend and the reference; compares O (relative error
 * over the call), LSE (per row), empty rows (exactly 0 and -inf). */
static void run_case(const spat_kernel *k, const tcase *c, const char *what)
{
    char ctx[512];
    snprintf(ctx, sizeof ctx, "%s [B %" PRId64 " Hq %" PRId64 " Hkv %" PRId64 " Nq %" PRId64
             " Nk %" PRId64 " d %" PRId64 " threads %d] (seed %" PRIu64 ")", what, c->B, c->Hq,
             c->Hkv, c->Nq, c->Nk, c->d, c->threads, test_seed);
    bufs x;
    bufs_make(&x, c);
    tensor ro, rlse; /* the reference's O and LSE */
    tensor_make_like(&ro, &x.o);
    tensor_make_like(&rlse, &x.lse);
    spat_forward_args a;
    args_from(&a, c, &x, SPAT_BACKEND_CPU);
    int rc = spat_forward(k, &a);
    ck_assert_msg(rc == SPAT_OK, "%s: cpu backend: %d: %s", ctx, rc, spat_last_error());
    args_from(&a, c, &x, SPAT_BACKEND_REFERENCE);
    a.o = tensor_ptr(&ro);
    a.lse = tensor_ptr(&rlse);
    rc = spat_forward(k, &a);
    ck_assert_msg(rc == SPAT_OK, "%s: reference: %d: %s", ctx, rc, spat_last_error());
    check_untouched_outside(&x.o, "O", ctx);
    if (!c->no_lse)
        check_untouched_outside(&x.lse, "LSE", ctx);
    double diff2 = 0, norm2 = 0;
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t h = 0; h < c->Hq; h++)
            for (int64_t r = 0; r < c->Nq; r++) {
                float want_lse = f32_at(&rlse, b, h, r, 0);
                if (!c->no_lse) {
                    float got = f32_at(&x.lse, b, h, r, 0);
                    if (want_lse == -INFINITY)
                        ck_assert_msg(got == -INFINITY, "%s: b %" PRId64 " h %" PRId64 " row %" PRId64
                                      ": empty row has LSE %g", ctx, b, h, r, got);
                    else
                        ck_assert_msg(fabs((double)got - want_lse) <= 1e-5 * fmax(1, fabs(want_lse)),
                                      "%s: b %" PRId64 " h %" PRId64 " row %" PRId64 ": LSE %.9g, want %.9g",
                                      ctx, b, h, r, got, want_lse);
                }
                for (int64_t t = 0; t < c->d; t++) {
                    float got = f32_at(&x.o, b, h, r, t), want = f32_at(&ro, b, h, r, t);
                    ck_assert_msg(isfinite(got), "%s: b %" PRId64 " h %" PRId64 " row %" PRId64
                                  ": O[%" PRId64 "] = %g", ctx, b, h, r, t, got);
                    if (want_lse == -INFINITY)
                        ck_assert_msg(got == 0 && !signbit(got), "%s: b %" PRId64 " h %" PRId64 " row %"
                                      PRId64 " has no key but O[%" PRId64 "] = %g", ctx, b, h, r, t, got);
                    diff2 += ((double)got - want) * ((double)got - want);
                    norm2 += (double)want * want;
                }
            }
    double rel = norm2 > 0 ? sqrt(diff2 / norm2) : sqrt(diff2);
    ck_assert_msg(rel < 1e-5, "%s: relative error of O %.3g", ctx, rel);
    tensor_free(&ro);
    tensor_free(&rlse);
    bufs_free(&x);
}

static spat_kernel *compile_with(const char *src, const char *name, const char *features)
{
    static const int dims[] = {32, 64, 128};
    spat_compile_options o = {.head_dims = dims, .n_head_dims = 3, .filename = "test",
                              .cpu_features = features};
    spat_kernel *k = NULL;
    int rc = spat_compile(src, name, &o, &k);
    ck_assert_msg(rc == SPAT_OK, "spat_compile(%s) = %d: %s", name ? name : "(only)", rc,
                  spat_last_error());
    ck_assert_msg(k->backends[SPAT_BACKEND_CPU].available, "no CPU backend for %s", name ? name : src);
    return k;
}

static int64_t pattern_heads(const spat_kernel *k) { return spat_kernel_heads(k) ? spat_kernel_heads(k) : 2; }

/* Every pattern of src at the given lengths, head dims in turn. */
static void check_source(const char *file, const char *src, const int64_t *lengths, int nlen,
                         const char *features)
{
    sp_arena ar;
    sp_diag dg;
    sp_program *prog;
    sp_arena_init(&ar);
    sp_diag_init(&dg, file, src, strlen(src));
    ck_assert_msg(sp_frontend(src, strlen(src), &ar, &dg, &prog) == 0, "%s", sp_diag_text(&dg));
    static const int64_t dims[] = {32, 64, 128};
    for (int pi = 0; pi < prog->npatterns; pi++) {
        spat_kernel *k = compile_with(src, prog->patterns[pi].name, features);
        for (int li = 0; li < nlen; li++) {
            tcase c = base_case(pattern_heads(k), lengths[li], dims[(li + pi) % 3]);
            c.B = lengths[li] % 2 && lengths[li] < 500 ? 2 : 1;
            char what[256];
            snprintf(what, sizeof what, "%s: pattern %s%s%s", file, prog->patterns[pi].name,
                     features ? ", features " : "", features ? features : "");
            run_case(k, &c, what);
        }
        spat_kernel_free(k);
    }
    sp_diag_free(&dg);
    sp_arena_free(&ar);
}

static char *pattern_files[64];
static int npattern_files;

START_TEST(pattern_file)
{
    ck_assert_msg(npattern_files >= 9, "patterns/ not found (SPAT_SRCDIR)");
    test_reseed(100 + (uint64_t)_i);
    static const int64_t lengths[] = {1, 7, 63, 65, 1000};
    char *src = test_slurp(pattern_files[_i]);
    check_source(pattern_files[_i], src, lengths, 5, NULL);
    free(src);
}
END_TEST

START_TEST(rule_pattern)
{
    test_reseed(1000 + (uint64_t)_i);
    static const int64_t lengths[] = {1, 7, 63, 65, 200};
    char name[64];
    snprintf(name, sizeof name, "rule_patterns[%d]", _i);
    check_source(name, rule_patterns[_i], lengths, 5, NULL);
}
END_TEST

/* The AVX2 and SSE code, forced on whatever host runs the test (it runs
 * here, so the host must have the features; every x86-64 has SSE2). */
static const char *const forced[] = {"-avx512f", "-avx,-avx2,-fma,-avx512f"};

START_TEST(forced_isa)
{
    test_reseed(2000 + (uint64_t)_i);
    uint64_t host = sp_cpu_host_features();
    if (_i % 2 == 0 && !((host & SP_CPU_F_AVX2) && (host & SP_CPU_F_FMA)))
        return; /* no AVX2 here: only the SSE code can run */
    static const int64_t lengths[] = {7, 65, 300};
    int f = _i % 2, which = _i / 2;
    if (which < npattern_files) {
        char *src = test_slurp(pattern_files[which]);
        check_source(pattern_files[which], src, lengths, 3, forced[f]);
        free(src);
    } else {
        char name[64];
        snprintf(name, sizeof name, "rule_patterns[%d]", which - npattern_files);
        check_source(name, rule_patterns[which - npattern_files], lengths + 1, 1, forced[f]);
    }
}
END_TEST

static void check_simple(const char *src, tcase c, const char *what)
{
    spat_kernel *k = compile_with(src, NULL, NULL);
    run_case(k, &c, what);
    spat_kernel_free(k);
}

START_TEST(gqa)
{
    test_reseed(3);
    static const char *const srcs[] = {
        "pattern w { window 5; global 0; }",
        "pattern r { block 8; causal; random 2 blocks seed 3; window -3..+0; }",
        "pattern s { stride 6; window 20 dilation 3; }",
    };
    for (size_t s = 0; s < sizeof srcs / sizeof *srcs; s++)
        for (int hkv = 1; hkv <= 4; hkv *= 2) {
            tcase c = base_case(4, 130, 64);
            c.Hkv = hkv;
            c.B = 2;
            check_simple(srcs[s], c, srcs[s]);
        }
}
END_TEST

START_TEST(layouts)
{
    test_reseed(4);
    const char *src = "pattern p { block 8; window 4; global 1; random 1 blocks seed 2; stride 9; "
                      "window 30 dilation 3; }";
    const layout ls[] = {BHSD, BSHD_PAD, ODD, ODD2};
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++) {
            tcase c = base_case(4, 97, 32);
            c.B = 2;
            c.Hkv = 2;
            c.lq = ls[a];
            c.lk = ls[b];
            c.lv = ls[(a + b) % 4];
            c.lo = ls[(a + 3 * b) % 4];
            c.llse = ls[(2 * a + b) % 4];
            c.no_lse = (a + b) % 3 == 0;
            char what[64];
            snprintf(what, sizeof what, "layouts %d %d", a, b);
            check_simple(src, c, what);
        }
}
END_TEST

START_TEST(q_offset)
{
    test_reseed(5);
    static const char *const srcs[] = {
        "pattern c { causal; window -9..+0; global 0..2; }",
        "pattern f { block 16; window 1 blocks; random 1 blocks seed 8; }",
        "pattern d { causal; window -64..+0 dilation 4; stride 50; }",
    };
    for (size_t s = 0; s < sizeof srcs / sizeof *srcs; s++)
        for (int64_t off = 0; off <= 150; off += 50) {
            tcase c = base_case(2, 200, 64);
            c.Nq = 200 - off - (off % 3);
            c.q_offset = off;
            check_simple(srcs[s], c, srcs[s]);
        }
}
END_TEST

/* Chunked prefill: each chunk of rows, run at its offset against the whole
 * cache, agrees with the reference on those rows. */
START_TEST(chunked_prefill)
{
    test_reseed(6);
    const char *src = "pattern c { causal; block 16; window -20..+0; global 0..3; random 2 blocks seed 5; "
                      "window -90..+0 dilation 6; }";
    spat_kernel *k = compile_with(src, NULL, NULL);
    static const int64_t cuts[] = {0, 1, 17, 64, 100, 130};
    for (int ci = 0; ci + 1 < 6; ci++) {
        tcase c = base_case(2, 130, 64);
        c.B = 2;
        c.Nq = cuts[ci + 1] - cuts[ci];
        c.q_offset = cuts[ci];
        char what[64];
        snprintf(what, sizeof what, "chunk %" PRId64 "..%" PRId64, cuts[ci], cuts[ci + 1]);
        run_case(k, &c, what);
    }
    spat_kernel_free(k);
}
END_TEST

START_TEST(varlen)
{
    test_reseed(7);
    static const char *const srcs[] = {
        "pattern c { causal; window -9..+0; global 0..2, last 4; }",
        "pattern v { block 8; window 1 blocks; columns 0..1 mod 10; random 2 blocks seed 6; }",
        "pattern s { stride 7; window 12 dilation 2; global rows last 3; }",
    };
    static const int32_t sq[] = {70, 33, 0, 1}, sk[] = {70, 50, 0, 61};
    static const int64_t offs[] = {0, 17, 0, 60};
    for (size_t s = 0; s < sizeof srcs / sizeof *srcs; s++) {
        tcase c = base_case(2, 70, 32);
        c.B = 4;
        c.seqlens_q = sq;
        c.seqlens_k = sk;
        c.q_offsets = offs;
        c.lq = BSHD_PAD;
        c.lo = BSHD_PAD;
        check_simple(srcs[s], c, srcs[s]);
        static const int32_t sq2[] = {70, 50, 0, 61};
        c.seqlens_q = sq2;
        c.q_offsets = NULL;
        check_simple(srcs[s], c, srcs[s]);
    }
}
END_TEST

/* Global rows whose keys are split in several chunks across threads. */
START_TEST(long_global_rows)
{
    test_reseed(8);
    static const char *const srcs[] = {"pattern g { window 8; global 0..3, 2500, last 2; }",
                                       "pattern h { causal; window -8..+0; global rows 0..40, last 1; }"};
    for (size_t s = 0; s < 2; s++) {
        tcase c = base_case(2, 5000, 64);
        c.Hkv = 2;
        check_simple(srcs[s], c, srcs[s]);
    }
}
END_TEST

START_TEST(empty_rows_and_scale)
{
    test_reseed(9);
    tcase c = base_case(2, 100, 64);
    check_simple("pattern g { global rows 3; }", c, "global rows 3");
    check_simple("pattern e { causal; window +1..+5; }", c, "causal future window: no pair");
    c.scale = -0.75f;
    check_simple("pattern p { window 7 dilation 2; global 5; }", c, "scale -0.75");
    c.scale = 3.0f;
    c.d = 128;
    check_simple("pattern p { window 7 dilation 2; global 5; }", c, "scale 3");
}
END_TEST

/* The vectorised exp, seen through two-key rows: row i attends keys i-1
 * and i, one of which scores a_i and the other 0, and V is one-hot, so
 * O[i] holds the two softmax weights, 1 / (1 + e^-a) and 1 / (1 + e^a).
 * A polynomial off by 1e-5 in one coefficient fails here; an exp within a
 * few ulp (plus the rounding of the scores themselves) passes. */
START_TEST(exp_accuracy)
{
    const int64_t N = 4001, d = 32;
    spat_kernel *k = compile_with("pattern e { causal; window -1..+0; }", NULL, NULL);
    float *q = calloc((size_t)(N * d), sizeof *q), *kk = calloc((size_t)(N * d), sizeof *kk);
    float *v = calloc((size_t)(N * d), sizeof *v), *o = malloc(sizeof(float) * (size_t)(N * d));
    ck_assert(q && kk && v && o);
    for (int64_t i = 0; i < N; i++) {
        q[i * d] = (float)(-8.0 + 16.0 * (double)i / (double)(N - 1));
        kk[i * d] = i % 2 == 0 ? 1.0f : 0.0f;
        v[i * d + i % 2] = 1.0f;
    }
    spat_forward_args a;
    spat_forward_args_init(&a, 1, 1, 1, N, N, d);
    a.q = q, a.k = kk, a.v = v, a.o = o;
    a.scale = 1.0f;
    a.backend = SPAT_BACKEND_CPU;
    ck_assert_int_eq(spat_forward(k, &a), SPAT_OK);
    double worst = 0;
    for (int64_t i = 1; i < N; i++) {
        double s_even = q[i * d]; /* the score of the even key; the odd one scores 0 */
        double w_even = 1.0 / (1.0 + exp(-s_even)), w_odd = 1.0 / (1.0 + exp(s_even));
        double e0 = fabs(o[i * d] - w_even) / w_even, e1 = fabs(o[i * d + 1] - w_odd) / w_odd;
        worst = fmax(worst, fmax(e0, e1));
    }
    ck_assert_msg(worst < 1.5e-6, "softmax weights off by %.3g (relative)", worst);
    free(q), free(kk), free(v), free(o);
    spat_kernel_free(k);
}
END_TEST

/* Any thread count gives the same bytes. */
START_TEST(threads)
{
    test_reseed(10);
    const char *src = "pattern r { block 8; window 3; random 2 blocks seed 9; global 4; stride 11; }";
    spat_kernel *k = compile_with(src, NULL, NULL);
    tcase c = base_case(4, 300, 64);
    c.B = 2;
    c.Hkv = 2;
    c.threads = 1;
    run_case(k, &c, "threads 1");
    bufs x;
    bufs_make(&x, &c);
    size_t bytes = sizeof(float) * (size_t)x.o.nelem;
    float *first = NULL;
    for (int t = 1; t <= 3; t++) {
        spat_forward_args a;
        c.threads = t;
        args_from(&a, &c, &x, SPAT_BACKEND_CPU);
        ck_assert_int_eq(spat_forward(k, &a), SPAT_OK);
        if (!first) {
            first = malloc(bytes);
            memcpy(first, x.o.buf, bytes);
        } else {
            ck_assert_msg(!memcmp(first, x.o.buf, bytes), "threads %d differ from 1 (seed %" PRIu64 ")", t,
                          test_seed);
        }
    }
    free(first);
    bufs_free(&x);
    spat_kernel_free(k);
}
END_TEST

typedef struct par {
    const char *src;
    int rc;
    float out[2 * 64 * 32];
} par;

static void *compile_and_run(void *arg)
{
    par *p = arg;
    spat_kernel *k;
    static const int dims[] = {32};
    spat_compile_options o = {.head_dims = dims, .n_head_dims = 1};
    if ((p->rc = spat_compile(p->src, NULL, &o, &k)) != SPAT_OK)
        return NULL;
    float q[2 * 64 * 32];
    for (int i = 0; i < 2 * 64 * 32; i++)
        q[i] = (float)((i * 37) % 101) / 101.0f - 0.5f;
    spat_forward_args a;
    spat_forward_args_init(&a, 1, 2, 2, 64, 64, 32);
    a.q = a.k = a.v = q;
    a.o = p->out;
    a.backend = SPAT_BACKEND_CPU;
    p->rc = spat_forward(k, &a);
    spat_kernel_free(k);
    return NULL;
}

/* Two threads JIT-compile at once (each its own LLVM context); the same
 * source gives the same code and bytes. */
START_TEST(concurrent_compiles)
{
    enum { NT = 4 };
    static const char *const srcs[2] = {"pattern a { window 9 dilation 3; global 1; }",
                                        "pattern b { causal; stride 5; block 8; random 1 blocks seed 2; }"};
    par *p = calloc(NT, sizeof *p);
    pthread_t t[NT];
    for (int i = 0; i < NT; i++) {
        p[i].src = srcs[i % 2];
        ck_assert_int_eq(pthread_create(&t[i], NULL, compile_and_run, &p[i]), 0);
    }
    for (int i = 0; i < NT; i++) {
        pthread_join(t[i], NULL);
        ck_assert_msg(p[i].rc == SPAT_OK, "thread %d: %d", i, p[i].rc);
    }
    for (int i = 2; i < NT; i++)
        ck_assert(!memcmp(p[i].out, p[i - 2].out, sizeof p[i].out));
    free(p);
}
END_TEST

/* Only f32 on the CPU backend; AUTO picks it for f32 and the reference
 * for the others. */
START_TEST(dtypes_and_auto)
{
    spat_kernel *k = compile_with("pattern w { window 3; }", NULL, NULL);
    float q[2 * 32] = {0}, o[2 * 32];
    spat_forward_args a;
    spat_forward_args_init(&a, 1, 1, 1, 2, 2, 32);
    a.q = a.k = a.v = q;
    a.o = o;
    a.backend = SPAT_BACKEND_CPU;
    ck_assert_int_eq(spat_forward(k, &a), SPAT_OK);
    a.dtype = SPAT_BF16;
    ck_assert_int_eq(spat_forward(k, &a), SPAT_EDTYPE);
    a.backend = SPAT_BACKEND_AUTO;
    ck_assert_int_eq(spat_forward(k, &a), SPAT_OK);
    spat_kernel_free(k);
}
END_TEST

/* Made in main before the tests fork, removed after them. */
static char g_tmpdir[256];

static const char *tmpdir(void)
{
    ck_assert_msg(g_tmpdir[0], "no temporary directory");
    return g_tmpdir;
}

static int write_so(const char *path, const char *src, const char *features)
{
    sp_arena ar;
    sp_diag dg;
    sp_program *prog;
    sp_arena_init(&ar);
    sp_diag_init(&dg, "t.spat", src, strlen(src));
    ck_assert(sp_frontend(src, strlen(src), &ar, &dg, &prog) == 0);
    static const int dims[] = {32, 64, 128};
    sp_module_opts mo = {.cpu_features = features};
    char err[4096];
    int rc = sp_module_write_opts(path, src, strlen(src), "t.spat", prog, NULL, 0, dims, 3, &mo, err,
                                  sizeof err);
    sp_diag_free(&dg);
    sp_arena_free(&ar);
    return rc;
}

/* The same code generator behind both: identical bytes out. */
START_TEST(jit_and_kernel_so)
{
    test_reseed(11);
    const char *src = "pattern a { block 16; window 20; global 0..2; random 1 blocks seed 4; }\n"
                      "pattern b { causal; stride 16; window -40..+0 dilation 4; segment 48; }\n";
    char path[512];
    snprintf(path, sizeof path, "%s/k.so", tmpdir());
    ck_assert_msg(write_so(path, src, NULL) == SPAT_OK, "%s", spat_last_error());
    static const char *const names[] = {"a", "b"};
    for (int p = 0; p < 2; p++) {
        spat_kernel *jit = compile_with(src, names[p], NULL), *so;
        ck_assert_msg(spat_load(path, names[p], &so) == SPAT_OK, "%s", spat_last_error());
        ck_assert(so->backends[SPAT_BACKEND_CPU].available);
        tcase c = base_case(3, 250, 64);
        c.Hkv = 3;
        bufs x;
        bufs_make(&x, &c);
        spat_forward_args a;
        args_from(&a, &c, &x, SPAT_BACKEND_CPU);
        ck_assert_int_eq(spat_forward(jit, &a), SPAT_OK);
        size_t ob = sizeof(float) * (size_t)x.o.nelem, lb = sizeof(float) * (size_t)x.lse.nelem;
        float *o1 = malloc(ob), *l1 = malloc(lb);
        memcpy(o1, x.o.buf, ob);
        memcpy(l1, x.lse.buf, lb);
        ck_assert_int_eq(spat_forward(so, &a), SPAT_OK);
        ck_assert_msg(!memcmp(o1, x.o.buf, ob) && !memcmp(l1, x.lse.buf, lb),
                      "pattern %s: JIT and kernel.so differ (seed %" PRIu64 ")", names[p], test_seed);
        free(o1);
        free(l1);
        bufs_free(&x);
        run_case(so, &c, "kernel.so");
        spat_kernel_free(jit);
        spat_kernel_free(so);
    }
    unlink(path);
}
END_TEST

/* A kernel.so whose code needs a feature this CPU lacks is refused with a
 * message naming it, not run into SIGILL; JIT-compiling for it is refused
 * too (its code would run here). */
START_TEST(foreign_features_refused)
{
    static const struct {
        const char *llvm;
        uint64_t bit;
    } cand[] = {{"+avx512fp16", SP_CPU_F_AVX512FP16},
                {"+avx512vp2intersect", SP_CPU_F_AVX512VP2INTERSECT},
                {"+avx512bf16", SP_CPU_F_AVX512BF16},
                {"+avxvnni", SP_CPU_F_AVXVNNI},
                {"+avx512f", SP_CPU_F_AVX512F}};
    uint64_t host = sp_cpu_host_features();
    int pick = -1;
    for (int i = 0; i < 5 && pick < 0; i++)
        if (!(host & cand[i].bit))
            pick = i;
    if (pick < 0)
        return; /* this CPU has every candidate */
    char path[512];
    snprintf(path, sizeof path, "%s/foreign.so", tmpdir());
    ck_assert_msg(write_so(path, "pattern w { window 3; }", cand[pick].llvm) == SPAT_OK, "%s",
                  spat_last_error());
    spat_kernel *k = NULL;
    int rc = spat_load(path, NULL, &k);
    ck_assert_int_eq(rc, SPAT_ELOAD);
    ck_assert(k == NULL);
    ck_assert_msg(strstr(spat_last_error(), cand[pick].llvm + 1) &&
                  strstr(spat_last_error(), "this CPU lacks"), "%s", spat_last_error());
    spat_compile_options o = {.cpu_features = cand[pick].llvm};
    ck_assert_int_eq(spat_compile("pattern w { window 3; }", NULL, &o, &k), SPAT_EINVAL);
    unlink(path);
}
END_TEST

int main(void)
{
    test_seed_init("test_cpu");
    npattern_files = test_pattern_files(pattern_files, 64);
    snprintf(g_tmpdir, sizeof g_tmpdir, "%s/spat-cpu-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(g_tmpdir))
        g_tmpdir[0] = '\0';
    Suite *s = suite_create("cpu");
    TCase *t = tcase_create("cpu");
    tcase_set_timeout(t, 900);
    tcase_add_loop_test(t, pattern_file, 0, npattern_files ? npattern_files : 1);
    tcase_add_loop_test(t, rule_pattern, 0, n_rule_patterns);
    tcase_add_loop_test(t, forced_isa, 0, 2 * (npattern_files + n_rule_patterns));
    tcase_add_test(t, gqa);
    tcase_add_test(t, layouts);
    tcase_add_test(t, q_offset);
    tcase_add_test(t, chunked_prefill);
    tcase_add_test(t, varlen);
    tcase_add_test(t, long_global_rows);
    tcase_add_test(t, empty_rows_and_scale);
    tcase_add_test(t, threads);
    tcase_add_test(t, exp_accuracy);
    tcase_add_test(t, dtypes_and_auto);
    tcase_add_test(t, concurrent_compiles);
    tcase_add_test(t, jit_and_kernel_so);
    tcase_add_test(t, foreign_features_refused);
    suite_add_tcase(s, t);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    for (int k = 0; k < npattern_files; k++)
        free(pattern_files[k]);
    if (g_tmpdir[0])
        rmdir(g_tmpdir);
    return failed ? 1 : 0;
}
