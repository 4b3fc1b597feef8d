/* The kernel's pictures and numbers (runtime/inspect.c): spat_kernel_mask
 * agrees with brute force for every pattern in patterns/ and every rule
 * pattern at awkward lengths; spat_kernel_stats prints exactly the object
 * that the real spatc --emit=stats prints; spat_kernel_mask_png gives
 * exactly the bytes of spatc --emit=mask; bad arguments are refused with a
 * message and leave the outputs NULL. */
#include <check.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "brute.h"
#include "internal.h"
#include "rule_patterns.h"
#include "spat.h"
#include "testutil.h"

static const int64_t lengths[] = {1, 7, 65, 130};

static char *pattern_files[64];
static int npattern_files;

/* The pattern of a one-pattern source, as a kernel built without JIT (the
 * inspect calls use the plan alone). */
static void check_masks(const char *src, const char *file)
{
    spat_kernel *k;
    ck_assert_msg(sp_kernel_create(src, strlen(src), file, NULL, NULL, 0, &k) == SPAT_OK, "%s: %s", file,
                  spat_last_error());
    int64_t heads = k->plan->nheads > 0 ? k->plan->nheads : 2;
    for (size_t li = 0; li < sizeof lengths / sizeof *lengths; li++) {
        int64_t L = lengths[li];
        unsigned char *got = malloc((size_t)(L * L)), *want = malloc((size_t)(L * L));
        for (int64_t h = 0; h < heads; h++) {
            memset(got, 0x77, (size_t)(L * L));
            ck_assert_int_eq(spat_kernel_mask(k, L, h, got), SPAT_OK);
            brute_mask(k->pat, h, L, want);
            for (int64_t q = 0; q < L * L; q++)
                ck_assert_msg(got[q] == want[q],
                              "%s head %" PRId64 " L=%" PRId64 " (%" PRId64 ", %" PRId64 "): mask %d, brute force %d",
                              k->name, h, L, q / L, q % L, got[q], want[q]);
            int64_t pairs, count = 0;
            ck_assert_int_eq(spat_kernel_pairs(k, L, h, &pairs), SPAT_OK);
            for (int64_t q = 0; q < L * L; q++)
                count += got[q];
            ck_assert_int_eq(count, pairs);
        }
        free(got);
        free(want);
    }
    spat_kernel_free(k);
}

START_TEST(suite_masks)
{
    ck_assert_msg(npattern_files >= 9, "patterns/ not found (SPAT_SRCDIR)");
    char *src = test_slurp(pattern_files[_i]);
    check_masks(src, pattern_files[_i]);
    free(src);
}
END_TEST

START_TEST(rule_masks)
{
    check_masks(rule_patterns[_i], "<rule>");
}
END_TEST

static char *run(const char *cmd)
{
    FILE *p = popen(cmd, "r");
    ck_assert_msg(p != NULL, "cannot run %s", cmd);
    char *out = test_slurp_stream(p);
    ck_assert_msg(pclose(p) == 0, "%s failed:\n%s", cmd, out);
    return out;
}

static const char *spatc(void)
{
    const char *b = getenv("SPAT_BUILDDIR");
    static char path[4096];
    snprintf(path, sizeof path, "%s/spatc", b ? b : ".");
    return path;
}

/* The object spat_kernel_stats returns is, character for character, the
 * entry spatc prints, with and without layers. */
START_TEST(stats_as_spatc)
{
    const char *path = pattern_files[_i];
    char *src = test_slurp(path);
    static const int64_t ns[] = {100, 1000};
    for (int li = 0; li < 2; li++)
        for (int layers = 0; layers < 2; layers++) {
            char cmd[8192];
            snprintf(cmd, sizeof cmd, "%s --emit=stats --seq-len %" PRId64 " %s '%s'", spatc(), ns[li],
                     layers ? "" : "--no-layers", path);
            char *out = run(cmd);
            spat_kernel *k;
            ck_assert_int_eq(sp_kernel_create(src, strlen(src), path, NULL, NULL, 0, &k), SPAT_OK);
            char *json = (char *)0x1;
            ck_assert_int_eq(spat_kernel_stats(k, ns[li], 0, 0, layers ? 0 : SPAT_STATS_NO_LAYERS, &json), SPAT_OK);
            ck_assert_msg(strstr(out, json) != NULL, "spat_kernel_stats gave\n%s\nspatc printed\n%s", json, out);
            ck_assert(json[0] == '{' && json[strlen(json) - 1] == '}');
            spat_free(json);
            spat_kernel_free(k);
            free(out);
        }
    free(src);
}
END_TEST

START_TEST(png_as_spatc)
{
    const char *path = pattern_files[_i];
    char *src = test_slurp(path);
    spat_kernel *k;
    ck_assert_int_eq(sp_kernel_create(src, strlen(src), path, NULL, NULL, 0, &k), SPAT_OK);
    char dir[256];
    ck_assert(test_tmpdir_make(dir, sizeof dir, "spat-inspect"));
    static const struct { int64_t n; int size; } cases[] = {{300, 0}, {2000, 0}, {700, 128}, {50, 80}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        char cmd[8192], png[512], size[32] = "";
        snprintf(png, sizeof png, "%s/m.png", dir);
        if (cases[c].size)
            snprintf(size, sizeof size, "--size %d", cases[c].size);
        snprintf(cmd, sizeof cmd, "%s --emit=mask --seq-len %" PRId64 " %s -o '%s' '%s' 2>/dev/null", spatc(),
                 cases[c].n, size, png, path);
        free(run(cmd));
        FILE *f = fopen(png, "rb");
        ck_assert(f != NULL);
        static unsigned char want[1 << 22];
        size_t wlen = fread(want, 1, sizeof want, f);
        ck_assert(wlen > 0 && wlen < sizeof want);
        fclose(f);
        unsigned char *got = NULL;
        size_t len = 0;
        ck_assert_int_eq(spat_kernel_mask_png(k, cases[c].n, 0, cases[c].size, &got, &len), SPAT_OK);
        ck_assert_uint_eq(len, wlen);
        ck_assert_msg(memcmp(got, want, len) == 0, "%s n=%" PRId64 ": PNG bytes differ from spatc's", path, cases[c].n);
        ck_assert(!memcmp(got, "\x89PNG\r\n\x1a\n", 8));
        spat_free(got);
        unlink(png);
    }
    test_tmpdir_remove(dir);
    spat_kernel_free(k);
    free(src);
}
END_TEST

START_TEST(bad_arguments)
{
    spat_kernel *k, *k4;
    ck_assert_int_eq(spat_compile("pattern w { window 3; }", NULL, NULL, &k), SPAT_OK);
    ck_assert_int_eq(spat_compile("pattern four { global 0; heads 0..3 { window 3; } }", NULL, NULL, &k4), SPAT_OK);
    unsigned char m[64];
    char *json = (char *)0x1;
    unsigned char *png = (unsigned char *)0x1;
    size_t len = 7;

    ck_assert_int_eq(spat_kernel_mask(NULL, 8, 0, m), SPAT_EINVAL);
    ck_assert_str_eq(spat_last_error(), "k is NULL");
    ck_assert_int_eq(spat_kernel_mask(k, 0, 0, m), SPAT_EINVAL);
    ck_assert(strstr(spat_last_error(), "seq_len = 0") != NULL);
    ck_assert_int_eq(spat_kernel_mask(k, 8, -1, m), SPAT_EINVAL);
    ck_assert_int_eq(spat_kernel_mask(k4, 8, 4, m), SPAT_EINVAL);
    ck_assert(strstr(spat_last_error(), "heads 0..3") != NULL);
    ck_assert_int_eq(spat_kernel_mask(k, 8, 0, NULL), SPAT_EINVAL);
    ck_assert_int_eq(spat_kernel_mask(k, ((int64_t)1 << 31) + 1, 0, m), SPAT_EINVAL);
    ck_assert_int_eq(spat_kernel_mask(k4, 8, 3, m), SPAT_OK);

    ck_assert_int_eq(spat_kernel_stats(k, 8, 0, 0, 0, NULL), SPAT_EINVAL);
    ck_assert_int_eq(spat_kernel_stats(NULL, 8, 0, 0, 0, &json), SPAT_EINVAL);
    ck_assert(json == NULL);
    ck_assert_int_eq(spat_kernel_stats(k, -5, 0, 0, 0, &json), SPAT_EINVAL);
    ck_assert_int_eq(spat_kernel_stats(k4, 8, 3, 0, 0, &json), SPAT_EINVAL);
    ck_assert(strstr(spat_last_error(), "describes 4 heads") != NULL);
    ck_assert_int_eq(spat_kernel_stats(k, 8, -1, 0, 0, &json), SPAT_EINVAL);
    ck_assert_int_eq(spat_kernel_stats(k, 8, 0, 12, 0, &json), SPAT_EINVAL);
    ck_assert_int_eq(spat_kernel_stats(k, 8, 0, 0, 6, &json), SPAT_EINVAL);
    ck_assert(json == NULL);
    /* Any head count for a pattern without head groups; a chosen head dim. */
    ck_assert_int_eq(spat_kernel_stats(k, 8, 3, 128, 0, &json), SPAT_OK);
    ck_assert(strstr(json, "\"head_dim\": 128") && strstr(json, "{\"head\": 2, \"pairs\": 44}"));
    spat_free(json);

    ck_assert_int_eq(spat_kernel_mask_png(k, 8, 0, 0, NULL, &len), SPAT_EINVAL);
    ck_assert_int_eq(spat_kernel_mask_png(k, 8, 0, 0, &png, NULL), SPAT_EINVAL);
    ck_assert(png == NULL);
    png = (unsigned char *)0x1;
    ck_assert_int_eq(spat_kernel_mask_png(k, 8, 0, -1, &png, &len), SPAT_EINVAL);
    ck_assert(png == NULL && len == 0);
    ck_assert_int_eq(spat_kernel_mask_png(k4, 8, 9, 0, &png, &len), SPAT_EINVAL);
    ck_assert_int_eq(spat_kernel_mask_png(NULL, 8, 0, 0, &png, &len), SPAT_EINVAL);
    spat_free(NULL);
    spat_kernel_free(k);
    spat_kernel_free(k4);
}
END_TEST

int main(void)
{
    npattern_files = test_pattern_files(pattern_files, 64);
    Suite *s = suite_create("inspect");
    static const char *const names[] = {"masks", "stats", "png", "args"};
    TCase *t[4];
    for (int i = 0; i < 4; i++) {
        t[i] = tcase_create(names[i]);
        tcase_set_timeout(t[i], 300);
        suite_add_tcase(s, t[i]);
    }
    int nf = npattern_files > 0 ? npattern_files : 1;
    tcase_add_loop_test(t[0], suite_masks, 0, nf);
    tcase_add_loop_test(t[0], rule_masks, 0, n_rule_patterns);
    tcase_add_loop_test(t[1], stats_as_spatc, 0, nf);
    tcase_add_loop_test(t[2], png_as_spatc, 0, nf);
    tcase_add_test(t[3], bad_arguments);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    for (int i = 0; i < npattern_files; i++)
        free(pattern_files[i]);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
