/* The CUDA backend's work that needs no GPU: the generated source of every
 * pattern in patterns/ and of every rule pattern compiles with NVRTC, for
 * sm_80 and sm_90a, without a single warning; the on-disk cache writes
 * atomically and rebuilds corrupt entries; NVRTC and driver failures come
 * back as spat errors carrying the compiler's log.
 *
 * NVRTC is opened with dlopen like the runtime does. When it is genuinely
 * absent, the compile tests say so and pass as skipped; the cache tests
 * run anyway. Compiles go two at a time (NVRTC is thread-safe across
 * programs); each (pattern, arch) pair takes one (head dim, dtype), in
 * rotation, and a few suite patterns take all six. Each part of a source
 * (SP_KERNEL) defines exactly its kernels. */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backend_cuda.h"
#include "cuda_api.h"
#include "cuda_cache.h"
#include "cuda_run.h"
#include "frontend.h"
#include "internal.h"
#include "rule_patterns.h"
#include "testutil.h"

/* ------------------------------------------------------------- sources */

typedef struct job {
    char name[128];
    char *src;
    size_t len;
    int d, dtype;
    const char *arch;
    /* results */
    int rc;
    char *log;
    double ms;
} job;

static const int dims[] = {64, 128}; /* the head dims of the full runs */
static const char *const archs[] = {"sm_80", "sm_90a"};
static const char *const full_matrix[] = {"longformer", "bigbird", "dilated4", "strided128"};

/* Source of every pattern in text (one or more), appended to *jobs. With
 * dims2 (two head dims), every pattern is compiled at those in every dtype
 * instead of the rotation over dims. */
static void add_sources(const char *text, const char *file, job **jobs, int *n, int *cap,
                        int *serial, const int *dims2)
{
    sp_arena a;
    sp_arena_init(&a);
    sp_diag d;
    sp_diag_init(&d, file, text, strlen(text));
    sp_program *prog = NULL;
    ck_assert_msg(sp_frontend(text, strlen(text), &a, &d, &prog) == 0 && prog, "%s: %s", file,
                  sp_diag_text(&d));
    for (int p = 0; p < prog->npatterns; p++) {
        sp_plan *plan;
        ck_assert_int_eq(sp_plan_build(&prog->patterns[p], &a, &d, &plan), 0);
        char msg[512], *src;
        size_t len;
        ck_assert_msg(sp_cuda_source(plan, &src, &len, msg, sizeof msg) == 0, "%s: %s", file, msg);
        ck_assert(len == strlen(src) && strstr(src, "extern \"C\" __global__"));
        bool full = false;
        for (size_t f = 0; f < sizeof full_matrix / sizeof *full_matrix; f++)
            full |= !strcmp(plan->name, full_matrix[f]);
        for (int ar = 0; ar < 2; ar++)
            for (int c = 0; c < 6; c++) {
                if (!full && !dims2 && c != (*serial + ar) % 6)
                    continue;
                if (*n == *cap) {
                    *cap = *cap ? 2 * *cap : 64;
                    *jobs = realloc(*jobs, sizeof **jobs * (size_t)*cap);
                    ck_assert(*jobs);
                }
                job *j = &(*jobs)[(*n)++];
                memset(j, 0, sizeof *j);
                snprintf(j->name, sizeof j->name, "%s", plan->name);
                j->src = strdup(src);
                j->len = len;
                j->d = (dims2 ? dims2 : dims)[c / 3];
                j->dtype = c % 3;
                j->arch = archs[ar];
            }
        (*serial)++;
        free(src);
    }
    sp_diag_free(&d);
    sp_arena_free(&a);
}

static job *g_jobs;
static int g_njobs;
static atomic_int g_next;
static const sp_nvrtc *g_nv;

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void *worker(void *arg)
{
    (void)arg;
    for (int i; (i = atomic_fetch_add(&g_next, 1)) < g_njobs;) {
        job *j = &g_jobs[i];
        char buf[SP_CUDA_MAX_OPTS][64], name[160];
        const char *opts[SP_CUDA_MAX_OPTS];
        int nopts = sp_cuda_options(j->d, j->dtype, j->arch, SP_CUDA_PART_ALL, buf, opts);
        snprintf(name, sizeof name, "%s.cu", j->name);
        void *img = NULL;
        size_t len = 0;
        double t0 = now_ms();
        j->rc = sp_nvrtc_compile(g_nv, j->src, name, opts, nopts, false, &img, &len, &j->log);
        j->ms = now_ms() - t0;
        if (j->rc == SPAT_OK && len < 1000)
            j->rc = -1; /* a CUBIN is never that small */
        if (j->rc != SPAT_OK && !j->log)
            j->log = strdup(spat_last_error());
        free(img);
    }
    return NULL;
}

/* NVRTC into g_nv; without it the calling test says SKIP and returns. */
static bool have_nvrtc(void)
{
    g_nv = sp_nvrtc_get();
    if (!g_nv)
        printf("SKIP: NVRTC is not available here (%s)\n", spat_last_error());
    return g_nv != NULL;
}

/* Compiles g_jobs on two threads, prints the first failures and frees
 * them; returns how many had errors or warnings. */
static int run_jobs(void)
{
    atomic_init(&g_next, 0);
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, worker, NULL), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    int bad = 0;
    double total = 0;
    for (int i = 0; i < g_njobs; i++) {
        job *j = &g_jobs[i];
        total += j->ms;
        const bool clean = j->rc == SPAT_OK && j->log && !j->log[0];
        if (!clean && bad++ < 5)
            printf("FAIL %s d=%d dtype=%d %s: rc %d, log:\n%s\n", j->name, j->d, j->dtype, j->arch,
                   j->rc, j->log ? j->log : "(none)");
    }
    printf("%d compiles, %.1f s of NVRTC time, %d with errors or warnings\n", g_njobs, total / 1e3,
           bad);
    for (int i = 0; i < g_njobs; i++) {
        free(g_jobs[i].src);
        free(g_jobs[i].log);
    }
    free(g_jobs);
    g_jobs = NULL;
    g_njobs = 0;
    return bad;
}

START_TEST(every_pattern_compiles_without_warnings)
{
    if (!have_nvrtc())
        return;
    printf("NVRTC %d.%d from %s\n", g_nv->major, g_nv->minor, g_nv->path);
    int cap = 0, serial = 0;
    char *files[64];
    int nf = test_pattern_files(files, 64);
    ck_assert_int_gt(nf, 8);
    for (int i = 0; i < nf; i++) {
        char *text = test_slurp(files[i]);
        add_sources(text, files[i], &g_jobs, &g_njobs, &cap, &serial, NULL);
        free(text);
        free(files[i]);
    }
    for (int i = 0; i < n_rule_patterns; i++)
        add_sources(rule_patterns[i], "rule_patterns.c", &g_jobs, &g_njobs, &cap, &serial, NULL);
    ck_assert_int_eq(run_jobs(), 0);
}
END_TEST

/* Head dims other than 64 and 128 take other paths through the engine:
 * the mma.sync or FMA tiles instead of wgmma, K/V copies whose swizzle
 * offsets step by rows (d = 8, 32) or are worked out per row (d = 256),
 * the element-wise staging (d = 96: 12 chunks per row do not divide the
 * CTA). One small pattern with all three passes (global rows and columns,
 * a band, a dilated band), every dtype and target. */
START_TEST(other_head_dims_compile_without_warnings)
{
    if (!have_nvrtc())
        return;
    static const char text[] = "pattern other_dims { global 0..15; window 64; window 256 dilation 4; }";
    int cap = 0, serial = 0;
    static const int pairs[2][2] = {{8, 32}, {96, 256}};
    for (int i = 0; i < 2; i++)
        add_sources(text, "other_dims", &g_jobs, &g_njobs, &cap, &serial, pairs[i]);
    ck_assert_int_eq(g_njobs, 24);
    ck_assert_int_eq(run_jobs(), 0);
}
END_TEST

/* ------------------------------------------------------------- parts */

/* The runtime compiles each part of a source (SP_KERNEL, backend_cuda.h)
 * as its own program and takes each kernel from the part meant to define
 * it, and spat_smem from every part: so a part must define exactly its
 * kernels, and spat_smem. PTX for one architecture keeps this quick. */
typedef struct part_job {
    const char *src;
    int part, rc;
    char *ptx, *log;
} part_job;

/* The PTX of one part of src (SP_CUDA_PART_*) for (arch, d, dtype), and
 * NVRTC's log (an error message where NVRTC left none). */
static int part_ptx(const char *src, const char *arch, int d, int dtype, int part, char **ptx, char **log)
{
    char buf[SP_CUDA_MAX_OPTS][64];
    const char *opts[SP_CUDA_MAX_OPTS];
    int nopts = sp_cuda_options(d, dtype, arch, part, buf, opts);
    void *out = NULL;
    size_t len = 0;
    *log = NULL;
    int rc = sp_nvrtc_compile(g_nv, src, "part.cu", opts, nopts, true, &out, &len, log);
    if (rc != SPAT_OK && !*log)
        *log = strdup(spat_last_error());
    *ptx = out;
    return rc;
}

static void *compile_part_ptx(void *arg)
{
    part_job *j = arg;
    j->rc = part_ptx(j->src, "sm_80", 64, SPAT_F32, j->part, &j->ptx, &j->log);
    return NULL;
}

/* Does the PTX define the kernel? (".entry spat_rows(" is not
 * ".entry spat_rows_merge(".) */
static bool ptx_has_entry(const char *ptx, const char *kernel)
{
    char needle[96];
    snprintf(needle, sizeof needle, ".entry %s(", kernel);
    return strstr(ptx, needle) != NULL;
}

/* The plan of the first pattern of `text`, in a (freed with d by the
 * caller: sp_diag_free, sp_arena_free). */
static sp_plan *plan_of(const char *text, sp_arena *a, sp_diag *d)
{
    sp_arena_init(a);
    sp_diag_init(d, "test", text, strlen(text));
    sp_program *prog = NULL;
    sp_plan *plan = NULL;
    ck_assert_msg(sp_frontend(text, strlen(text), a, d, &prog) == 0 && prog, "%s", sp_diag_text(d));
    ck_assert_int_eq(sp_plan_build(&prog->patterns[0], a, d, &plan), 0);
    return plan;
}

START_TEST(each_part_defines_its_kernels)
{
    if (!have_nvrtc())
        return;
    /* Direct, remap (the dilated band) and rows (the global rows). */
    const char *text = "pattern parts { global 0..15; heads 0..3 { window 256; } "
                       "heads 4..7 { window 512 dilation 2; } }";
    sp_arena a;
    sp_diag d;
    sp_plan *plan = plan_of(text, &a, &d);
    bool has[SP_CUDA_NPARTS] = {false};
    for (int c = 0; c < plan->nclasses; c++) {
        sp_cuda_class cc;
        sp_cuda_classify(&plan->classes[c], &cc);
        has[SP_CUDA_PART_DIRECT] |= cc.ndirect > 0;
        has[SP_CUDA_PART_REMAP] |= cc.nremap > 0;
        has[SP_CUDA_PART_ROWS] |= cc.rows >= 0;
    }
    for (int p = 0; p < SP_CUDA_NPARTS; p++)
        ck_assert_msg(has[p], "the pattern lacks part %d", p);
    char msg[512], *src;
    size_t len;
    ck_assert_msg(sp_cuda_source(plan, &src, &len, msg, sizeof msg) == 0, "%s", msg);

    static const char *const kernels[] = {SP_CUDA_K_DIRECT, SP_CUDA_K_REMAP, SP_CUDA_K_ROWS,
                                          SP_CUDA_K_MERGE};
    static const int part_of[] = {SP_CUDA_PART_DIRECT, SP_CUDA_PART_REMAP, SP_CUDA_PART_ROWS,
                                  SP_CUDA_PART_ROWS};
    part_job jobs[SP_CUDA_NPARTS];
    pthread_t t[SP_CUDA_NPARTS];
    double t0 = now_ms();
    for (int p = 0; p < SP_CUDA_NPARTS; p++) {
        jobs[p] = (part_job){.src = src, .part = p};
        ck_assert_int_eq(pthread_create(&t[p], NULL, compile_part_ptx, &jobs[p]), 0);
    }
    for (int p = 0; p < SP_CUDA_NPARTS; p++)
        pthread_join(t[p], NULL);
    printf("%d parts to PTX in %.1f s\n", SP_CUDA_NPARTS, (now_ms() - t0) / 1e3);
    for (int p = 0; p < SP_CUDA_NPARTS; p++) {
        part_job *j = &jobs[p];
        ck_assert_msg(j->rc == SPAT_OK && j->log && !j->log[0], "part %d: rc %d, log:\n%s", p, j->rc,
                      j->log ? j->log : "(none)");
        ck_assert_msg(strstr(j->ptx, " spat_smem = "), "part %d lacks spat_smem", p);
        for (int k = 0; k < 4; k++)
            ck_assert_msg(ptx_has_entry(j->ptx, kernels[k]) == (part_of[k] == p), "part %d %s %s", p,
                          part_of[k] == p ? "lacks" : "defines", kernels[k]);
        free(j->ptx);
        free(j->log);
    }
    /* A part that does not exist is an error, not an empty program. */
    part_job bad = {.src = src, .part = SP_CUDA_NPARTS};
    compile_part_ptx(&bad);
    ck_assert_int_eq(bad.rc, SPAT_ENVRTC);
    ck_assert_msg(bad.log && strstr(bad.log, "no such part"), "%s", bad.log ? bad.log : "(none)");
    free(bad.ptx);
    free(bad.log);
    free(src);
    sp_diag_free(&d);
    sp_arena_free(&a);
}
END_TEST

/* ------------------------------------------------------- tile width */

/* The generated source of pattern `text` (the first of the program). */
static char *source_of(const char *text)
{
    sp_arena a;
    sp_diag d;
    sp_plan *plan = plan_of(text, &a, &d);
    char msg[512], *src = NULL;
    size_t len;
    ck_assert_msg(sp_cuda_source(plan, &src, &len, msg, sizeof msg) == 0, "%s", msg);
    sp_diag_free(&d);
    sp_arena_free(&a);
    return src;
}

/* Compiles the rows part of pattern text's source with tail appended (a
 * static_assert on the engine) for (arch, d). A pattern without global
 * rows leaves that part empty, so only the engine and the tail are
 * compiled. *log: NVRTC's log, for the caller to free. */
static int rows_part_with(const char *text, const char *tail, const char *arch, int d, char **log)
{
    char *src = source_of(text), *ptx = NULL;
    const size_t len = strlen(src), n = strlen(tail);
    char *all = realloc(src, len + n + 1);
    ck_assert_ptr_nonnull(all);
    memcpy(all + len, tail, n + 1);
    const int rc = part_ptx(all, arch, d, SPAT_BF16, SP_CUDA_PART_ROWS, &ptx, log);
    free(ptx);
    free(all);
    return rc;
}

/* Does the generated source of pattern text define macro (as 1)? */
static bool source_defines(const char *text, const char *macro)
{
    char line[64];
    snprintf(line, sizeof line, "#define %s 1\n", macro);
    char *src = source_of(text);
    const bool yes = strstr(src, line) != NULL;
    free(src);
    return yes;
}

/* The value of SP_RUN in the generated source of text; 0 if undefined. */
static long source_run(const char *text)
{
    char *src = source_of(text);
    const char *at = strstr(src, "#define SP_RUN ");
    const long v = at ? strtol(at + strlen("#define SP_RUN "), NULL, 10) : 0;
    free(src);
    return v;
}

/* The PTX of the direct part of src compiled for arch at head dim d and
 * dtype dt (malloc'd). */
static char *direct_ptx(const char *src, const char *arch, int d, int dt)
{
    char *out = NULL, *log = NULL;
    ck_assert_msg(part_ptx(src, arch, d, dt, SP_CUDA_PART_DIRECT, &out, &log) == SPAT_OK, "%s", log);
    free(log);
    return out;
}

/* The int `name` (spat_smem, spat_threads, spat_tile_rows, spat_persist) that the
 * PTX defines. (PTX declares a zero without "= 0".) */
static long ptx_int(const char *ptx, const char *name)
{
    char key[64], zero[64];
    snprintf(key, sizeof key, " %s = ", name);
    snprintf(zero, sizeof zero, " %s;", name);
    const char *at = strstr(ptx, key);
    ck_assert_msg(at != NULL || strstr(ptx, zero), "no%s in the PTX", key);
    return at ? strtol(at + strlen(key), NULL, 10) : 0;
}

/* spat_smem of the direct part compiled for arch at d = 64, bf16. */
static long direct_smem(const char *src, const char *arch)
{
    char *ptx = direct_ptx(src, arch, 64, SPAT_BF16);
    const long v = ptx_int(ptx, "spat_smem");
    free(ptx);
    return v;
}

/* The generator states the narrowest run of consecutive keys of a pattern
 * whose components are all dense or bands (SP_RUN; dense: INT32_MAX).
 * Runs of more than 1024 keys (SP_WIDE) get 128-key tiles on wgmma at
 * d = 64 (the shared memory the kernel asks for says which); others, and
 * mma.sync targets, keep 64. */
START_TEST(wide_patterns_get_128_key_tiles)
{
    static const struct {
        const char *text;
        long run;
    } cases[] = {
        {"pattern a { dense; }", 2147483647},
        {"pattern b { causal; dense; }", 2147483647},
        {"pattern c { causal; window -1023..+0; }", 1024},
        {"pattern d { window 512; window 2000; }", 4001}, /* the narrower lies inside */
        {"pattern e { window 256; }", 513},
        {"pattern f { window -1022..+0; }", 1023},
        {"pattern g { window 4096 dilation 2; }", 0},
        {"pattern h { window 2048; global 0; }", 0},
        {"pattern i { window 2048; stride 64; }", 0},
        {"pattern j { heads 0..1 { dense; } heads 2..3 { window 8; } }", 17},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        ck_assert_msg(source_run(cases[i].text) == cases[i].run, "%s: SP_RUN %ld", cases[i].text,
                      source_run(cases[i].text));
    if (!have_nvrtc())
        return;
    /* sp_engine::SMEM: K and V, two buffers, key positions, a zero word,
     * alignment slack; on wgmma (the producer warp) two Q slots of 64 rows
     * a warpgroup and 8 mbarriers (12 with more than one), else one. */
    const long row = 64 * 2;
    const long smem64 = 4 * 64 * row + 2 * 64 * 8 + 8 + 8 + 1024;
    const long ws64 = 4 * 64 * row + 2 * 64 * row + 2 * 64 * 8 + 8 + 8 * 8 + 1024;
    /* two warpgroups: K and V handed over apart, 12 mbarriers */
    const long ws128 = 4 * 128 * row + 2 * 128 * row + 2 * 128 * 8 + 8 + 12 * 8 + 1024;
    /* dense and causal: every row sees every key (up to itself), three
     * warpgroups of Q slots. */
    const long ws192 = 4 * 128 * row + 2 * 192 * row + 2 * 128 * 8 + 8 + 12 * 8 + 1024;
    char *wide = source_of(cases[3].text), *narrow = source_of(cases[4].text), *dense = source_of(cases[0].text),
         *causal = source_of(cases[1].text);
    ck_assert_int_eq(direct_smem(wide, "sm_90a"), ws128);
    ck_assert_int_eq(direct_smem(wide, "sm_80"), smem64);
    ck_assert_int_eq(direct_smem(narrow, "sm_90a"), ws64);
    ck_assert_int_eq(direct_smem(dense, "sm_90a"), ws192);
    ck_assert_int_eq(direct_smem(causal, "sm_90a"), ws192);
    ck_assert_int_eq(direct_smem(causal, "sm_80"), smem64);
    free(wide);
    free(narrow);
    free(dense);
    free(causal);
}
END_TEST

/* Patterns whose keys are gathered (columns of a set) or drawn (random
 * blocks) get SP_GATHER, and at d = 64 on wgmma 4 CTAs per SM
 * (__launch_bounds__, PTX's .minnctapersm), as do bands of consecutive
 * keys (SP_RUN) on one warpgroup; remapped patterns get 3. */
START_TEST(gathered_patterns_get_more_producers)
{
    static const struct {
        const char *text;
        bool gather;
    } cases[] = {
        {"pattern a { window 256; global 0..15; }", true},
        {"pattern b { block 64; window 1 blocks; random 3 blocks seed 1; }", true},
        {"pattern c { causal; segment 128; columns 112..127 mod 128; }", true},
        {"pattern d { window 256; }", false},
        {"pattern e { window 4096 dilation 2; }", false},
        {"pattern f { causal; dense; }", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        ck_assert_msg(source_defines(cases[i].text, "SP_GATHER") == cases[i].gather, "%s", cases[i].text);
    if (!have_nvrtc())
        return;
    static const struct {
        int c, d, minb;
    } bounds[] = {{0, 64, 4}, {3, 64, 4}, {4, 64, 3}, {0, 128, 2}, {4, 128, 2}};
    for (size_t i = 0; i < sizeof bounds / sizeof *bounds; i++) {
        char *src = source_of(cases[bounds[i].c].text), *ptx = direct_ptx(src, "sm_90a", bounds[i].d, SPAT_BF16);
        char want[32];
        snprintf(want, sizeof want, ".minnctapersm %d\n", bounds[i].minb);
        ck_assert_msg(strstr(ptx, want) != NULL, "%s at d = %d: no %s", cases[bounds[i].c].text, bounds[i].d, want);
        free(ptx);
        free(src);
    }
}
END_TEST

/* Patterns where every row attends every key (a dense component in
 * every head class, none causal) get SP_EVERY; those where every row
 * attends every key up to itself (a dense component in every class, some
 * class causal) get SP_LOWER; those where some causal class's query tiles
 * in the direct pass reach more keys the further they are (a dense
 * component or periodic columns there) get SP_GROWS. */
START_TEST(every_pair_lower_triangle_and_growing_patterns_are_marked)
{
    static const struct {
        const char *text;
        bool every, lower, grows;
    } cases[] = {
        {"pattern a { dense; }", true, false, false},
        {"pattern b { dense; window 16; }", true, false, false},
        {"pattern c { heads 0..1 { dense; } heads 2..3 { dense; global 0; } }", true, false, false},
        {"pattern d { causal; dense; }", false, true, true},
        {"pattern e { heads 0..1 { dense; } heads 2..3 { window 8; } }", false, false, false},
        {"pattern f { window 100000; }", false, false, false},
        {"pattern g { causal; dense; window 16; global 0; }", false, true, true},
        {"pattern h { heads 0..1 { causal; dense; } heads 2..3 { dense; } }", false, true, true},
        {"pattern i { heads 0..1 { causal; dense; } heads 2..3 { causal; window 8; } }", false, false, true},
        {"pattern j { causal; window 100000; }", false, false, false},
        {"pattern k { causal; segment 128; columns 112..127 mod 128; }", false, false, true},
        {"pattern l { segment 128; columns 112..127 mod 128; }", false, false, false},
        {"pattern m { causal; window -127..+0; stride 128; }", false, false, false},
        {"pattern n { causal; window 64; global cols 0..15; }", false, false, false},
        {"pattern o { causal; window 64 dilation 4; }", false, false, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ck_assert_msg(source_defines(cases[i].text, "SP_EVERY") == cases[i].every, "%s: SP_EVERY", cases[i].text);
        ck_assert_msg(source_defines(cases[i].text, "SP_LOWER") == cases[i].lower, "%s: SP_LOWER", cases[i].text);
        ck_assert_msg(source_defines(cases[i].text, "SP_GROWS") == cases[i].grows, "%s: SP_GROWS", cases[i].text);
    }
}
END_TEST

/* The engine's choices of warpgroups and item order: causal (SP_LOWER)
 * at d = 64 on wgmma takes three warpgroups, and the patterns whose items
 * grow (SP_GROWS) leave the order to the host (SP_ORDER 2; its rule is
 * test_cuda_launch's); the others go head by head, unless -DSP_XMAJOR
 * says otherwise. Checked by compiling the choices against a
 * static_assert (rows_part_with). */
START_TEST(warpgroups_and_item_order_follow_the_marks)
{
    if (!have_nvrtc())
        return;
    static const struct {
        const char *text, *arch, *flag;
        int d, wg, order;
    } cases[] = {
        {"pattern c { causal; dense; }", "sm_90a", NULL, 64, 3, 2},
        {"pattern c { causal; dense; }", "sm_90a", NULL, 128, 2, 2},
        {"pattern c { causal; dense; }", "sm_80", NULL, 64, 1, 2},
        {"pattern c { causal; dense; }", "sm_90a", "-DSP_XMAJOR=0", 64, 3, 0},
        {"pattern f { causal; segment 128; columns 112..127 mod 128; }", "sm_90a", NULL, 64, 1, 2},
        {"pattern d { dense; }", "sm_90a", NULL, 64, 3, 0},
        {"pattern d { dense; }", "sm_90a", "-DSP_XMAJOR=1", 64, 3, 1},
        {"pattern w { causal; window -1023..+0; }", "sm_90a", NULL, 64, 1, 0},
        {"pattern v { causal; window 100000; }", "sm_90a", NULL, 64, 2, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *log = NULL, tail[128];
        snprintf(tail, sizeof tail, "\nstatic_assert(SP_WG == %d && SP_ORDER == %d, \"order\");\n", cases[i].wg,
                 cases[i].order);
        if (cases[i].flag)
            setenv("SPAT_CUDA_FLAGS", cases[i].flag, 1);
        const int rc = rows_part_with(cases[i].text, tail, cases[i].arch, cases[i].d, &log);
        unsetenv("SPAT_CUDA_FLAGS");
        ck_assert_msg(rc == SPAT_OK, "%s, %s %s, d = %d: want %d warpgroups, order %d; log:\n%s", cases[i].text,
                      cases[i].arch, cases[i].flag ? cases[i].flag : "", cases[i].d, cases[i].wg, cases[i].order,
                      log ? log : "(none)");
        free(log);
    }
}
END_TEST

/* A wgmma descriptor's offsets go into its low word alone (sp_wdesc): the
 * engine relies on the 14-bit address field never carrying into the rest
 * for any address and offset within shared memory (228 KB on Hopper).
 * Checked against the 64-bit descriptor of the summed address, as a
 * static_assert compiled with the engine (rows_part_with). */
START_TEST(wgmma_descriptor_offsets_stay_in_the_address_field)
{
    if (!have_nvrtc())
        return;
    static const char tail[] =
        "\nconstexpr bool sp_wdesc_checked()\n"
        "{\n"
        "    const u32 top = 228 * 1024, lbos[] = {16, 64 * 128, 128 * 128};\n"
        "    for (u32 lbo : lbos)\n"
        "        for (u32 a = 0; a < top; a += 1024 + 16)\n"
        "            for (u32 x = 0; a + x < top; x += 16 * 61) {\n"
        "                const u64 want = (u64)(((a + x) & 0x3ffff) >> 4) | (u64)(lbo >> 4) << 16 |\n"
        "                                 (u64)(1024 >> 4) << 32 | 1ull << 62;\n"
        "                if (sp_wgmma_desc(a, lbo, 1024).at(x) != want)\n"
        "                    return false;\n"
        "            }\n"
        "    return true;\n"
        "}\n"
        "static_assert(sp_wdesc_checked(), \"a descriptor offset carried out of the address field\");\n";
    char *log = NULL;
    const int rc = rows_part_with("pattern d { dense; }", tail, "sm_90a", 64, &log);
    ck_assert_msg(rc == SPAT_OK, "log:\n%s", log ? log : "(none)");
    free(log);
}
END_TEST

/* A column set of one span is tiled as a range of consecutive keys (the
 * producer copies rows a fixed step apart); sets of more spans and
 * periodic columns are gathered (a key position per row). */
START_TEST(one_span_column_sets_are_ranges)
{
    static const struct {
        const char *text;
        bool range;
    } cases[] = {
        {"pattern a { global cols 0..127; }", true},
        {"pattern b { block 64; window 1 blocks; global first 2 blocks; }", true},
        {"pattern c { causal; global cols last 3; }", true},
        {"pattern d { global cols 1..2, last 5; }", false},
        {"pattern e { columns 3..5 mod 11; }", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *src = source_of(cases[i].text);
        const bool gathers = strstr(src, "(sp_gather_tiles(s, v, BN))") != NULL;
        const bool range = strstr(src, "sp_range(s, e.s") != NULL;
        free(src);
        ck_assert_msg(range == cases[i].range && gathers == !cases[i].range, "%s: range %d, gathered %d",
                      cases[i].text, range, gathers);
    }
}
END_TEST

/* wgmma tiles (head dims 64 and 128) get the producer, two slots for Q
 * and persistent CTAs: one producer warp and one compute warpgroup (160
 * threads, 64 rows); for SP_WIDE patterns, and at d = 128 for runs of 512
 * keys too, two compute warpgroups sharing 128-key tiles (128 rows), and
 * at d = 64 three where every row sees every key (SP_EVERY, 192 rows)
 * or every key up to itself (SP_LOWER, causal),
 * both with a producer warpgroup whose registers go to the compute warps
 * (setmaxnreg: 232 for two, 160 for three). Everything else runs 128
 * threads over 64 rows, a CTA per item. Two warpgroups at d = 128 where
 * every row sees every key, or every key up to itself, overlap a tile's
 * softmax with the last tile's P V (SP_OVERLAP: a wait for all but the
 * last product group). */
START_TEST(warp_specialised_on_wgmma)
{
    if (!have_nvrtc())
        return;
    enum { NARROW, WIDE, BAND, EVERY };
    char *src[] = {source_of("pattern w { window 256; global 0; }"), source_of("pattern c { causal; dense; }"),
                   source_of("pattern b { window 256; }"), source_of("pattern d { dense; }")};
    /* smem (0: not checked): K and V of two buffers, two slots of Q's rows,
     * key positions, a zero word, 8 mbarriers (12 with more than one warpgroup:
     * K and V handed over apart, SP_SPLIT), with SP_OVERLAP 16 rows of
     * 128 bytes of zeros at the next 1024 bytes, alignment slack. */
    const long row = 128 * 2, bars2 = 4 * 128 * row + 2 * 128 * row + 2 * 128 * 8 + 8 + 12 * 8;
    const struct {
        int src;
        const char *arch;
        int d, dtype, threads, rows, persist, creg; /* creg: setmaxnreg.inc's count, 0 none */
        long smem;
        bool overlap;
    } cases[] = {
        {NARROW, "sm_90a", 128, SPAT_BF16, 160, 64, 1, 0, 4 * 64 * row + 2 * 64 * row + 2 * 64 * 8 + 8 + 8 * 8 + 1024,
         false},
        {NARROW, "sm_90a", 128, SPAT_F16, 160, 64, 1, 0, 0, false},
        {WIDE, "sm_90a", 128, SPAT_BF16, 384, 128, 1, 232, (bars2 + 1023) / 1024 * 1024 + 16 * 128 + 1024, true},
        {WIDE, "sm_90a", 64, SPAT_BF16, 512, 192, 1, 160, 0, false},
        {NARROW, "sm_90a", 64, SPAT_BF16, 160, 64, 1, 0, 0, false},
        {BAND, "sm_90a", 128, SPAT_BF16, 384, 128, 1, 232, bars2 + 1024, false},
        {BAND, "sm_90a", 64, SPAT_BF16, 160, 64, 1, 0, 0, false},
        {EVERY, "sm_90a", 64, SPAT_BF16, 512, 192, 1, 160, 0, false},
        {EVERY, "sm_90a", 128, SPAT_BF16, 384, 128, 1, 232, 0, true},
        {WIDE, "sm_90a", 128, SPAT_F32, 128, 64, 0, 0, 0, false},
        {WIDE, "sm_80", 128, SPAT_BF16, 128, 64, 0, 0, 0, false},
        {EVERY, "sm_80", 64, SPAT_BF16, 128, 64, 0, 0, 0, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *ptx = direct_ptx(src[cases[i].src], cases[i].arch, cases[i].d, cases[i].dtype);
        ck_assert_int_eq(ptx_int(ptx, "spat_threads"), cases[i].threads);
        ck_assert_int_eq(ptx_int(ptx, "spat_tile_rows"), cases[i].rows);
        ck_assert_int_eq(ptx_int(ptx, "spat_persist"), cases[i].persist);
        if (cases[i].smem)
            ck_assert_int_eq(ptx_int(ptx, "spat_smem"), cases[i].smem);
        char inc[64];
        snprintf(inc, sizeof inc, "setmaxnreg.inc.sync.aligned.u32 %d;", cases[i].creg);
        ck_assert_msg(cases[i].creg ? strstr(ptx, inc) && strstr(ptx, "setmaxnreg.dec.sync.aligned.u32 32;")
                                    : !strstr(ptx, "setmaxnreg"),
                      "case %zu: setmaxnreg (want %d)", i, cases[i].creg);
        ck_assert_msg(!strstr(ptx, "wgmma.wait_group.sync.aligned 1;") == !cases[i].overlap,
                      "case %zu: overlap (want %d)", i, cases[i].overlap);
        free(ptx);
    }
    for (size_t i = 0; i < sizeof src / sizeof *src; i++)
        free(src[i]);
}
END_TEST

/* The trace hook (-DSP_TRACE=<address> through SPAT_CUDA_FLAGS,
 * bench/gpu/trace.py) compiles into the persistent kernels, one compute
 * warpgroup and more, and only when asked for. */
START_TEST(trace_hook_compiles_when_asked)
{
    if (!have_nvrtc())
        return;
    char *src[] = {source_of("pattern w { window 256; global 0..15; }"), source_of("pattern c { causal; dense; }")};
    for (size_t i = 0; i < sizeof src / sizeof *src; i++) {
        for (int traced = 0; traced < 2; traced++) {
            setenv("SPAT_CUDA_FLAGS", traced ? "-DSP_TRACE=0x10000ULL" : "", 1);
            char *ptx = NULL, *log = NULL;
            const int rc = part_ptx(src[i], "sm_90a", 64, SPAT_BF16, SP_CUDA_PART_ALL, &ptx, &log);
            ck_assert_msg(rc == SPAT_OK && log && !log[0], "source %zu, traced %d: rc %d, log:\n%s", i, traced, rc,
                          log ? log : "(none)");
            ck_assert_msg((strstr(ptx, "%globaltimer") != NULL) == traced, "source %zu: %%globaltimer %s", i,
                          traced ? "missing" : "without SP_TRACE");
            free(ptx);
            free(log);
        }
        free(src[i]);
    }
    unsetenv("SPAT_CUDA_FLAGS");
}
END_TEST

/* ----------------------------------------------------------- errors */

START_TEST(nvrtc_error_carries_the_log)
{
    if (!have_nvrtc())
        return;
    const char *bad = "extern \"C\" __global__ void k(int *x) { *x = undeclared_thing; }\n";
    const char *opts[] = {"--gpu-architecture=sm_80"};
    void *img = (void *)1;
    size_t len = 1;
    char *log = NULL;
    sp_clear_error();
    int rc = sp_nvrtc_compile(g_nv, bad, "bad.cu", opts, 1, false, &img, &len, &log);
    ck_assert_int_eq(rc, SPAT_ENVRTC);
    ck_assert(img == NULL && len == 0);
    const char *msg = spat_last_error();
    ck_assert_msg(strstr(msg, "undeclared_thing") && strstr(msg, "bad.cu") &&
                      strstr(msg, "NVRTC_ERROR_COMPILATION"),
                  "message: %s", msg);
    ck_assert(log && strstr(log, "undeclared_thing"));
    free(log);
    /* A bad option is NVRTC's error too, with the options named. */
    const char *bopts[] = {"--no-such-option"};
    rc = sp_nvrtc_compile(g_nv, "extern \"C\" __global__ void k() {}\n", "ok.cu", bopts, 1, false, &img,
                          &len, &log);
    ck_assert_int_eq(rc, SPAT_ENVRTC);
    ck_assert_msg(strstr(spat_last_error(), "--no-such-option"), "%s", spat_last_error());
    free(log);
}
END_TEST

START_TEST(driver_absent_is_a_device_error)
{
    /* This test machine may or may not have a GPU; where the driver
     * cannot load, a CUDA call says so as SPAT_EDEVICE. */
    const sp_cu *cu = sp_cu_get();
    if (cu) {
        printf("SKIP: a CUDA driver is present (version %d)\n", cu->version);
        return;
    }
    ck_assert_msg(strstr(spat_last_error(), "libcuda.so.1") || strstr(spat_last_error(), "cuInit"),
                  "%s", spat_last_error());
    spat_kernel *k;
    ck_assert_int_eq(spat_compile("pattern p { window 4; }", NULL, NULL, &k), SPAT_OK);
    float buf[4 * 64 * 5] = {0};
    spat_forward_args a;
    spat_forward_args_init(&a, 1, 1, 1, 4, 4, 64);
    a.device = SPAT_DEVICE_CUDA;
    a.q = buf, a.k = buf + 256, a.v = buf + 512, a.o = buf + 768, a.lse = buf + 1024;
    ck_assert_int_eq(spat_forward(k, &a), SPAT_EDEVICE);
    ck_assert_msg(strstr(spat_last_error(), "SPAT_DEVICE_CUDA"), "%s", spat_last_error());
    spat_kernel_free(k);
}
END_TEST

/* ------------------------------------------------------------- cache */

static char cdir[256];

static void cache_setup(void)
{
    ck_assert(test_tmpdir_make(cdir, sizeof cdir, "spat-test-cache"));
    setenv("SPAT_CACHE_DIR", cdir, 1);
}

static void cache_teardown(void) { test_tmpdir_remove(cdir); }

static int count_files(const char *dir)
{
    int n = 0;
    DIR *h = opendir(dir);
    for (struct dirent *e; h && (e = readdir(h));)
        n += e->d_name[0] != '.';
    if (h)
        closedir(h);
    return n;
}

START_TEST(cache_roundtrip_and_corruption)
{
    const char *parts[] = {"source", "--gpu-architecture=sm_80", "nvrtc 13.0"};
    size_t lens[] = {6, 24, 10};
    sp_cache_key k1 = sp_cache_key_of(parts, lens, 3);
    lens[1] = 23; /* another option string: another key */
    sp_cache_key k2 = sp_cache_key_of(parts, lens, 3);
    ck_assert(k1.h[0] != k2.h[0] || k1.h[1] != k2.h[1]);
    char dir[512];
    ck_assert_int_eq(sp_cache_dir(dir, sizeof dir), 0);
    ck_assert_str_eq(dir, cdir);
    void *data;
    size_t len;
    ck_assert_int_eq(sp_cache_get(dir, k1, &data, &len), -1);
    char blob[3000];
    for (size_t i = 0; i < sizeof blob; i++)
        blob[i] = (char)(i * 7);
    ck_assert_int_eq(sp_cache_put(dir, k1, blob, sizeof blob), 0);
    ck_assert_int_eq(count_files(dir), 1); /* renamed into place: no temporary left */
    ck_assert_int_eq(sp_cache_get(dir, k1, &data, &len), 0);
    ck_assert(len == sizeof blob && !memcmp(data, blob, len));
    free(data);
    ck_assert_int_eq(sp_cache_get(dir, k2, &data, &len), -1);
    /* Corruptions: a flipped byte, a truncated file, garbage. Each reads
     * as missing, and a put repairs it. */
    char path[1024];
    sp_cache_path(dir, k1, path, sizeof path);
    for (int how = 0; how < 3; how++) {
        FILE *f = fopen(path, how == 2 ? "wb" : "r+b");
        ck_assert(f);
        if (how == 0) {
            fseek(f, 100, SEEK_SET);
            fputc(blob[100 - 40] ^ 0x55, f); /* inside the payload (header is 40 bytes) */
        } else if (how == 2) {
            fputs("not a cache entry", f);
        }
        fclose(f);
        if (how == 1)
            ck_assert_int_eq(truncate(path, 1000), 0);
        ck_assert_int_eq(sp_cache_get(dir, k1, &data, &len), -1);
        ck_assert_int_eq(sp_cache_put(dir, k1, blob, sizeof blob), 0);
        ck_assert_int_eq(sp_cache_get(dir, k1, &data, &len), 0);
        free(data);
    }
    /* The cache can be turned off. */
    setenv("SPAT_CACHE_DIR", "", 1);
    ck_assert_int_eq(sp_cache_dir(dir, sizeof dir), -1);
}
END_TEST

START_TEST(compile_goes_through_the_cache)
{
    if (!have_nvrtc())
        return;
    const char *src = "extern \"C\" __global__ void k(int *x) { *x = SP_D + SP_DT; }\n";
    void *img1, *img2, *img3;
    size_t n1, n2, n3;
    double t0 = now_ms();
    ck_assert_int_eq(sp_cuda_compile_cached(src, strlen(src), "k.cu", 64, 2, "sm_80", SP_CUDA_PART_ALL,
                                            &img1, &n1),
                     SPAT_OK);
    double t1 = now_ms();
    ck_assert_int_eq(count_files(cdir), 1);
    ck_assert_int_eq(sp_cuda_compile_cached(src, strlen(src), "k.cu", 64, 2, "sm_80", SP_CUDA_PART_ALL,
                                            &img2, &n2),
                     SPAT_OK);
    double t2 = now_ms();
    ck_assert(n1 == n2 && !memcmp(img1, img2, n1));
    printf("compile %.1f ms, cached %.2f ms\n", t1 - t0, t2 - t1);
    /* Another dtype is another entry. */
    ck_assert_int_eq(sp_cuda_compile_cached(src, strlen(src), "k.cu", 64, 1, "sm_80", SP_CUDA_PART_ALL,
                                            &img3, &n3),
                     SPAT_OK);
    ck_assert_int_eq(count_files(cdir), 2);
    free(img3);
    /* Break the first entry: it is rebuilt, and rewritten whole. */
    DIR *h = opendir(cdir);
    for (struct dirent *e; (e = readdir(h));) {
        if (e->d_name[0] == '.')
            continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", cdir, e->d_name);
        FILE *f = fopen(p, "r+b");
        fseek(f, 60, SEEK_SET);
        fputc(0xff, f);
        fputc(0x00, f);
        fclose(f);
    }
    closedir(h);
    ck_assert_int_eq(sp_cuda_compile_cached(src, strlen(src), "k.cu", 64, 2, "sm_80", SP_CUDA_PART_ALL,
                                            &img3, &n3),
                     SPAT_OK);
    ck_assert(n3 == n1 && !memcmp(img3, img1, n1));
    free(img3);
    ck_assert_int_eq(sp_cuda_compile_cached(src, strlen(src), "k.cu", 64, 2, "sm_80", SP_CUDA_PART_ALL,
                                            &img3, &n3),
                     SPAT_OK);
    ck_assert(n3 == n1 && !memcmp(img3, img1, n1));
    free(img1);
    free(img2);
    free(img3);
    /* A source NVRTC rejects: SPAT_ENVRTC with the log, nothing cached. */
    const char *bad = "extern \"C\" __global__ void k() { oops; }\n";
    ck_assert_int_eq(sp_cuda_compile_cached(bad, strlen(bad), "bad.cu", 64, 2, "sm_80", SP_CUDA_PART_ALL,
                                            &img1, &n1),
                     SPAT_ENVRTC);
    ck_assert_msg(strstr(spat_last_error(), "oops"), "%s", spat_last_error());
    ck_assert_int_eq(count_files(cdir), 2);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cuda_src");
    TCase *t = tcase_create("nvrtc");
    tcase_set_timeout(t, 1200);
    tcase_add_test(t, every_pattern_compiles_without_warnings);
    tcase_add_test(t, other_head_dims_compile_without_warnings);
    tcase_add_test(t, each_part_defines_its_kernels);
    tcase_add_test(t, wide_patterns_get_128_key_tiles);
    tcase_add_test(t, every_pair_lower_triangle_and_growing_patterns_are_marked);
    tcase_add_test(t, warpgroups_and_item_order_follow_the_marks);
    tcase_add_test(t, wgmma_descriptor_offsets_stay_in_the_address_field);
    tcase_add_test(t, one_span_column_sets_are_ranges);
    tcase_add_test(t, warp_specialised_on_wgmma);
    tcase_add_test(t, trace_hook_compiles_when_asked);
    tcase_add_test(t, gathered_patterns_get_more_producers);
    tcase_add_test(t, nvrtc_error_carries_the_log);
    tcase_add_test(t, driver_absent_is_a_device_error);
    suite_add_tcase(s, t);
    TCase *c = tcase_create("cache");
    tcase_set_timeout(c, 300);
    tcase_add_checked_fixture(c, cache_setup, cache_teardown);
    tcase_add_test(c, cache_roundtrip_and_corruption);
    tcase_add_test(c, compile_goes_through_the_cache);
    suite_add_tcase(s, c);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
