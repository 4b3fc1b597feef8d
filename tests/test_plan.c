/* The plan is exact: for every pattern in patterns/ and for patterns that
 * exercise every rule, at awkward lengths, the pairs the plan enumerates
 * (each exactly once) are the pairs a brute-force reading of the rules
 * gives, one by one. */
#include <check.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "brute.h"
#include "rule_patterns.h"
#include "testutil.h"
#include "comp.h"
#include "frontend.h"
#include "mask.h"
#include "plan.h"
#include "stats.h"

static const int64_t lengths[] = {1, 7, 63, 64, 65, 1000, 4096};

typedef struct compiled {
    sp_arena a;
    sp_diag d;
    sp_program *prog;
} compiled;

static void compile(compiled *c, const char *name, const char *src)
{
    sp_arena_init(&c->a);
    sp_diag_init(&c->d, name, src, strlen(src));
    int rc = sp_frontend(src, strlen(src), &c->a, &c->d, &c->prog);
    ck_assert_msg(rc == 0, "%s does not compile:\n%s", name, sp_diag_text(&c->d));
}

static void release(compiled *c)
{
    sp_diag_free(&c->d);
    sp_arena_free(&c->a);
}

typedef struct seen {
    int64_t L;
    unsigned char *count;
    int64_t bad_i, bad_j; /* first pair enumerated out of range */
} seen;

static void mark(void *arg, int comp, int64_t i, int64_t j)
{
    seen *s = arg;
    (void)comp;
    if (j < 0 || j >= s->L) {
        s->bad_i = i;
        s->bad_j = j;
        return;
    }
    if (s->count[i * s->L + j] < 255)
        s->count[i * s->L + j]++;
}

/* The transposed plan read key by key holds the same pairs, each once, under
 * the same owners, and its whole-block touch tests are the plan's with the
 * blocks swapped. */
static void check_transposed(const sp_pattern *p, const sp_plan *plan, const sp_plan *tplan,
                             int64_t head, int64_t L, const unsigned char *want)
{
    seen s = {L, calloc((size_t)(L * L), 1), -1, -1};
    ck_assert(s.count);
    sp_view t, v;
    ck_assert_int_eq(sp_view_init(&t, tplan, head, L), 0);
    ck_assert_int_eq(sp_view_init(&v, plan, head, L), 0);
    for (int64_t j = 0; j < L; j++)
        ck_assert_int_ge(sp_view_row(&t, j, mark, &s), 0);
    ck_assert_msg(s.bad_i < 0, "%s transposed: row %" PRId64 " of key %" PRId64 " out of range",
                  p->name, s.bad_j, s.bad_i);
    for (int64_t x = 0; x < L * L; x++) {
        int64_t j = x / L, i = x % L; /* the transposed view's (j, i) is the pair (i, j) */
        if (want[i * L + j] != s.count[x])
            ck_abort_msg("%s head %" PRId64 " L=%" PRId64 ": pair (%" PRId64 ", %" PRId64 ") attended %d "
                         "by the rules, enumerated %d times by the transposed plan",
                         p->name, head, L, i, j, want[i * L + j], s.count[x]);
        if (L <= 200 && want[i * L + j])
            for (int c = 0; c < v.hp->ncomps; c++)
                ck_assert_msg(sp_view_owns(&v, c, i, j) == sp_view_owns(&t, c, j, i),
                              "%s: (%" PRId64 ", %" PRId64 ") owned by #%d in one direction only",
                              p->name, i, j, c);
    }
    int64_t nb = (L + p->block - 1) / p->block;
    for (int c = 0; c < v.hp->ncomps; c++)
        for (int64_t qb = 0; qb < nb && v.hp->comps[c].kind != SP_C_RANDOM; qb++)
            for (int64_t kb = 0; kb < nb; kb++)
                ck_assert_msg(sp_view_touches_block(&v, c, qb, kb) == sp_view_touches_block(&t, c, kb, qb),
                              "%s #%d: block (%" PRId64 ", %" PRId64 ") touched in one direction only",
                              p->name, c, qb, kb);
    sp_view_free(&t);
    sp_view_free(&v);
    free(s.count);
}

/* Compares plan and brute force for one head at one length. */
static void check_head(const sp_pattern *p, const sp_plan *plan, const sp_plan *tplan, int64_t head,
                       int64_t L)
{
    unsigned char *want = malloc((size_t)(L * L));
    seen s = {L, calloc((size_t)(L * L), 1), -1, -1};
    ck_assert(want && s.count);
    brute_mask(p, head, L, want);
    sp_view v;
    ck_assert_int_eq(sp_view_init(&v, plan, head, L), 0);
    int64_t total = 0;
    for (int64_t i = 0; i < L; i++) {
        int64_t n = sp_view_row(&v, i, mark, &s);
        ck_assert_int_ge(n, 0);
        total += n;
    }
    ck_assert_msg(s.bad_i < 0, "%s head %" PRId64 " L=%" PRId64 ": key %" PRId64 " of row %" PRId64 " out of range",
                  p->name, head, L, s.bad_j, s.bad_i);
    int64_t expect = 0;
    for (int64_t x = 0; x < L * L; x++) {
        expect += want[x];
        if (want[x] != s.count[x]) {
            int64_t i = x / L, j = x % L;
            int owner = -1;
            for (int c = 0; c < v.hp->ncomps && owner < 0; c++)
                if (sp_view_owns(&v, c, i, j))
                    owner = c;
            ck_abort_msg("%s head %" PRId64 " L=%" PRId64 ": pair (%" PRId64 ", %" PRId64 ") attended %d by the rules, "
                         "enumerated %d times by the plan (owner #%d)",
                         p->name, head, L, i, j, want[x], s.count[x], owner);
        }
    }
    ck_assert_int_eq(total, expect);
    /* The counting shortcut of stats agrees with the enumeration. */
    int64_t blocks, want_blocks = 0;
    ck_assert_int_eq(sp_count_pairs(&v, &blocks), expect);
    int64_t nb = (L + p->block - 1) / p->block;
    for (int64_t qb = 0; qb < nb; qb++)
        for (int64_t kb = 0; kb < nb; kb++) {
            bool any = false;
            for (int64_t i = qb * p->block; i < L && i < (qb + 1) * p->block && !any; i++)
                for (int64_t j = kb * p->block; j < L && j < (kb + 1) * p->block && !any; j++)
                    any = want[i * L + j];
            want_blocks += any;
        }
    ck_assert_msg(blocks == want_blocks, "%s head %" PRId64 " L=%" PRId64 ": %" PRId64 " blocks counted, %" PRId64 " hold pairs",
                  p->name, head, L, blocks, want_blocks);
    /* Ownership is a partition: at short lengths check sp_view_owns on every pair. */
    if (L <= 200)
        for (int64_t i = 0; i < L; i++)
            for (int64_t j = 0; j < L; j++) {
                int owners = 0;
                for (int c = 0; c < v.hp->ncomps; c++)
                    owners += sp_view_owns(&v, c, i, j);
                ck_assert_msg(owners == want[i * L + j], "%s head %" PRId64 ": (%" PRId64 ", %" PRId64 ") has %d owners",
                              p->name, head, i, j, owners);
            }
    sp_view_free(&v);
    check_transposed(p, plan, tplan, head, L, want);
    free(want);
    free(s.count);
}

/* Heads worth checking: every head at short lengths, else one per class
 * (and two for classes with random blocks, whose draws differ by head). */
static void check_pattern(const sp_pattern *p, int64_t L)
{
    compiled dummy;
    sp_arena_init(&dummy.a);
    sp_diag_init(&dummy.d, "plan", NULL, 0);
    sp_plan *plan;
    ck_assert_msg(sp_plan_build(p, &dummy.a, &dummy.d, &plan) == 0, "%s", sp_diag_text(&dummy.d));
    const char *bad = sp_plan_verify(plan);
    ck_assert_msg(!bad, "%s: the plan breaks an invariant: %s", p->name, bad);
    sp_plan *tplan;
    ck_assert_int_eq(sp_plan_transpose(plan, &dummy.a, &tplan), 0);
    bad = sp_plan_verify(tplan);
    ck_assert_msg(!bad, "%s: the transposed plan breaks an invariant: %s", p->name, bad);
    int64_t heads = p->nheads > 0 ? p->nheads : 2;
    int done_class[64] = {0};
    for (int64_t h = 0; h < heads; h++) {
        int cls = p->nheads > 0 ? plan->head_class[h] : 0;
        if (L > 200 && done_class[cls] >= 2)
            continue;
        done_class[cls]++;
        check_head(p, plan, tplan, h, L);
    }
    sp_diag_free(&dummy.d);
    sp_arena_free(&dummy.a);
}

static void check_source(const char *name, const char *src)
{
    compiled c;
    compile(&c, name, src);
    for (size_t k = 0; k < sizeof lengths / sizeof *lengths; k++)
        for (int x = 0; x < c.prog->npatterns; x++)
            check_pattern(&c.prog->patterns[x], lengths[k]);
    release(&c);
}


/* ---- every file in patterns/ -------------------------------------------- */

static char *pattern_files[64];
static int npattern_files;


START_TEST(suite_file)
{
    ck_assert_msg(npattern_files >= 9, "patterns/ not found (SPAT_SRCDIR): %d files", npattern_files);
    char *src = test_slurp(pattern_files[_i]);
    check_source(pattern_files[_i], src);
    free(src);
}
END_TEST

/* ---- every rule, alone and in company ----------------------------------- */


START_TEST(rule_kind)
{
    char name[32];
    snprintf(name, sizeof name, "rule%d", _i);
    check_source(name, rule_patterns[_i]);
}
END_TEST

/* The plan simplifies what it can prove: merged bands, subsumed strides,
 * causal cuts. The exactness tests above keep these honest. */
START_TEST(plan_simplifies)
{
    compiled c;
    compile(&c, "simplify",
            "pattern p { window 4; window -10..-3; window 2..9; stride 4; stride 8; }\n"
            "pattern q { causal; window 5; window +1..+9; window 20 dilation exp; window -3..+0; }\n"
            "pattern r { dense; window 5; random 2 blocks seed 1; }\n");
    sp_plan *plan;
    ck_assert_int_eq(sp_plan_build(&c.prog->patterns[0], &c.a, &c.d, &plan), 0);
    ck_assert_int_eq(plan->classes[0].ncomps, 2); /* band -10..+9, residue 4 */
    ck_assert_int_eq(plan->classes[0].comps[0].kind, SP_C_BAND);
    ck_assert_int_eq(plan->classes[0].comps[0].u.band.lo, -10);
    ck_assert_int_eq(plan->classes[0].comps[0].u.band.hi, 9);
    ck_assert_int_eq(plan->classes[0].comps[1].kind, SP_C_RESIDUE);
    ck_assert_int_eq(plan->classes[0].comps[1].u.residue, 4);
    ck_assert_int_eq(sp_plan_build(&c.prog->patterns[1], &c.a, &c.d, &plan), 0);
    /* causal: band -5..0, the future window vanishes, offsets -8,-16 remain */
    ck_assert_int_eq(plan->classes[0].ncomps, 2);
    ck_assert_int_eq(plan->classes[0].comps[0].u.band.lo, -5);
    ck_assert_int_eq(plan->classes[0].comps[0].u.band.hi, 0);
    ck_assert_int_eq(plan->classes[0].comps[1].kind, SP_C_OFFSETS);
    ck_assert_int_eq(plan->classes[0].comps[1].u.offsets.n, 2);
    ck_assert_int_eq(plan->classes[0].comps[1].excl, 0); /* provably disjoint from the band */
    ck_assert_int_eq(sp_plan_build(&c.prog->patterns[2], &c.a, &c.d, &plan), 0);
    ck_assert_int_eq(plan->classes[0].ncomps, 1);
    ck_assert_int_eq(plan->classes[0].comps[0].kind, SP_C_DENSE);
    release(&c);
}
END_TEST

/* Random draws: R per query block among untouched blocks, none touched,
 * different across heads and seeds, the same across lengths for causal
 * patterns (a KV cache that grows sees the same blocks). */
START_TEST(random_blocks)
{
    compiled c;
    compile(&c, "rnd", "pattern p { block 16; causal; window -1..+0 blocks; random 3 blocks seed 42; }\n");
    sp_plan *plan;
    ck_assert_int_eq(sp_plan_build(&c.prog->patterns[0], &c.a, &c.d, &plan), 0);
    sp_view v1, v2, w;
    ck_assert_int_eq(sp_view_init(&v1, plan, 0, 1000), 0);
    ck_assert_int_eq(sp_view_init(&v2, plan, 0, 4000), 0);
    ck_assert_int_eq(sp_view_init(&w, plan, 1, 1000), 0);
    int differ = 0;
    for (int64_t qb = 0; qb < 1000 / 16; qb++) {
        const int64_t *a, *b, *x;
        int na = sp_view_random_blocks(&v1, 1, qb, &a);
        int64_t keep[8];
        memcpy(keep, a, sizeof *a * (size_t)na);
        int nb = sp_view_random_blocks(&v2, 1, qb, &b);
        ck_assert_int_eq(na, qb >= 4 ? 3 : qb >= 2 ? qb - 1 : 0);
        ck_assert_int_eq(na, nb);
        for (int k = 0; k < na; k++) {
            ck_assert_int_eq(keep[k], b[k]);
            ck_assert(keep[k] < qb - 1);
            ck_assert(k == 0 || keep[k] > keep[k - 1]);
        }
        int nx = sp_view_random_blocks(&w, 1, qb, &x);
        ck_assert_int_eq(nx, na);
        differ += nx > 0 && memcmp(keep, x, sizeof *x * (size_t)nx) != 0;
    }
    ck_assert_int_gt(differ, 40);
    sp_view_free(&v1);
    sp_view_free(&v2);
    sp_view_free(&w);
    release(&c);
}
END_TEST

/* The printed plan is what --emit=ir shows; its hash is stable. */
START_TEST(plan_text)
{
    compiled c;
    compile(&c, "txt", "pattern bigbird { block 64; window 1 blocks; global first 2 blocks; random 3 blocks seed 1234; }\n");
    sp_plan *plan;
    ck_assert_int_eq(sp_plan_build(&c.prog->patterns[0], &c.a, &c.d, &plan), 0);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    sp_plan_print(plan, f);
    fclose(f);
    ck_assert_str_eq(buf, "pattern bigbird: block 64, any number of heads\n"
                          "  every head:\n"
                          "    #0 rows      i in {0..127}\n"
                          "    #1 cols      j in {0..127}  (skips pairs of #0)\n"
                          "    #2 blockband -1 <= j/B-i/B <= +1  (skips pairs of #0 #1)\n"
                          "    #3 random    3 blocks per query block, seed 1234\n");
    free(buf);
    ck_assert(sp_plan_hash(plan) == sp_plan_hash(plan));
    release(&c);
}
END_TEST

/* --emit=mask's PNG: signature, IHDR first, IEND (no data) last. Run under
 * the sanitizers too, which saw fwrite(NULL, 1, 0) for the IEND chunk. */
START_TEST(mask_png)
{
    compiled c;
    compile(&c, "png", "pattern w { window 3; }\n");
    sp_plan *plan;
    ck_assert_int_eq(sp_plan_build(&c.prog->patterns[0], &c.a, &c.d, &plan), 0);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ck_assert_int_eq(sp_mask_png(plan, 0, 40, 40, f), 0);
    ck_assert_int_eq(fclose(f), 0);
    static const unsigned char iend[] = {0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xae, 0x42, 0x60, 0x82};
    ck_assert(len > 8 + 25 + sizeof iend && !memcmp(buf, "\x89PNG\r\n\x1a\n", 8));
    ck_assert(!memcmp(buf + 12, "IHDR", 4));
    ck_assert(!memcmp(buf + len - sizeof iend, iend, sizeof iend));
    free(buf);
    release(&c);
}
END_TEST

int main(void)
{
    npattern_files = test_pattern_files(pattern_files, 64);
    Suite *s = suite_create("plan");
    TCase *t = tcase_create("exact");
    tcase_set_timeout(t, 600);
    tcase_add_loop_test(t, suite_file, 0, npattern_files ? npattern_files : 1);
    tcase_add_loop_test(t, rule_kind, 0, n_rule_patterns);
    tcase_add_test(t, plan_simplifies);
    tcase_add_test(t, random_blocks);
    tcase_add_test(t, plan_text);
    tcase_add_test(t, mask_png);
    suite_add_tcase(s, t);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    for (int k = 0; k < npattern_files; k++)
        free(pattern_files[k]);
    return failed ? 1 : 0;
}
