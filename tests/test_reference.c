/* The reference backend against a dense masked softmax in double precision,
 * whose mask comes from brute_mask (the IR rules read pair by pair, no plan,
 * no view). Inputs are fresh random numbers each run (the seed is printed;
 * SPAT_TEST_SEED repeats a run); every tensor lives in a buffer larger than
 * its layout whose unused bytes are NaN (inputs: reading one shows up in O)
 * or poison (outputs: any write outside O and LSE's elements is caught). */
#include <check.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "brute.h"
#include "frontend.h"
#include "internal.h"
#include "rule_patterns.h"
#include "spat.h"
#include "tensor.h"
#include "testutil.h"

static const int64_t lengths[] = {1, 7, 63, 64, 65, 200};
enum { NLENGTHS = sizeof lengths / sizeof *lengths };

/* ---------------------------------------------------------------- cases */

static tcase base_case(int64_t heads, int64_t L)
{
    tcase c = tcase_base(heads, L, 16);
    c.tol = 1e-5;
    return c;
}

/* The dense masked softmax of one (batch, head) and its comparison with
 * O and LSE; accumulates the squared error and norm for the caller. */
typedef struct errs {
    double diff2, norm2, lse_err;
    int64_t empty_rows, rows;
} errs;

static void check_head(const sp_pattern *p, const tcase *c, const bufs *x, int64_t b, int64_t h,
                       errs *e, const char *ctx)
{
    int64_t nq = c->seqlens_q ? c->seqlens_q[b] : c->Nq;
    int64_t L = c->seqlens_k ? c->seqlens_k[b] : c->Nk;
    int64_t off = c->q_offsets ? c->q_offsets[b] : c->q_offset;
    int64_t hk = h / (c->Hq / c->Hkv);
    double scale = c->scale != 0 ? c->scale : 1 / sqrt((double)c->d);
    unsigned char *mask = malloc((size_t)(L * L > 0 ? L * L : 1));
    double *s = malloc(sizeof(double) * (size_t)(L > 0 ? L : 1));
    double *o = malloc(sizeof(double) * (size_t)c->d);
    ck_assert(mask && s && o);
    if (L > 0)
        brute_mask(p, h, L, mask);
    for (int64_t r = 0; r < c->Nq; r++) {
        int64_t i = r + off;
        double m = -INFINITY;
        int64_t nkeys = 0;
        for (int64_t j = 0; r < nq && j < L; j++) {
            if (!mask[i * L + j])
                continue;
            double dot = 0;
            for (int64_t t = 0; t < c->d; t++)
                dot += tensor_get(&x->q, c->dt, tensor_off(&x->q, b, h, r, t)) *
                       tensor_get(&x->k, c->dt, tensor_off(&x->k, b, hk, j, t));
            s[j] = scale * dot;
            m = fmax(m, s[j]);
            nkeys++;
        }
        memset(o, 0, sizeof(double) * (size_t)c->d);
        double sum = 0;
        for (int64_t j = 0; r < nq && j < L; j++) {
            if (!mask[i * L + j])
                continue;
            double w = exp(s[j] - m);
            sum += w;
            for (int64_t t = 0; t < c->d; t++)
                o[t] += w * tensor_get(&x->v, c->dt, tensor_off(&x->v, b, hk, j, t));
        }
        double want_lse = nkeys ? m + log(sum) : -INFINITY;
        double got_lse = tensor_get(&x->lse, SPAT_F32, tensor_off(&x->lse, b, h, r, 0));
        e->rows++;
        if (!nkeys) {
            /* Empty and padding rows: exactly zero and -inf, never NaN. */
            e->empty_rows++;
            ck_assert_msg(got_lse == -INFINITY, "%s: b %" PRId64 " h %" PRId64 " row %" PRId64
                          " has no key but LSE = %g (seed %" PRIu64 ")", ctx, b, h, r, got_lse, test_seed);
            for (int64_t t = 0; t < c->d; t++) {
                double g = tensor_get(&x->o, c->dt, tensor_off(&x->o, b, h, r, t));
                ck_assert_msg(g == 0 && !signbit(g), "%s: b %" PRId64 " h %" PRId64 " row %" PRId64
                              " has no key but O[%" PRId64 "] = %g (seed %" PRIu64 ")", ctx, b, h, r,
                              t, g, test_seed);
            }
            continue;
        }
        double le = fabs(got_lse - want_lse) / fmax(1, fabs(want_lse));
        ck_assert_msg(le < 1e-5, "%s: b %" PRId64 " h %" PRId64 " row %" PRId64 ": LSE %.9g, want %.9g (seed %" PRIu64 ")",
                      ctx, b, h, r, got_lse, want_lse, test_seed);
        e->lse_err = fmax(e->lse_err, le);
        for (int64_t t = 0; t < c->d; t++) {
            double want = o[t] / sum, got = tensor_get(&x->o, c->dt, tensor_off(&x->o, b, h, r, t));
            ck_assert_msg(isfinite(got), "%s: b %" PRId64 " h %" PRId64 " row %" PRId64 ": O[%" PRId64 "] = %g (seed %" PRIu64 ")",
                          ctx, b, h, r, t, got, test_seed);
            e->diff2 += (got - want) * (got - want);
            e->norm2 += want * want;
        }
    }
    free(mask);
    free(s);
    free(o);
}

/* Runs c on pattern p (kernel k) and checks everything; returns the error
 * summary for tests that want more. */
static errs run_case(const spat_kernel *k, const sp_pattern *p, const tcase *c, const char *what)
{
    char ctx[512];
    snprintf(ctx, sizeof ctx, "%s [B %" PRId64 " Hq %" PRId64 " Hkv %" PRId64 " Nq %" PRId64
             " Nk %" PRId64 " d %" PRId64 " dtype %d]", what, c->B, c->Hq, c->Hkv, c->Nq, c->Nk,
             c->d, (int)c->dt);
    bufs x;
    bufs_make(&x, c);
    spat_forward_args a;
    args_from(&a, c, &x, SPAT_BACKEND_REFERENCE);
    int rc = spat_forward(k, &a);
    ck_assert_msg(rc == SPAT_OK, "%s: spat_forward = %d: %s", ctx, rc, spat_last_error());
    check_untouched_outside(&x.o, "O", ctx);
    check_untouched_outside(&x.lse, "LSE", ctx);
    errs e = {0};
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t h = 0; h < c->Hq; h++)
            check_head(p, c, &x, b, h, &e, ctx);
    double rel = e.norm2 > 0 ? sqrt(e.diff2 / e.norm2) : sqrt(e.diff2);
    ck_assert_msg(rel < c->tol, "%s: relative error of O %.3g > %.3g (seed %" PRIu64 ")", ctx, rel,
                  c->tol, test_seed);
    bufs_free(&x);
    return e;
}

/* ------------------------------------------------------------- patterns */

typedef struct loaded {
    sp_arena a;
    sp_diag d;
    sp_program *prog;
} loaded;

static void load_source(loaded *l, const char *file, const char *src)
{
    sp_arena_init(&l->a);
    sp_diag_init(&l->d, file, src, strlen(src));
    ck_assert_msg(sp_frontend(src, strlen(src), &l->a, &l->d, &l->prog) == 0, "%s:\n%s", file,
                  sp_diag_text(&l->d));
}

static void unload(loaded *l)
{
    sp_diag_free(&l->d);
    sp_arena_free(&l->a);
}

static const int test_dims[] = {8, 16, 64};

static spat_kernel *compile_or_fail(const char *src, const char *name)
{
    spat_compile_options o = {.head_dims = test_dims, .n_head_dims = 3, .filename = "test"};
    spat_kernel *k = NULL;
    int rc = spat_compile(src, name, &o, &k);
    ck_assert_msg(rc == SPAT_OK, "spat_compile(%s) = %d: %s", name ? name : "(only)", rc,
                  spat_last_error());
    return k;
}

/* Every pattern of src at every length; batch 2 at the odd lengths. */
static void check_source_all_lengths(const char *file, const char *src)
{
    loaded l;
    load_source(&l, file, src);
    for (int pi = 0; pi < l.prog->npatterns; pi++) {
        const sp_pattern *p = &l.prog->patterns[pi];
        spat_kernel *k = compile_or_fail(src, p->name);
        for (int li = 0; li < NLENGTHS; li++) {
            tcase c = base_case(p->nheads ? p->nheads : 2, lengths[li]);
            c.B = lengths[li] % 2 ? 2 : 1;
            char what[256];
            snprintf(what, sizeof what, "%s: pattern %s", file, p->name);
            run_case(k, p, &c, what);
        }
        spat_kernel_free(k);
    }
    unload(&l);
}

static char *pattern_files[64];
static int npattern_files;



START_TEST(pattern_file)
{
    ck_assert_msg(npattern_files >= 9, "patterns/ not found (SPAT_SRCDIR): %d files", npattern_files);
    test_reseed(100 + (uint64_t)_i);
    char *src = test_slurp(pattern_files[_i]);
    check_source_all_lengths(pattern_files[_i], src);
    free(src);
}
END_TEST

START_TEST(rule_pattern)
{
    test_reseed(1000 + (uint64_t)_i);
    char name[64];
    snprintf(name, sizeof name, "rule_patterns[%d]", _i);
    check_source_all_lengths(name, rule_patterns[_i]);
}
END_TEST

/* ---------------------------------------------------------- edge cases */

/* `global rows 3;` alone: every row but 3 attends nothing. */
START_TEST(empty_rows)
{
    test_reseed(2);
    const char *src = "pattern g { global rows 3; }";
    loaded l;
    load_source(&l, "g", src);
    spat_kernel *k = compile_or_fail(src, NULL);
    for (int li = 0; li < NLENGTHS; li++) {
        tcase c = base_case(2, lengths[li]);
        errs e = run_case(k, &l.prog->patterns[0], &c, "global rows 3");
        int64_t full = lengths[li] > 3 ? 1 : 0;
        ck_assert_int_eq(e.empty_rows, e.rows - full * c.Hq);
    }
    spat_kernel_free(k);
    unload(&l);
}
END_TEST

static void check_simple(const char *src, tcase c, const char *what)
{
    loaded l;
    load_source(&l, what, src);
    spat_kernel *k = compile_or_fail(src, NULL);
    run_case(k, &l.prog->patterns[0], &c, what);
    spat_kernel_free(k);
    unload(&l);
}

static const char *const gqa_sources[] = {
    "pattern w { window 5; }",
    "pattern r { block 8; causal; random 2 blocks seed 3; window -3..+0; }",
    "pattern s { stride 6; global 0; }",
};

START_TEST(gqa)
{
    test_reseed(3);
    for (size_t s = 0; s < sizeof gqa_sources / sizeof *gqa_sources; s++)
        for (int hkv = 1; hkv <= 4; hkv *= 2) {
            tcase c = base_case(4, 65);
            c.Hkv = hkv;
            c.B = 2;
            check_simple(gqa_sources[s], c, gqa_sources[s]);
        }
}
END_TEST

START_TEST(layouts)
{
    test_reseed(4);
    const char *src = "pattern p { block 8; window 4; global 1; random 1 blocks seed 2; stride 9; }";
    const layout ls[] = {BHSD, BSHD_PAD, ODD, ODD2};
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++) {
            tcase c = base_case(4, 63);
            c.B = 2;
            c.Hkv = 2;
            c.lq = ls[a];
            c.lk = ls[b];
            c.lv = ls[(a + b) % 4];
            c.lo = ls[(a + 3 * b) % 4];
            c.llse = ls[(2 * a + b) % 4];
            char what[64];
            snprintf(what, sizeof what, "layouts %d %d", a, b);
            check_simple(src, c, what);
        }
}
END_TEST

/* Decoding against a cache: q_offset > 0, queries shorter than keys. */
START_TEST(q_offset)
{
    test_reseed(5);
    const char *srcs[] = {"pattern c { causal; window -9..+0; global 0..2; }",
                          "pattern f { block 16; window 1 blocks; random 1 blocks seed 8; }"};
    for (int s = 0; s < 2; s++)
        for (int64_t off = 0; off <= 150; off += 50) {
            tcase c = base_case(2, 200);
            c.Nq = 200 - off - (off % 3);
            c.q_offset = off;
            check_simple(srcs[s], c, srcs[s]);
        }
}
END_TEST

/* Chunked prefill: a chunk of rows run at its offset gives the bytes of
 * the same rows of the full computation. */
START_TEST(chunked_prefill)
{
    test_reseed(6);
    const char *src = "pattern c { causal; block 16; window -20..+0; global 0..3; random 2 blocks seed 5; }";
    spat_kernel *k = compile_or_fail(src, NULL);
    tcase c = base_case(2, 130);
    c.B = 2;
    bufs x;
    bufs_make(&x, &c);
    spat_forward_args full;
    args_from(&full, &c, &x, SPAT_BACKEND_REFERENCE);
    ck_assert_int_eq(spat_forward(k, &full), SPAT_OK);
    const int64_t cuts[] = {0, 1, 17, 64, 100, 130};
    for (int ci = 0; ci + 1 < 6; ci++) {
        int64_t r0 = cuts[ci], r1 = cuts[ci + 1];
        tensor o2 = x.o, lse2 = x.lse;
        o2.buf = malloc((size_t)x.o.nelem * 4);
        lse2.buf = malloc((size_t)x.lse.nelem * 4);
        ck_assert(o2.buf && lse2.buf);
        spat_forward_args a = full;
        a.seq_q = r1 - r0;
        a.q_offset = r0;
        a.q = x.q.buf + tensor_off(&x.q, 0, 0, r0, 0) * 4;
        a.o = o2.buf + tensor_off(&o2, 0, 0, r0, 0) * 4;
        a.lse = (float *)(lse2.buf + tensor_off(&lse2, 0, 0, r0, 0) * 4);
        ck_assert_msg(spat_forward(k, &a) == SPAT_OK, "%s", spat_last_error());
        for (int64_t b = 0; b < 2; b++)
            for (int64_t h = 0; h < 2; h++)
                for (int64_t r = r0; r < r1; r++) {
                    ck_assert_msg(!memcmp(o2.buf + tensor_off(&o2, b, h, r, 0) * 4,
                                          x.o.buf + tensor_off(&x.o, b, h, r, 0) * 4, (size_t)c.d * 4),
                                  "chunk %" PRId64 "..%" PRId64 ": row %" PRId64 " differs (seed %" PRIu64 ")",
                                  r0, r1, r, test_seed);
                    ck_assert(!memcmp(lse2.buf + tensor_off(&lse2, b, h, r, 0) * 4,
                                      x.lse.buf + tensor_off(&x.lse, b, h, r, 0) * 4, 4));
                }
        free(o2.buf);
        free(lse2.buf);
    }
    bufs_free(&x);
    spat_kernel_free(k);
}
END_TEST

/* Padding and per-batch offsets: batch 0 full, 1 short, 2 empty, 3 a
 * decode step against a long cache. */
START_TEST(varlen)
{
    test_reseed(7);
    const char *srcs[] = {"pattern c { causal; window -9..+0; global 0..2, last 4; }",
                          "pattern v { block 8; window 1 blocks; columns 0..1 mod 10; random 2 blocks seed 6; }"};
    static const int32_t sq[] = {70, 33, 0, 1}, sk[] = {70, 50, 0, 61};
    static const int64_t offs[] = {0, 17, 0, 60};
    for (int s = 0; s < 2; s++) {
        tcase c = base_case(2, 70);
        c.B = 4;
        c.seqlens_q = sq;
        c.seqlens_k = sk;
        c.q_offsets = offs;
        c.lq = BSHD_PAD;
        c.lo = BSHD_PAD;
        check_simple(srcs[s], c, srcs[s]);
        /* The same lengths through seqlens alone (q_offset 0 everywhere). */
        static const int32_t sq2[] = {70, 50, 0, 61};
        c.seqlens_q = sq2;
        c.q_offsets = NULL;
        check_simple(srcs[s], c, srcs[s]);
    }
}
END_TEST

START_TEST(half_storage)
{
    test_reseed(8);
    const char *src = "pattern p { block 8; window 6; global 0, last 2; random 2 blocks seed 1; }";
    const spat_dtype dts[] = {SPAT_F16, SPAT_BF16};
    for (int t = 0; t < 2; t++) {
        tcase c = base_case(4, 65);
        c.B = 2;
        c.Hkv = 2;
        c.dt = dts[t];
        c.tol = 1e-2;
        c.lo = ODD;
        check_simple(src, c, t ? "bf16" : "f16");
        c.d = 64;
        c.Nq = c.Nk = 200;
        check_simple(src, c, t ? "bf16 d64" : "f16 d64");
    }
}
END_TEST

START_TEST(head_dim_and_scale)
{
    test_reseed(9);
    const char *src = "pattern p { window 7 dilation 2; global 5; }";
    tcase c = base_case(3, 64);
    c.d = 64;
    check_simple(src, c, "d 64");
    c.d = 8;
    c.scale = -0.75f;
    check_simple(src, c, "d 8, scale -0.75");
    c.scale = 3.0f;
    check_simple(src, c, "d 8, scale 3");
}
END_TEST

/* Round to nearest even, ties, overflow, subnormals. */
START_TEST(conversions)
{
    const struct { double x; uint16_t f16, bf16; } t[] = {
        {0.0, 0x0000, 0x0000},
        {-0.0, 0x8000, 0x8000},
        {1.0, 0x3c00, 0x3f80},
        {-2.0, 0xc000, 0xc000},
        {1 + 0x1p-11, 0x3c00, 0x3f80},         /* f16 tie: to even */
        {1 + 3 * 0x1p-11, 0x3c02, 0x3f80},     /* f16 tie: up to even */
        {1 + 0x1p-11 + 0x1p-30, 0x3c01, 0x3f80}, /* just above the tie */
        {1 + 0x1p-8, 0x3c04, 0x3f80},          /* bf16 tie: to even */
        {1 + 3 * 0x1p-8, 0x3c0c, 0x3f82},      /* bf16 tie: up */
        {65504.0, 0x7bff, 0x4780},             /* bf16 rounds up to 2^16 */
        {65519.99, 0x7bff, 0x4780},
        {65520.0, 0x7c00, 0x4780},             /* rounds past the largest f16 */
        {0x1p-24, 0x0001, 0x3380},             /* smallest f16 subnormal */
        {0x1p-25, 0x0000, 0x3300},             /* tie to even: zero */
        {3 * 0x1p-25, 0x0002, 0x33c0},
        {0x1p-14, 0x0400, 0x3880},             /* smallest f16 normal */
        {0x1p-14 - 0x1p-25, 0x0400, 0x3880},   /* subnormal tie rounds up into normal */
        {1e30, 0x7c00, 0x714a},
        {0x1p-133, 0x0000, 0x0001},            /* smallest bf16 subnormal */
        {0x1p-134, 0x0000, 0x0000},
        {INFINITY, 0x7c00, 0x7f80},
        {-INFINITY, 0xfc00, 0xff80},
        {3.0e38, 0x7c00, 0x7f62},
        {3.4e38, 0x7c00, 0x7f80},              /* past the largest bf16 */
    };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        ck_assert_msg(sp_f16_from_double(t[i].x) == t[i].f16, "f16(%a) = %04x, want %04x", t[i].x,
                      sp_f16_from_double(t[i].x), t[i].f16);
        ck_assert_msg(sp_bf16_from_double(t[i].x) == t[i].bf16, "bf16(%a) = %04x, want %04x",
                      t[i].x, sp_bf16_from_double(t[i].x), t[i].bf16);
    }
    uint16_t n16 = sp_f16_from_double(NAN), nb = sp_bf16_from_double(NAN);
    ck_assert(isnan(test_f16_value(n16)) && isnan(test_bf16_value(nb)));
    /* Every finite f16 and bf16 value converts back to itself. */
    for (uint32_t h = 0; h < 0x10000; h++) {
        double v = test_f16_value((uint16_t)h), w = test_bf16_value((uint16_t)h);
        if (!isnan(v))
            ck_assert_msg(sp_f16_from_double(v) == h, "f16 %04x", h);
        if (!isnan(w))
            ck_assert_msg(sp_bf16_from_double(w) == h, "bf16 %04x", h);
        if (!isnan(v))
            ck_assert(sp_f16_to_double((uint16_t)h) == v);
        if (!isnan(w))
            ck_assert(sp_bf16_to_double((uint16_t)h) == w);
    }
}
END_TEST

/* ------------------------------------------------------------- threads */

typedef struct shared_run {
    const spat_kernel *k;
    spat_forward_args a;
    int rc;
} shared_run;

static void *run_forward(void *arg)
{
    shared_run *s = arg;
    for (int n = 0; n < 5 && s->rc == SPAT_OK; n++)
        s->rc = spat_forward(s->k, &s->a);
    return NULL;
}

/* Any thread count gives the same bytes, and several threads may share a
 * kernel (each with its own output). */
START_TEST(threads)
{
    test_reseed(10);
    const char *src = "pattern r { block 8; window 3; random 2 blocks seed 9; global 4; }";
    spat_kernel *k = compile_or_fail(src, NULL);
    tcase c = base_case(4, 100);
    c.B = 3;
    c.Hkv = 2;
    bufs x;
    bufs_make(&x, &c);
    spat_forward_args a;
    args_from(&a, &c, &x, SPAT_BACKEND_REFERENCE);
    a.threads = 1;
    ck_assert_int_eq(spat_forward(k, &a), SPAT_OK);
    size_t obytes = (size_t)x.o.nelem * 4, lbytes = (size_t)x.lse.nelem * 4;
    enum { NT = 4 };
    shared_run runs[NT];
    pthread_t tid[NT];
    const int counts[NT] = {0, 2, 3, 64};
    void *outs[NT], *lses[NT];
    for (int t = 0; t < NT; t++) {
        outs[t] = malloc(obytes);
        lses[t] = malloc(lbytes);
        ck_assert(outs[t] && lses[t]);
        runs[t] = (shared_run){.k = k, .a = a, .rc = SPAT_OK};
        runs[t].a.threads = counts[t];
        runs[t].a.o = (char *)outs[t] + x.o.base * 4;
        runs[t].a.lse = (float *)((char *)lses[t] + x.lse.base * 4);
        ck_assert_int_eq(pthread_create(&tid[t], NULL, run_forward, &runs[t]), 0);
    }
    for (int t = 0; t < NT; t++) {
        pthread_join(tid[t], NULL);
        ck_assert_msg(runs[t].rc == SPAT_OK, "thread %d: %d", t, runs[t].rc);
        /* Only the elements: the unused bytes of each buffer are not compared. */
        for (int64_t b = 0; b < c.B; b++)
            for (int64_t h = 0; h < c.Hq; h++)
                for (int64_t r = 0; r < c.Nq; r++) {
                    int64_t oo = tensor_off(&x.o, b, h, r, 0) * 4, lo = tensor_off(&x.lse, b, h, r, 0) * 4;
                    ck_assert(!memcmp((char *)outs[t] + oo, x.o.buf + oo, (size_t)c.d * 4));
                    ck_assert(!memcmp((char *)lses[t] + lo, x.lse.buf + lo, 4));
                }
        free(outs[t]);
        free(lses[t]);
    }
    bufs_free(&x);
    spat_kernel_free(k);
}
END_TEST

int main(void)
{
    test_seed_init("test_reference");
    npattern_files = test_pattern_files(pattern_files, 64);
    Suite *s = suite_create("reference");
    TCase *t = tcase_create("reference");
    tcase_set_timeout(t, 600);
    tcase_add_test(t, conversions);
    tcase_add_loop_test(t, pattern_file, 0, npattern_files ? npattern_files : 1);
    tcase_add_loop_test(t, rule_pattern, 0, n_rule_patterns);
    tcase_add_test(t, empty_rows);
    tcase_add_test(t, gqa);
    tcase_add_test(t, layouts);
    tcase_add_test(t, q_offset);
    tcase_add_test(t, chunked_prefill);
    tcase_add_test(t, varlen);
    tcase_add_test(t, half_storage);
    tcase_add_test(t, head_dim_and_scale);
    tcase_add_test(t, threads);
    suite_add_tcase(s, t);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    for (int k = 0; k < npattern_files; k++)
        free(pattern_files[k]);
    return failed ? 1 : 0;
}
