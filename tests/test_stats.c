/* `spatc --emit=stats` agrees with brute force: the pairs of every head of
 * every pattern in patterns/ and of every rule pattern, at lengths that are
 * not multiples of the block, as printed by the real spatc binary; and
 * layers_to_connect, read off the plan's structure, agrees with exhaustive
 * propagation and with a brute-force reachability closure, and stays fast
 * at long lengths. */
#include <check.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "brute.h"
#include "frontend.h"
#include "plan.h"
#include "rule_patterns.h"
#include "testutil.h"
#include "stats.h"

static const int64_t lengths[] = {1, 7, 65, 250, 1000, 1500};

/* Runs spatc --emit=stats on a file and returns its stdout. */
static char *run_stats(const char *file, int64_t L, const char *extra)
{
    const char *b = getenv("SPAT_BUILDDIR");
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s/spatc --emit=stats --seq-len %" PRId64 " %s '%s'", b ? b : ".", L, extra, file);
    FILE *p = popen(cmd, "r");
    ck_assert_msg(p != NULL, "cannot run %s", cmd);
    char *out = test_slurp_stream(p);
    ck_assert_msg(pclose(p) == 0, "%s failed:\n%s", cmd, out);
    return out;
}

/* The JSON object of pattern `name` in spatc's output. */
static const char *find_obj(const char *json, const char *name)
{
    char key[300];
    snprintf(key, sizeof key, "{\"name\": \"%s\",", name);
    const char *o = strstr(json, key);
    ck_assert_msg(o != NULL, "no stats for %s in:\n%s", name, json);
    return o;
}

static int64_t field(const char *obj, const char *key)
{
    char k[64];
    snprintf(k, sizeof k, "\"%s\": ", key);
    const char *f = strstr(obj, k);
    ck_assert_msg(f != NULL, "no %s in %.200s", key, obj);
    if (!strncmp(f + strlen(k), "null", 4))
        return -1;
    return strtoll(f + strlen(k), NULL, 10);
}

static void check_file(const char *path)
{
    char *src = test_slurp(path);
    sp_arena a;
    sp_diag d;
    sp_program *prog;
    sp_arena_init(&a);
    sp_diag_init(&d, path, src, strlen(src));
    ck_assert_msg(sp_frontend(src, strlen(src), &a, &d, &prog) == 0, "%s", sp_diag_text(&d));
    for (size_t k = 0; k < sizeof lengths / sizeof *lengths; k++) {
        int64_t L = lengths[k];
        char *json = run_stats(path, L, "--no-layers");
        for (int x = 0; x < prog->npatterns; x++) {
            const sp_pattern *p = &prog->patterns[x];
            const char *obj = find_obj(json, p->name);
            int64_t heads = p->nheads > 0 ? p->nheads : 1;
            unsigned char *m = malloc((size_t)(L * L));
            int64_t total = 0;
            const char *h = strstr(obj, "\"heads\": [");
            for (int64_t head = 0; head < heads; head++) {
                brute_mask(p, head, L, m);
                int64_t want = 0;
                for (int64_t q = 0; q < L * L; q++)
                    want += m[q];
                h = strstr(h, "\"pairs\": ");
                ck_assert(h != NULL);
                int64_t got = strtoll(h + 9, NULL, 10);
                h += 9;
                ck_assert_msg(got == want, "%s head %" PRId64 " L=%" PRId64 ": spatc says %" PRId64 " pairs, brute force %" PRId64,
                              p->name, head, L, got, want);
                total += want;
                /* The B x B blocks holding a pair, counted in-process. */
                sp_plan *plan;
                sp_view v;
                ck_assert_int_eq(sp_plan_build(p, &a, &d, &plan), 0);
                ck_assert_int_eq(sp_view_init(&v, plan, head, L), 0);
                int64_t blocks, want_blocks = 0, B = plan->block, nb = (L + B - 1) / B;
                ck_assert_int_eq(sp_count_pairs(&v, &blocks), want);
                for (int64_t qb = 0; qb < nb; qb++)
                    for (int64_t kb = 0; kb < nb; kb++) {
                        bool any = false;
                        for (int64_t q = qb * B; q < L && q < qb * B + B && !any; q++)
                            for (int64_t key = kb * B; key < L && key < kb * B + B && !any; key++)
                                any = m[q * L + key];
                        want_blocks += any;
                    }
                sp_view_free(&v);
                ck_assert_msg(blocks == want_blocks, "%s head %" PRId64 " L=%" PRId64 ": %" PRId64 " blocks, brute force %" PRId64,
                              p->name, head, L, blocks, want_blocks);
            }
            const char *tail = strstr(obj, "], \"pairs\": ");
            ck_assert(tail != NULL);
            ck_assert_int_eq(strtoll(tail + 12, NULL, 10), total);
            ck_assert_int_eq(field(obj, "n"), L);
            free(m);
        }
        free(json);
    }
    sp_diag_free(&d);
    sp_arena_free(&a);
    free(src);
}

static char *pattern_files[64];
static int npattern_files;


START_TEST(suite_stats)
{
    ck_assert_msg(npattern_files >= 9, "patterns/ not found (SPAT_SRCDIR)");
    check_file(pattern_files[_i]);
}
END_TEST

START_TEST(rule_stats)
{
    char path[] = "/tmp/spat-stats-XXXXXX.spat";
    int fd = mkstemps(path, 5);
    ck_assert(fd >= 0);
    ck_assert(write(fd, rule_patterns[_i], strlen(rule_patterns[_i])) == (ssize_t)strlen(rule_patterns[_i]));
    close(fd);
    check_file(path);
    unlink(path);
}
END_TEST

/* ---- layers to connect -------------------------------------------------- */

/* Brute force: R_0 = identity, R_{k+1}[i] = R_k[i] | OR over attended j of
 * R_k[j], over the union of heads; done when every allowed pair is in. */
static int64_t brute_layers(const sp_pattern *p, int64_t L, int64_t heads)
{
    unsigned char *adj = calloc((size_t)(L * L), 1), *m = malloc((size_t)(L * L));
    unsigned char *r = calloc((size_t)(L * L), 1), *nr = malloc((size_t)(L * L));
    bool causal = true;
    for (int64_t h = 0; h < heads; h++) {
        brute_mask(p, h, L, m);
        for (int64_t q = 0; q < L * L; q++)
            adj[q] |= m[q];
        bool hc = p->causal;
        for (int g = 0; g < p->ngroups; g++)
            if (p->groups[g].h0 <= h && h <= p->groups[g].h1)
                hc |= p->groups[g].causal;
        causal &= hc;
    }
    for (int64_t i = 0; i < L; i++)
        r[i * L + i] = 1;
    int64_t k = 0;
    for (;;) {
        bool all = true;
        for (int64_t i = 0; i < L && all; i++)
            for (int64_t s = 0; s < (causal ? i + 1 : L) && all; s++)
                all = r[i * L + s];
        if (all)
            break;
        bool grew = false;
        for (int64_t i = 0; i < L; i++)
            for (int64_t s = 0; s < L; s++) {
                unsigned char v = r[i * L + s];
                for (int64_t j = 0; j < L && !v; j++)
                    v = adj[i * L + j] && r[j * L + s];
                nr[i * L + s] = v;
                grew |= v != r[i * L + s];
            }
        memcpy(r, nr, (size_t)(L * L));
        k++;
        if (!grew) {
            k = -1;
            break;
        }
    }
    free(adj);
    free(m);
    free(r);
    free(nr);
    return k;
}

static void check_layers(const char *src, int64_t L)
{
    sp_arena a;
    sp_diag d;
    sp_program *prog;
    sp_plan *plan;
    sp_arena_init(&a);
    sp_diag_init(&d, "layers", src, strlen(src));
    ck_assert_msg(sp_frontend(src, strlen(src), &a, &d, &prog) == 0, "%s", sp_diag_text(&d));
    for (int x = 0; x < prog->npatterns; x++) {
        const sp_pattern *p = &prog->patterns[x];
        int64_t heads = p->nheads > 0 ? p->nheads : 2;
        ck_assert_int_eq(sp_plan_build(p, &a, &d, &plan), 0);
        int64_t got = sp_layers_to_connect(plan, L, heads), want = brute_layers(p, L, heads);
        ck_assert_msg(got == want, "%s L=%" PRId64 ": layers_to_connect %" PRId64 ", brute force %" PRId64, p->name, L,
                      got, want);
    }
    sp_diag_free(&d);
    sp_arena_free(&a);
}

START_TEST(layers_rules)
{
    check_layers(rule_patterns[_i], 70);
    check_layers(rule_patterns[_i], 131);
}
END_TEST

/* The structural answer against exhaustive propagation, for every pattern
 * of a source at lengths around its block and beyond. */
static void check_fast(const char *src, const char *what)
{
    sp_arena a;
    sp_diag d;
    sp_program *prog;
    sp_plan *plan;
    sp_arena_init(&a);
    sp_diag_init(&d, what, src, strlen(src));
    ck_assert_msg(sp_frontend(src, strlen(src), &a, &d, &prog) == 0, "%s", sp_diag_text(&d));
    for (int x = 0; x < prog->npatterns; x++) {
        const sp_pattern *p = &prog->patterns[x];
        int64_t heads = p->nheads > 0 ? p->nheads : 2;
        ck_assert_int_eq(sp_plan_build(p, &a, &d, &plan), 0);
        const int64_t B = plan->block, ns[] = {1, 2, B - 1, B, B + 1, 100, 257, 1000};
        for (size_t k = 0; k < sizeof ns / sizeof *ns; k++) {
            if (ns[k] < 1)
                continue;
            int64_t got = sp_layers_to_connect(plan, ns[k], heads), want = sp_layers_exhaustive(plan, ns[k], heads);
            ck_assert_msg(got == want, "%s n=%" PRId64 ": layers_to_connect %" PRId64 ", exhaustive %" PRId64,
                          p->name, ns[k], got, want);
        }
    }
    sp_diag_free(&d);
    sp_arena_free(&a);
}

START_TEST(layers_fast_rules)
{
    check_fast(rule_patterns[_i], "rule");
}
END_TEST

START_TEST(layers_fast_suite)
{
    char *src = test_slurp(pattern_files[_i]);
    check_fast(src, pattern_files[_i]);
    free(src);
}
END_TEST

START_TEST(layers_fast_more)
{
    /* Shapes the suite lacks: several bands and offsets, per-head mixes,
     * causal hubs, summary columns with windows, periodic causal forms. */
    check_fast("pattern a { window -1..+0; window 0..+1; }", "more");
    check_fast("pattern b { causal; window -3..+0; window 20 dilation exp; stride 9; }", "more");
    check_fast("pattern c { causal; segment 12; columns 10..11 mod 12; window -1..+0 blocks; block 4; }", "more");
    check_fast("pattern d { window 2; heads 0 { causal; window -9..+0; } heads 1 { stride 5; } }", "more");
    check_fast("pattern e { causal; global 0..2; window -1..+0; }", "more");
    check_fast("pattern f { global rows 0; global cols 5; window 1; }", "more");
    check_fast("pattern g { window 3 dilation 2; window 1; }", "more");
    check_fast("pattern h { window -5..-2; window 1..4; }", "more");
    check_fast("pattern i { causal; block 8; window -1..+0 blocks; stride 8; }", "more");
    check_fast("pattern j { columns 0..0 mod 3; window 1; }", "more");
}
END_TEST

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Long lengths answer quickly: every pattern at 65536 and 1M, and the
 * narrow window that took 48 s at 4097 by exhaustive propagation. A few
 * seconds for what takes well under one alone, on a shared machine. */
static void check_time(const char *src, int64_t n, double limit)
{
    sp_arena a;
    sp_diag d;
    sp_program *prog;
    sp_plan *plan;
    sp_arena_init(&a);
    sp_diag_init(&d, "time", src, strlen(src));
    ck_assert_msg(sp_frontend(src, strlen(src), &a, &d, &prog) == 0, "%s", sp_diag_text(&d));
    for (int x = 0; x < prog->npatterns; x++) {
        const sp_pattern *p = &prog->patterns[x];
        ck_assert_int_eq(sp_plan_build(p, &a, &d, &plan), 0);
        double t0 = now();
        int64_t got = sp_layers_to_connect(plan, n, p->nheads > 0 ? p->nheads : 2);
        double t = now() - t0;
        ck_assert_msg(t < limit && got != -3 && got != -5, "%s n=%" PRId64 ": layers %" PRId64 " in %.2f s",
                      p->name, n, got, t);
    }
    sp_diag_free(&d);
    sp_arena_free(&a);
}

START_TEST(layers_time)
{
    check_time("pattern w1 { window 1; }", 4097, 2);
    check_time("pattern w1 { window 1; }", 1 << 20, 5);
    for (int k = 0; k < npattern_files; k++) {
        char *src = test_slurp(pattern_files[k]);
        check_time(src, 65536, 5);
        check_time(src, 1 << 20, 5);
        free(src);
    }
    for (int k = 0; k < n_rule_patterns; k++) {
        check_time(rule_patterns[k], 65536, 5);
        check_time(rule_patterns[k], 1 << 20, 5);
    }
}
END_TEST

START_TEST(layers_known)
{
    /* A window of 10 each side joins positions 99 apart in 10 layers. */
    check_layers("pattern w { window 10; }", 100);
    /* Strided + local joins anything in two layers. */
    check_layers("pattern s { causal; window -9..+0; stride 10; }", 100);
    /* Disjoint segments never connect. */
    check_layers("pattern seg { segment 16; }", 100);
    /* More than 512 positions: several source batches. */
    check_layers("pattern w { causal; window -40..+0; global cols 0; }", 600);
}
END_TEST

/* The JSON spatc prints, whole. */
START_TEST(stats_json)
{
    char path[] = "/tmp/spat-json-XXXXXX.spat";
    int fd = mkstemps(path, 5);
    const char *src = "pattern w { window 1; }\n";
    ck_assert(write(fd, src, strlen(src)) == (ssize_t)strlen(src));
    close(fd);
    char *json = run_stats(path, 4, "--heads 2 --head-dim 8");
    char want[1024];
    snprintf(want, sizeof want,
             "{\"file\": \"%s\", \"patterns\": [\n"
             "  {\"name\": \"w\", \"n\": 4, \"block\": 64, \"head_dim\": 8, \"heads\": [{\"head\": 0, \"pairs\": 10}, "
             "{\"head\": 1, \"pairs\": 10}], \"pairs\": 20, \"density\": 0.625, \"block_density\": 1, "
             "\"flops_forward\": 640, \"flops_backward\": 1600, \"bytes_forward_fp32\": 1056, \"layers_to_connect\": 3}\n"
             "]}\n",
             path);
    ck_assert_str_eq(json, want);
    free(json);
    unlink(path);
}
END_TEST

int main(void)
{
    npattern_files = test_pattern_files(pattern_files, 64);
    Suite *s = suite_create("stats");
    TCase *t = tcase_create("stats");
    tcase_set_timeout(t, 600);
    tcase_add_loop_test(t, suite_stats, 0, npattern_files ? npattern_files : 1);
    tcase_add_loop_test(t, rule_stats, 0, n_rule_patterns);
    tcase_add_loop_test(t, layers_rules, 0, n_rule_patterns);
    tcase_add_test(t, layers_known);
    tcase_add_loop_test(t, layers_fast_rules, 0, n_rule_patterns);
    tcase_add_loop_test(t, layers_fast_suite, 0, npattern_files ? npattern_files : 1);
    tcase_add_test(t, layers_fast_more);
    tcase_add_test(t, layers_time);
    tcase_add_test(t, stats_json);
    suite_add_tcase(s, t);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    for (int k = 0; k < npattern_files; k++)
        free(pattern_files[k]);
    return failed ? 1 : 0;
}
