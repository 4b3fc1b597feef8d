/* The front end (scanner, parser, sema): every rule form lowers to the
 * exact IR values of ir.h, and every kind of mistake gives its exact
 * message, place, source line and caret, all of them in one run. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend.h"

#define FILE_NAME "t.spat"
#define MAXV SP_MAX_VALUE

/* One compilation: the arena and diagnostics live until the test ends. */
static sp_arena arena;
static sp_diag diag;
static bool diag_live;

static void setup(void) { sp_arena_init(&arena); }

static void teardown(void)
{
    if (diag_live)
        sp_diag_free(&diag);
    diag_live = false;
    sp_arena_free(&arena);
}

static int run(const char *src, size_t len, sp_program **prog)
{
    if (diag_live)
        sp_diag_free(&diag);
    sp_diag_init(&diag, FILE_NAME, src, len);
    diag_live = true;
    return sp_frontend(src, len, &arena, &diag, prog);
}

static const sp_program *compile_ok(const char *src)
{
    sp_program *prog = NULL;
    int rc = run(src, strlen(src), &prog);
    ck_assert_msg(rc == 0, "expected no errors, got:\n%s", sp_diag_text(&diag));
    ck_assert_ptr_nonnull(prog);
    ck_assert_int_eq(diag.nerrors, 0);
    ck_assert_str_eq(sp_diag_text(&diag), "");
    return prog;
}

/* The only pattern of a file that must compile. */
static const sp_pattern *pattern_ok(const char *src)
{
    const sp_program *prog = compile_ok(src);
    ck_assert_int_eq(prog->npatterns, 1);
    return &prog->patterns[0];
}

static void compile_fails(const char *src, int nerrors, const char *text)
{
    sp_program *prog = (sp_program *)1;
    int rc = run(src, strlen(src), &prog);
    ck_assert_msg(rc == -1, "expected errors for:\n%s", src);
    ck_assert_ptr_null(prog);
    ck_assert_msg(strcmp(sp_diag_text(&diag), text) == 0, "for:\n%s\nexpected:\n%s\ngot:\n%s", src, text,
                  sp_diag_text(&diag));
    ck_assert_int_eq(diag.nerrors, nerrors);
}

/* ---------------------------------------------------------------- IR checks */

static void is_window(const sp_rule *r, int64_t lo, int64_t hi, int64_t dil)
{
    ck_assert_int_eq(r->kind, SP_R_WINDOW);
    ck_assert_int_eq(r->u.window.lo, lo);
    ck_assert_int_eq(r->u.window.hi, hi);
    ck_assert_int_eq(r->u.window.dil, dil);
}

static void is_bwindow(const sp_rule *r, int64_t lo, int64_t hi)
{
    ck_assert_int_eq(r->kind, SP_R_BLOCK_WINDOW);
    ck_assert_int_eq(r->u.bwindow.lo, lo);
    ck_assert_int_eq(r->u.bwindow.hi, hi);
}

static void is_columns(const sp_rule *r, int64_t a, int64_t b, int64_t s)
{
    ck_assert_int_eq(r->kind, SP_R_COLUMNS);
    ck_assert_int_eq(r->u.columns.a, a);
    ck_assert_int_eq(r->u.columns.b, b);
    ck_assert_int_eq(r->u.columns.s, s);
}

static void is_item(const sp_setitem *it, int64_t lo, bool lo_end, int64_t hi, bool hi_end)
{
    ck_assert_int_eq(it->lo, lo);
    ck_assert_int_eq(it->lo_end, lo_end);
    ck_assert_int_eq(it->hi, hi);
    ck_assert_int_eq(it->hi_end, hi_end);
}

static void is_loc(sp_loc l, int line, int col, int end_col)
{
    ck_assert_int_eq(l.line, line);
    ck_assert_int_eq(l.col, col);
    ck_assert_int_eq(l.end_col, end_col);
}

/* ---------------------------------------------------------------- good input */

START_TEST(benchmark_suite_lowers_exactly)
{
    const sp_program *p = compile_ok(
        "# the benchmark suite of DESIGN.md\n"
        "pattern dense { dense; }\n"
        "pattern causal { dense; causal; }\n"
        "pattern window256 { window 256; }\n"
        "pattern causal_window1024 { causal; window -1023..+0; }\n"
        "pattern longformer { window 256; global 0..15; }\n"
        "pattern bigbird { block 64; window 1 blocks; global first 2 blocks; random 3 blocks seed 1234; }\n"
        "pattern dilated4 { window 256 dilation 4; }\n"
        "pattern strided128 { causal; window -127..+0; stride 128; }\n"
        "pattern fixed128 { causal; segment 128; columns 112..127 mod 128; }\n");
    ck_assert_int_eq(p->npatterns, 9);

    const sp_pattern *q = sp_program_find(p, "dense");
    ck_assert_ptr_eq(q, &p->patterns[0]);
    ck_assert_int_eq(q->nrules, 1);
    ck_assert_int_eq(q->rules[0].kind, SP_R_DENSE);
    ck_assert(!q->causal);
    ck_assert_int_eq(q->block, 64);
    ck_assert_int_eq(q->nheads, 0);
    ck_assert_int_eq(q->ngroups, 0);

    q = sp_program_find(p, "causal");
    ck_assert_int_eq(q->nrules, 1);
    ck_assert_int_eq(q->rules[0].kind, SP_R_DENSE);
    ck_assert(q->causal);

    q = sp_program_find(p, "window256");
    ck_assert_int_eq(q->nrules, 1);
    is_window(&q->rules[0], -256, 256, 1);

    q = sp_program_find(p, "causal_window1024");
    ck_assert(q->causal);
    is_window(&q->rules[0], -1023, 0, 1);

    q = sp_program_find(p, "longformer");
    ck_assert_int_eq(q->nrules, 2);
    is_window(&q->rules[0], -256, 256, 1);
    ck_assert_int_eq(q->rules[1].kind, SP_R_GLOBAL);
    ck_assert_int_eq(q->rules[1].u.set.n, 1);
    is_item(&q->rules[1].u.set.items[0], 0, false, 15, false);

    q = sp_program_find(p, "bigbird");
    ck_assert_int_eq(q->block, 64);
    ck_assert_int_eq(q->nrules, 3);
    is_bwindow(&q->rules[0], -1, 1);
    ck_assert_int_eq(q->rules[1].kind, SP_R_GLOBAL);
    is_item(&q->rules[1].u.set.items[0], 0, false, 127, false);
    ck_assert_int_eq(q->rules[2].kind, SP_R_RANDOM);
    ck_assert_int_eq(q->rules[2].u.random.r, 3);
    ck_assert_uint_eq(q->rules[2].u.random.seed, 1234);

    q = sp_program_find(p, "dilated4");
    is_window(&q->rules[0], -256, 256, 4);

    q = sp_program_find(p, "strided128");
    ck_assert(q->causal);
    is_window(&q->rules[0], -127, 0, 1);
    ck_assert_int_eq(q->rules[1].kind, SP_R_STRIDE);
    ck_assert_int_eq(q->rules[1].u.stride.s, 128);

    q = sp_program_find(p, "fixed128");
    ck_assert(q->causal);
    ck_assert_int_eq(q->rules[0].kind, SP_R_SEGMENT);
    ck_assert_int_eq(q->rules[0].u.segment.s, 128);
    is_columns(&q->rules[1], 112, 127, 128);

    ck_assert_ptr_null(sp_program_find(p, "missing"));
    ck_assert_ptr_null(sp_program_find(NULL, "dense"));
}
END_TEST

START_TEST(window_forms)
{
    const sp_pattern *q = pattern_ok("pattern w {\n"
                                     "  window 0;\n"
                                     "  window 1000000000;\n"
                                     "  window -1023..+0;\n"
                                     "  window 0..+5;\n"
                                     "  window 3..10;\n"
                                     "  window -10..-3;\n"
                                     "  window 256 dilation 4;\n"
                                     "  window -8..+8 dilation 2;\n"
                                     "  window 16 dilation exp;\n"
                                     "  window 1 blocks;\n"
                                     "  window 1 block;\n"
                                     "  window -2..+0 blocks;\n"
                                     "}\n");
    ck_assert_int_eq(q->nrules, 12);
    is_window(&q->rules[0], 0, 0, 1);
    is_window(&q->rules[1], -1000000000, 1000000000, 1);
    is_window(&q->rules[2], -1023, 0, 1);
    is_window(&q->rules[3], 0, 5, 1);
    is_window(&q->rules[4], 3, 10, 1);
    is_window(&q->rules[5], -10, -3, 1);
    is_window(&q->rules[6], -256, 256, 4);
    is_window(&q->rules[7], -8, 8, 2);
    ck_assert_int_eq(q->rules[8].kind, SP_R_WINDOW_EXP);
    ck_assert_int_eq(q->rules[8].u.wexp.w, 16);
    /* Block windows compare block indices: never multiplied by B. */
    is_bwindow(&q->rules[9], -1, 1);
    is_bwindow(&q->rules[10], -1, 1);
    is_bwindow(&q->rules[11], -2, 0);
}
END_TEST

START_TEST(lengths_in_blocks_use_the_final_block_size)
{
    /* `block` comes last, yet every block unit before it uses B = 32. */
    const sp_pattern *q = pattern_ok("pattern b { stride 2 blocks; segment 3 block; stride 5; segment 7;"
                                     " columns 0..31 mod 1 blocks; block 32; }");
    ck_assert_int_eq(q->block, 32);
    ck_assert_int_eq(q->nrules, 5);
    ck_assert_int_eq(q->rules[0].kind, SP_R_STRIDE);
    ck_assert_int_eq(q->rules[0].u.stride.s, 64);
    ck_assert_int_eq(q->rules[1].kind, SP_R_SEGMENT);
    ck_assert_int_eq(q->rules[1].u.segment.s, 96);
    ck_assert_int_eq(q->rules[2].u.stride.s, 5);
    ck_assert_int_eq(q->rules[3].u.segment.s, 7);
    is_columns(&q->rules[4], 0, 31, 32);
}
END_TEST

START_TEST(sets_lists_ranges_blocks_first_last)
{
    const sp_pattern *q = pattern_ok(
        "pattern s { block 16;\n"
        "  global 0, 100, 5000, 0..15, 2 blocks, 1..2 blocks, first 10, first 2 blocks, last 16, last 1 block;\n"
        "  global rows 7;\n"
        "  global cols last 3, 4..4;\n"
        "}");
    ck_assert_int_eq(q->nrules, 3);
    const sp_rule *g = &q->rules[0];
    ck_assert_int_eq(g->kind, SP_R_GLOBAL);
    ck_assert_int_eq(g->u.set.n, 10);
    is_item(&g->u.set.items[0], 0, false, 0, false);
    is_item(&g->u.set.items[1], 100, false, 100, false);
    is_item(&g->u.set.items[2], 5000, false, 5000, false);
    is_item(&g->u.set.items[3], 0, false, 15, false);
    is_item(&g->u.set.items[4], 32, false, 47, false);
    is_item(&g->u.set.items[5], 16, false, 47, false);
    is_item(&g->u.set.items[6], 0, false, 9, false);
    is_item(&g->u.set.items[7], 0, false, 31, false);
    is_item(&g->u.set.items[8], 16, true, 1, true);
    is_item(&g->u.set.items[9], 16, true, 1, true);

    ck_assert_int_eq(q->rules[1].kind, SP_R_GLOBAL_ROWS);
    ck_assert_int_eq(q->rules[1].u.set.n, 1);
    is_item(&q->rules[1].u.set.items[0], 7, false, 7, false);

    ck_assert_int_eq(q->rules[2].kind, SP_R_GLOBAL_COLS);
    ck_assert_int_eq(q->rules[2].u.set.n, 2);
    is_item(&q->rules[2].u.set.items[0], 3, true, 1, true);
    is_item(&q->rules[2].u.set.items[1], 4, false, 4, false);
}
END_TEST

START_TEST(random_seed_takes_any_64_bit_value)
{
    const sp_program *p = compile_ok("pattern a { random 3 blocks seed 0xFFFFFFFFFFFFFFFF; }\n"
                                     "pattern b { random 1 block seed 18446744073709551615; }\n"
                                     "pattern c { random 2 blocks seed 0; }\n"
                                     "pattern d { random 4 blocks seed 0x1f; }\n");
    ck_assert_uint_eq(p->patterns[0].rules[0].u.random.seed, UINT64_MAX);
    ck_assert_int_eq(p->patterns[0].rules[0].u.random.r, 3);
    ck_assert_uint_eq(p->patterns[1].rules[0].u.random.seed, UINT64_MAX);
    ck_assert_int_eq(p->patterns[1].rules[0].u.random.r, 1);
    ck_assert_uint_eq(p->patterns[2].rules[0].u.random.seed, 0);
    ck_assert_uint_eq(p->patterns[3].rules[0].u.random.seed, 31);
}
END_TEST

START_TEST(heads_groups_sorted_with_their_own_rules)
{
    const sp_pattern *q = pattern_ok("pattern h {\n"
                                     "  window 4;\n"
                                     "  heads 4..7 { window 16 dilation 2; causal; }\n"
                                     "  heads 0..3 { window 16; random 1 blocks seed 9; }\n"
                                     "  heads 9 { dense; }\n"
                                     "  heads 8 { }\n"
                                     "}");
    ck_assert_int_eq(q->nrules, 1);
    ck_assert(!q->causal);
    ck_assert_int_eq(q->nheads, 10);
    ck_assert_int_eq(q->ngroups, 4);
    const sp_group *g = q->groups;
    ck_assert_int_eq(g[0].h0, 0);
    ck_assert_int_eq(g[0].h1, 3);
    ck_assert(!g[0].causal);
    ck_assert_int_eq(g[0].nrules, 2);
    is_window(&g[0].rules[0], -16, 16, 1);
    ck_assert_int_eq(g[0].rules[1].kind, SP_R_RANDOM);
    is_loc(g[0].loc, 4, 3, 12);

    ck_assert_int_eq(g[1].h0, 4);
    ck_assert_int_eq(g[1].h1, 7);
    ck_assert(g[1].causal);
    ck_assert_int_eq(g[1].nrules, 1);
    is_window(&g[1].rules[0], -16, 16, 2);

    ck_assert_int_eq(g[2].h0, 8);
    ck_assert_int_eq(g[2].h1, 8);
    ck_assert_int_eq(g[2].nrules, 0);

    ck_assert_int_eq(g[3].h0, 9);
    ck_assert_int_eq(g[3].h1, 9);
    ck_assert_int_eq(g[3].nrules, 1);
    ck_assert_int_eq(g[3].rules[0].kind, SP_R_DENSE);
}
END_TEST

START_TEST(rules_only_in_groups_and_the_highest_head)
{
    const sp_pattern *q = pattern_ok("pattern h { causal; heads 65535 { dense; } }");
    ck_assert(q->causal);
    ck_assert_int_eq(q->nrules, 0);
    ck_assert_int_eq(q->ngroups, 1);
    ck_assert_int_eq(q->nheads, 65536);
}
END_TEST

START_TEST(keywords_are_pattern_names)
{
    const sp_program *p = compile_ok("pattern dense { dense; }\n"
                                     "pattern causal { dense; causal; }\n"
                                     "pattern window { window 1; }\n"
                                     "pattern pattern { stride 2; }\n"
                                     "pattern blocks { dense; }\n"
                                     "pattern _x9 { dense; }\n");
    ck_assert_int_eq(p->npatterns, 6);
    ck_assert_str_eq(p->patterns[0].name, "dense");
    ck_assert_str_eq(p->patterns[1].name, "causal");
    ck_assert(p->patterns[1].causal);
    ck_assert_str_eq(p->patterns[2].name, "window");
    ck_assert_str_eq(p->patterns[3].name, "pattern");
    ck_assert_int_eq(p->patterns[3].rules[0].u.stride.s, 2);
    ck_assert_str_eq(p->patterns[4].name, "blocks");
    ck_assert_str_eq(p->patterns[5].name, "_x9");
    is_loc(p->patterns[5].loc, 6, 9, 11);
}
END_TEST

START_TEST(comments_blank_lines_tabs_and_crlf)
{
    const char *src = "# leading comment\r\n"
                      "\r\n"
                      "pattern c { # after a brace\r\n"
                      "\twindow\t5; # trailing\r\n"
                      "  dense;\r\n"
                      "} # the end, no newline";
    const sp_pattern *q = pattern_ok(src);
    ck_assert_int_eq(q->nrules, 2);
    is_window(&q->rules[0], -5, 5, 1);
    /* A tab is one column. */
    is_loc(q->rules[0].loc, 4, 2, 9);
    is_loc(q->rules[1].loc, 5, 3, 7);
    is_loc(q->loc, 3, 9, 9);
}
END_TEST

START_TEST(empty_and_comment_only_files_have_no_patterns)
{
    ck_assert_int_eq(compile_ok("")->npatterns, 0);
    ck_assert_int_eq(compile_ok("# nothing here\n\n   \t\n")->npatterns, 0);
}
END_TEST

START_TEST(rule_locations_span_the_rule)
{
    const sp_pattern *q = pattern_ok("pattern l {\n"
                                     "  window -2..+0 blocks;\n"
                                     "  global 1,\n"
                                     "     2;\n"
                                     "}");
    is_loc(q->rules[0].loc, 2, 3, 22);
    /* A rule over two lines is underlined to the end of its first line. */
    is_loc(q->rules[1].loc, 3, 3, 11);
}
END_TEST

START_TEST(values_beyond_2_40_are_clamped)
{
    const sp_pattern *q = pattern_ok(
        "pattern big {\n"
        "  window 18446744073709551615;\n"
        "  window -1099511627777..+5 blocks;\n"
        "  stride 1099511627777;\n"
        "  segment 1099511627775 blocks;\n"
        "  global 2000000000000, 1..2000000000000 blocks, first 18446744073709551615 blocks, last 1099511627777;\n"
        "  columns 5..1099511627777 mod 1099511627778;\n"
        "  columns 1099511627776..1099511627776 mod 1099511627777;\n"
        "  columns 3..4 mod 18446744073709551615 blocks;\n"
        "  window 9 dilation 1099511627777;\n"
        "  random 1099511627777 blocks seed 1;\n"
        "}");
    ck_assert_int_eq(q->nrules, 10);
    is_window(&q->rules[0], -MAXV, MAXV, 1);
    is_bwindow(&q->rules[1], -MAXV, 5);
    ck_assert_int_eq(q->rules[2].u.stride.s, MAXV);
    ck_assert_int_eq(q->rules[3].u.segment.s, MAXV); /* the product saturates */
    const sp_setitem *it = q->rules[4].u.set.items;
    is_item(&it[0], MAXV, false, MAXV, false);
    is_item(&it[1], 64, false, MAXV, false);
    is_item(&it[2], 0, false, MAXV - 1, false);
    is_item(&it[3], MAXV, true, 1, true);
    /* The period and range are cut below 2^40: the same keys j < 2^40. */
    is_columns(&q->rules[5], 5, MAXV - 1, MAXV);
    is_columns(&q->rules[6], MAXV - 1, MAXV - 1, MAXV);
    is_columns(&q->rules[7], 3, 4, MAXV);
    is_window(&q->rules[8], -9, 9, MAXV);
    ck_assert_int_eq(q->rules[9].u.random.r, MAXV);
}
END_TEST

START_TEST(huge_block_size_cannot_overflow)
{
    const sp_pattern *q = pattern_ok("pattern b { block 18446744073709551615; stride 1099511627776 blocks;"
                                     " global 3 blocks, last 2 blocks; }");
    ck_assert_int_eq(q->block, MAXV);
    ck_assert_int_eq(q->rules[0].u.stride.s, MAXV);
    is_item(&q->rules[1].u.set.items[0], MAXV, false, MAXV, false);
    is_item(&q->rules[1].u.set.items[1], MAXV, true, 1, true);
}
END_TEST

START_TEST(parse_alone_keeps_signs_and_units)
{
    const char *src = "pattern a { window -3..+4 blocks; block 8; heads 1..2 { causal; } }";
    sp_ast_file *f = NULL;
    sp_diag_init(&diag, FILE_NAME, src, strlen(src));
    diag_live = true;
    ck_assert_int_eq(sp_parse(src, strlen(src), &arena, &diag, &f), 0);
    ck_assert_int_eq(f->npatterns, 1);
    const sp_ast_pattern *p = f->patterns;
    ck_assert_str_eq(p->name, "a");
    ck_assert_int_eq(p->body.n, 3);
    const sp_ast_stmt *s = p->body.first;
    ck_assert_int_eq(s->kind, SP_AST_RULE);
    ck_assert_int_eq(s->u.rule.kind, SP_AST_WINDOW);
    ck_assert(s->u.rule.u.window.range);
    ck_assert(s->u.rule.u.window.lo.neg);
    ck_assert_uint_eq(s->u.rule.u.window.lo.v, 3);
    ck_assert(s->u.rule.u.window.hi.sign && !s->u.rule.u.window.hi.neg);
    ck_assert(s->u.rule.u.window.blocks);
    s = s->next;
    ck_assert_int_eq(s->kind, SP_AST_BLOCK);
    ck_assert_uint_eq(s->u.block.v, 8);
    s = s->next;
    ck_assert_int_eq(s->kind, SP_AST_HEADS);
    ck_assert_uint_eq(s->u.heads.h0.v, 1);
    ck_assert_uint_eq(s->u.heads.h1.v, 2);
    ck_assert_int_eq(s->u.heads.body.n, 1);
    ck_assert_int_eq(s->u.heads.body.first->kind, SP_AST_CAUSAL);

    sp_program *prog = NULL;
    ck_assert_int_eq(sp_sema(f, &arena, &diag, &prog), 0);
    ck_assert_int_eq(prog->patterns[0].block, 8);
    is_bwindow(&prog->patterns[0].rules[0], -3, 4);
}
END_TEST

START_TEST(parse_keeps_what_precedes_an_early_end_of_file)
{
    const char *src = "pattern a { dense; }\npattern b { stride 2; window";
    sp_ast_file *f = NULL;
    sp_diag_init(&diag, FILE_NAME, src, strlen(src));
    diag_live = true;
    ck_assert_int_eq(sp_parse(src, strlen(src), &arena, &diag, &f), -1);
    ck_assert_int_eq(diag.nerrors, 1);
    ck_assert_int_eq(f->npatterns, 2);
    ck_assert(!f->patterns->syntax_error);
    ck_assert(f->patterns->next->syntax_error);
    ck_assert_int_eq(f->patterns->next->body.n, 1);

    /* Sema still checks what was read, but makes no program of it. */
    sp_program *prog = (sp_program *)1;
    ck_assert_int_eq(sp_sema(f, &arena, &diag, &prog), -1);
    ck_assert_ptr_null(prog);
    ck_assert_int_eq(diag.nerrors, 1);
}
END_TEST

/* The text may hold NUL bytes: the length, not a terminator, ends it. */
START_TEST(length_not_nul_ends_the_text)
{
    static const char src[] = "pattern a { dense; }\0pattern b { dense; }";
    sp_program *prog = NULL;
    ck_assert_int_eq(run(src, 20, &prog), 0);
    ck_assert_int_eq(prog->npatterns, 1);
    ck_assert_int_eq(run(src, sizeof src - 1, &prog), -1);
    /* The echoed line shows the NUL as a blank and goes on to the line's end. */
    ck_assert_str_eq(sp_diag_text(&diag), "t.spat:1:21: error: unexpected character '\\x00'\n"
                                          " 1 | pattern a { dense; } pattern b { dense; }\n"
                                          "   |                     ^\n");
    ck_assert_int_eq(run(NULL, 0, &prog), 0);
    ck_assert_int_eq(prog->npatterns, 0);
}
END_TEST

/* Two threads compile at once: nothing is shared between compilations. */
typedef struct job {
    const char *src;
    int rounds, failures;
} job;

static void *compile_many(void *arg)
{
    job *j = arg;
    for (int i = 0; i < j->rounds; i++) {
        sp_arena a;
        sp_diag d;
        sp_program *p = NULL;
        sp_arena_init(&a);
        sp_diag_init(&d, "thread.spat", j->src, strlen(j->src));
        int rc = sp_frontend(j->src, strlen(j->src), &a, &d, &p);
        bool good = strstr(j->src, "oops") ? rc == -1 && d.nerrors == 2 : rc == 0 && p->npatterns == 2;
        j->failures += !good;
        sp_diag_free(&d);
        sp_arena_free(&a);
    }
    return NULL;
}

START_TEST(two_threads_compile_at_once)
{
    job good = {"pattern a { window 5; global 0..3; }\npattern b { heads 0..3 { stride 4; } }", 2000, 0};
    job bad = {"pattern a { oops 5; }\npattern b { block 0; dense; }", 2000, 0};
    pthread_t t1, t2;
    ck_assert_int_eq(pthread_create(&t1, NULL, compile_many, &good), 0);
    ck_assert_int_eq(pthread_create(&t2, NULL, compile_many, &bad), 0);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    ck_assert_int_eq(good.failures, 0);
    ck_assert_int_eq(bad.failures, 0);
}
END_TEST

/* ---------------------------------------------------------------- errors */

typedef struct bad_case {
    const char *what, *src, *text;
} bad_case;

/* One error each: the whole rendered diagnostic. */
static const bad_case bad_cases[] = {
    /* scanner */
    {"unexpected character", "pattern p { dense; @ }",
     "t.spat:1:20: error: unexpected character '@'\n"
     " 1 | pattern p { dense; @ }\n"
     "   |                    ^\n"},
    {"unexpected UTF-8 character", "pattern p { dense; \xc3\xa9 }",
     "t.spat:1:20: error: unexpected character '\xc3\xa9'\n"
     " 1 | pattern p { dense; \xc3\xa9 }\n"
     "   |                    ^~\n"},
    {"run of stray bytes is one error", "pattern p { dense; $%\xff }",
     "t.spat:1:20: error: unexpected characters '$%\\xff'\n"
     " 1 | pattern p { dense; $%\xff }\n"
     "   |                    ^~~\n"},
    {"unexpected control byte", "pattern p { dense; \x01 }",
     "t.spat:1:20: error: unexpected character '\\x01'\n"
     " 1 | pattern p { dense; \x01 }\n"
     "   |                    ^\n"},
    {"number above 64 bits", "pattern p { window 18446744073709551616; }",
     "t.spat:1:20: error: number does not fit in 64 bits\n"
     " 1 | pattern p { window 18446744073709551616; }\n"
     "   |                    ^~~~~~~~~~~~~~~~~~~~\n"},
    {"hex number above 64 bits", "pattern p { random 1 blocks seed 0x10000000000000000; }",
     "t.spat:1:34: error: number does not fit in 64 bits\n"
     " 1 | pattern p { random 1 blocks seed 0x10000000000000000; }\n"
     "   |                                  ^~~~~~~~~~~~~~~~~~~\n"},
    {"malformed number", "pattern p { stride 12ab; }",
     "t.spat:1:20: error: invalid number '12ab'\n"
     " 1 | pattern p { stride 12ab; }\n"
     "   |                    ^~~~\n"},
    {"fraction", "pattern p { window 1.5; }",
     "t.spat:1:20: error: invalid number '1.5'\n"
     " 1 | pattern p { window 1.5; }\n"
     "   |                    ^~~\n"},
    /* parser */
    {"missing semicolon after a rule", "pattern p { window 5 window 3; }",
     "t.spat:1:22: error: expected ';' after the rule, found 'window'\n"
     " 1 | pattern p { window 5 window 3; }\n"
     "   |                      ^~~~~~\n"},
    {"missing semicolon before the brace", "pattern p { dense }",
     "t.spat:1:19: error: expected ';' after the rule, found '}'\n"
     " 1 | pattern p { dense }\n"
     "   |                   ^\n"},
    {"missing semicolon after causal", "pattern p { causal dense; }",
     "t.spat:1:20: error: expected ';' after 'causal', found 'dense'\n"
     " 1 | pattern p { causal dense; }\n"
     "   |                    ^~~~~\n"},
    {"missing semicolon after block", "pattern p { block 64 dense; }",
     "t.spat:1:22: error: expected ';' after the block size, found 'dense'\n"
     " 1 | pattern p { block 64 dense; }\n"
     "   |                      ^~~~~\n"},
    {"misspelt rule", "pattern p { windw 4; }",
     "t.spat:1:13: error: unknown rule 'windw'; did you mean 'window'?\n"
     " 1 | pattern p { windw 4; }\n"
     "   |             ^~~~~\n"},
    {"misspelt rule in capitals", "pattern p { DENSE; }",
     "t.spat:1:13: error: unknown rule 'DENSE'; did you mean 'dense'?\n"
     " 1 | pattern p { DENSE; }\n"
     "   |             ^~~~~\n"},
    {"unknown rule", "pattern p { frobnicate 4; }",
     "t.spat:1:13: error: unknown rule 'frobnicate'\n"
     " 1 | pattern p { frobnicate 4; }\n"
     "   |             ^~~~~~~~~~\n"},
    {"misspelt word inside a rule", "pattern p { window 256 dilaton 4; }",
     "t.spat:1:24: error: unknown word 'dilaton'; did you mean 'dilation'?\n"
     " 1 | pattern p { window 256 dilaton 4; }\n"
     "   |                        ^~~~~~~\n"},
    {"misspelt pattern keyword", "patern p { dense; }",
     "t.spat:1:1: error: unknown word 'patern'; did you mean 'pattern'?\n"
     " 1 | patern p { dense; }\n"
     "   | ^~~~~~\n"},
    {"missing number", "pattern p { stride ; }",
     "t.spat:1:20: error: expected a number after 'stride', found ';'\n"
     " 1 | pattern p { stride ; }\n"
     "   |                    ^\n"},
    {"dilation without value", "pattern p { window 5 dilation; }",
     "t.spat:1:30: error: expected a number or 'exp' after 'dilation', found ';'\n"
     " 1 | pattern p { window 5 dilation; }\n"
     "   |                              ^\n"},
    {"random without blocks", "pattern p { random 3 seed 4; }",
     "t.spat:1:22: error: expected 'blocks' after '3', found 'seed'\n"
     " 1 | pattern p { random 3 seed 4; }\n"
     "   |                      ^~~~\n"},
    {"set without items", "pattern p { global rows; }",
     "t.spat:1:24: error: expected a number, 'first' or 'last' after 'rows', found ';'\n"
     " 1 | pattern p { global rows; }\n"
     "   |                        ^\n"},
    {"missing pattern name", "pattern { dense; }",
     "t.spat:1:9: error: expected a pattern name after 'pattern', found '{'\n"
     " 1 | pattern { dense; }\n"
     "   |         ^\n"},
    {"rule outside a pattern", "window 5;",
     "t.spat:1:1: error: expected 'pattern' or end of file, found 'window'\n"
     " 1 | window 5;\n"
     "   | ^~~~~~\n"},
    {"stray semicolon", "pattern p { ; dense; }",
     "t.spat:1:13: error: expected a rule or '}', found ';'\n"
     " 1 | pattern p { ; dense; }\n"
     "   |             ^\n"},
    {"heads without a brace", "pattern p { dense; heads 0..3 window 5; } }",
     "t.spat:1:31: error: expected '{' after '3', found 'window'\n"
     " 1 | pattern p { dense; heads 0..3 window 5; } }\n"
     "   |                               ^~~~~~\n"},
    {"end of file inside a pattern", "pattern p { dense;\n  # more to come\n",
     "t.spat:1:19: error: expected a rule or '}', found end of file\n"
     " 1 | pattern p { dense;\n"
     "   |                   ^\n"},
    /* sizes */
    {"block 0", "pattern p { block 0; dense; }",
     "t.spat:1:19: error: block size must be at least 1\n"
     " 1 | pattern p { block 0; dense; }\n"
     "   |                   ^\n"},
    {"stride 0", "pattern p { stride 0; }",
     "t.spat:1:20: error: stride must be at least 1\n"
     " 1 | pattern p { stride 0; }\n"
     "   |                    ^\n"},
    {"negative stride", "pattern p { stride -4 blocks; }",
     "t.spat:1:20: error: stride must be at least 1\n"
     " 1 | pattern p { stride -4 blocks; }\n"
     "   |                    ^~\n"},
    {"segment 0", "pattern p { segment 0 blocks; }",
     "t.spat:1:21: error: segment length must be at least 1\n"
     " 1 | pattern p { segment 0 blocks; }\n"
     "   |                     ^\n"},
    {"columns mod 0", "pattern p { columns 0..0 mod 0; }",
     "t.spat:1:30: error: the period after 'mod' must be at least 1\n"
     " 1 | pattern p { columns 0..0 mod 0; }\n"
     "   |                              ^\n"},
    {"random 0 blocks", "pattern p { random 0 blocks seed 1; }",
     "t.spat:1:20: error: random block count must be at least 1\n"
     " 1 | pattern p { random 0 blocks seed 1; }\n"
     "   |                    ^\n"},
    {"first 0", "pattern p { global first 0; }",
     "t.spat:1:26: error: the count after 'first' must be at least 1\n"
     " 1 | pattern p { global first 0; }\n"
     "   |                          ^\n"},
    {"last 0", "pattern p { global cols last 0 blocks; }",
     "t.spat:1:30: error: the count after 'last' must be at least 1\n"
     " 1 | pattern p { global cols last 0 blocks; }\n"
     "   |                              ^\n"},
    {"dilation 0", "pattern p { window 8 dilation 0; }",
     "t.spat:1:31: error: dilation must be at least 1\n"
     " 1 | pattern p { window 8 dilation 0; }\n"
     "   |                               ^\n"},
    {"signed single window", "pattern p { window -5; }",
     "t.spat:1:20: error: a single window width takes no sign: write 'window 5' for both sides, "
     "or a range such as '-5..+0'\n"
     " 1 | pattern p { window -5; }\n"
     "   |                    ^~\n"},
    {"negative position", "pattern p { global 1, -3; }",
     "t.spat:1:23: error: position must not be negative\n"
     " 1 | pattern p { global 1, -3; }\n"
     "   |                       ^~\n"},
    {"negative seed", "pattern p { random 1 blocks seed -1; }",
     "t.spat:1:34: error: seed must not be negative\n"
     " 1 | pattern p { random 1 blocks seed -1; }\n"
     "   |                                  ^~\n"},
    {"negative column", "pattern p { columns -1..3 mod 8; }",
     "t.spat:1:21: error: column must not be negative\n"
     " 1 | pattern p { columns -1..3 mod 8; }\n"
     "   |                     ^~\n"},
    /* ranges */
    {"window lo above hi", "pattern p { window -5..-10; }",
     "t.spat:1:20: error: window range -5..-10 is empty (its start is after its end)\n"
     " 1 | pattern p { window -5..-10; }\n"
     "   |                    ^~~~~~~\n"},
    {"block window lo above hi", "pattern p { window +3..2 blocks; }",
     "t.spat:1:20: error: window range +3..2 is empty (its start is after its end)\n"
     " 1 | pattern p { window +3..2 blocks; }\n"
     "   |                    ^~~~~\n"},
    {"set range a above b", "pattern p { global 10..5; }",
     "t.spat:1:20: error: range 10..5 is empty (its start is after its end)\n"
     " 1 | pattern p { global 10..5; }\n"
     "   |                    ^~~~~\n"},
    {"set range in blocks a above b", "pattern p { global rows 0, 3..2 blocks; }",
     "t.spat:1:28: error: range 3..2 is empty (its start is after its end)\n"
     " 1 | pattern p { global rows 0, 3..2 blocks; }\n"
     "   |                            ^~~~~~~~~~~\n"},
    {"columns a above b", "pattern p { columns 5..3 mod 8; }",
     "t.spat:1:21: error: column range 5..3 is empty (its start is after its end)\n"
     " 1 | pattern p { columns 5..3 mod 8; }\n"
     "   |                     ^~~~\n"},
    {"columns b not below S", "pattern p { columns 0..8 mod 8; }",
     "t.spat:1:21: error: column range 0..8 must lie below the period 8\n"
     " 1 | pattern p { columns 0..8 mod 8; }\n"
     "   |                     ^~~~\n"},
    {"columns b not below S in blocks", "pattern p { block 16; columns 0..32 mod 2 blocks; }",
     "t.spat:1:31: error: column range 0..32 must lie below the period 32\n"
     " 1 | pattern p { block 16; columns 0..32 mod 2 blocks; }\n"
     "   |                               ^~~~~\n"},
    /* dilation */
    {"dilation on a block window", "pattern p { window 3 blocks dilation 2; }",
     "t.spat:1:29: error: 'dilation' cannot be used with a window in blocks\n"
     " 1 | pattern p { window 3 blocks dilation 2; }\n"
     "   |                             ^~~~~~~~~~\n"},
    {"dilation exp on a block window", "pattern p { window -1..+1 blocks dilation exp; }",
     "t.spat:1:34: error: 'dilation' cannot be used with a window in blocks\n"
     " 1 | pattern p { window -1..+1 blocks dilation exp; }\n"
     "   |                                  ^~~~~~~~~~~~\n"},
    {"dilation exp on a range", "pattern p { window -4..+4 dilation exp; }",
     "t.spat:1:27: error: 'dilation exp' needs a single width, as in 'window 256 dilation exp'\n"
     " 1 | pattern p { window -4..+4 dilation exp; }\n"
     "   |                           ^~~~~~~~~~~~\n"},
    /* heads */
    {"overlapping head ranges",
     "pattern p {\n  window 1;\n  heads 2..5 { dense; }\n  heads 4..7 { stride 2; }\n}",
     "t.spat:4:3: error: heads 4..7 overlap heads 2..5 (line 3)\n"
     " 4 |   heads 4..7 { stride 2; }\n"
     "   |   ^~~~~~~~~~\n"},
    {"single head inside a range", "pattern p { heads 0..3 { dense; } heads 3 { dense; } }",
     "t.spat:1:35: error: heads 3 overlap heads 0..3 (line 1)\n"
     " 1 | pattern p { heads 0..3 { dense; } heads 3 { dense; } }\n"
     "   |                                   ^~~~~~~\n"},
    {"head range reversed", "pattern p { heads 7..4 { dense; } }",
     "t.spat:1:19: error: head range 7..4 is empty (its start is after its end)\n"
     " 1 | pattern p { heads 7..4 { dense; } }\n"
     "   |                   ^~~~\n"},
    {"head index above 65535", "pattern p { heads 0..65536 { dense; } }",
     "t.spat:1:22: error: head index 65536 is above 65535\n"
     " 1 | pattern p { heads 0..65536 { dense; } }\n"
     "   |                      ^~~~~\n"},
    {"negative head index", "pattern p { heads -1 { dense; } }",
     "t.spat:1:19: error: head index must not be negative\n"
     " 1 | pattern p { heads -1 { dense; } }\n"
     "   |                   ^~\n"},
    {"nested heads", "pattern p { heads 0..3 { heads 1 { dense; } } }",
     "t.spat:1:26: error: heads groups cannot be nested\n"
     " 1 | pattern p { heads 0..3 { heads 1 { dense; } } }\n"
     "   |                          ^~~~~~~\n"},
    /* duplicates */
    {"duplicate pattern name", "pattern p { dense; }\n\npattern p { window 1; }",
     "t.spat:3:9: error: duplicate pattern 'p' (first defined on line 1)\n"
     " 3 | pattern p { window 1; }\n"
     "   |         ^\n"},
    {"duplicate block", "pattern p { block 32;\n  dense; block 64; }",
     "t.spat:2:10: error: duplicate 'block' (the block size is already set on line 1)\n"
     " 2 |   dense; block 64; }\n"
     "   |          ^~~~~~~~\n"},
    {"duplicate causal", "pattern p { causal; dense; causal; }",
     "t.spat:1:28: error: duplicate 'causal' (already given on line 1)\n"
     " 1 | pattern p { causal; dense; causal; }\n"
     "   |                            ^~~~~~\n"},
    {"duplicate causal in a group", "pattern p { causal; heads 0 { causal; dense; causal; } }",
     "t.spat:1:46: error: duplicate 'causal' (already given on line 1)\n"
     " 1 | pattern p { causal; heads 0 { causal; dense; causal; } }\n"
     "   |                                              ^~~~~~\n"},
    {"block inside a group", "pattern p { heads 0..1 { block 32; dense; } }",
     "t.spat:1:26: error: 'block' cannot be inside a heads group: the block size is the whole pattern's\n"
     " 1 | pattern p { heads 0..1 { block 32; dense; } }\n"
     "   |                          ^~~~~~~~\n"},
    /* random */
    {"two random rules in a pattern",
     "pattern p { random 1 blocks seed 1;\n  random 2 blocks seed 2; }",
     "t.spat:2:3: error: more than one 'random' rule for every head (the other is on line 1)\n"
     " 2 |   random 2 blocks seed 2; }\n"
     "   |   ^~~~~~~~~~~~~~~~~~~~~~\n"},
    {"pattern-wide and group random",
     "pattern p { heads 0..3 { random 2 blocks seed 2; }\n  random 1 blocks seed 1; }",
     "t.spat:1:26: error: more than one 'random' rule for heads 0..3 (the other is on line 2)\n"
     " 1 | pattern p { heads 0..3 { random 2 blocks seed 2; }\n"
     "   |                          ^~~~~~~~~~~~~~~~~~~~~~\n"},
    {"two random rules in a group",
     "pattern p { heads 5 { random 1 blocks seed 1; random 3 blocks seed 1; } }",
     "t.spat:1:47: error: more than one 'random' rule for heads 5 (the other is on line 1)\n"
     " 1 | pattern p { heads 5 { random 1 blocks seed 1; random 3 blocks seed 1; } }\n"
     "   |                                               ^~~~~~~~~~~~~~~~~~~~~~\n"},
    /* no rules */
    {"pattern without rules", "pattern empty { causal; block 32; heads 0 { causal; } }",
     "t.spat:1:9: error: pattern 'empty' has no rules\n"
     " 1 | pattern empty { causal; block 32; heads 0 { causal; } }\n"
     "   |         ^~~~~\n"},
};

START_TEST(each_error_class_has_its_message)
{
    const bad_case *c = &bad_cases[_i];
    sp_program *prog = (sp_program *)1;
    int rc = run(c->src, strlen(c->src), &prog);
    ck_assert_msg(rc == -1, "%s: no error reported", c->what);
    ck_assert_ptr_null(prog);
    ck_assert_msg(strcmp(sp_diag_text(&diag), c->text) == 0, "%s:\nexpected:\n%s\ngot:\n%s", c->what,
                  c->text, sp_diag_text(&diag));
    ck_assert_msg(diag.nerrors == 1, "%s: %d errors", c->what, diag.nerrors);
}
END_TEST

START_TEST(every_error_of_a_file_is_reported_in_order)
{
    /* Syntax errors come first (the parse), then semantic ones (sema),
     * each group in text order; recovery loses nothing in between. */
    compile_fails("pattern a {\n"
                  "  windw 4;\n"
                  "  stride 0;\n"
                  "  window 5 window 3;\n"
                  "  heads 0..3 { dense; causal; causal }\n"
                  "  segment 0;\n"
                  "}\n"
                  "pattern b { dense; @ }\n"
                  "pattern a { global 9..1; }\n",
                  8,
                  "t.spat:2:3: error: unknown rule 'windw'; did you mean 'window'?\n"
                  " 2 |   windw 4;\n"
                  "   |   ^~~~~\n"
                  "t.spat:4:12: error: expected ';' after the rule, found 'window'\n"
                  " 4 |   window 5 window 3;\n"
                  "   |            ^~~~~~\n"
                  "t.spat:5:38: error: expected ';' after 'causal', found '}'\n"
                  " 5 |   heads 0..3 { dense; causal; causal }\n"
                  "   |                                      ^\n"
                  "t.spat:8:20: error: unexpected character '@'\n"
                  " 8 | pattern b { dense; @ }\n"
                  "   |                    ^\n"
                  "t.spat:3:10: error: stride must be at least 1\n"
                  " 3 |   stride 0;\n"
                  "   |          ^\n"
                  "t.spat:6:11: error: segment length must be at least 1\n"
                  " 6 |   segment 0;\n"
                  "   |           ^\n"
                  "t.spat:9:9: error: duplicate pattern 'a' (first defined on line 1)\n"
                  " 9 | pattern a { global 9..1; }\n"
                  "   |         ^\n"
                  "t.spat:9:20: error: range 9..1 is empty (its start is after its end)\n"
                  " 9 | pattern a { global 9..1; }\n"
                  "   |                    ^~~~\n");
}
END_TEST

START_TEST(recovery_at_braces_keeps_later_patterns)
{
    /* A garbled group is skipped whole, its braces matched; the next
     * pattern is still checked. */
    compile_fails("pattern a { hedas 0..3 { window 5; } dense; }\n"
                  "pattern b { stride 0; }\n",
                  2,
                  "t.spat:1:13: error: unknown rule 'hedas'; did you mean 'heads'?\n"
                  " 1 | pattern a { hedas 0..3 { window 5; } dense; }\n"
                  "   |             ^~~~~\n"
                  "t.spat:2:20: error: stride must be at least 1\n"
                  " 2 | pattern b { stride 0; }\n"
                  "   |                    ^\n");
}
END_TEST

START_TEST(group_missing_its_brace_still_holds_its_rules)
{
    /* The group reads `window 5;` and its `}`: the pattern's rule after it,
     * and that rule's error, are still the pattern's. */
    compile_fails("pattern p { heads 0..3 window 5; } stride 0;\n heads 2 { dense; } }", 3,
                  "t.spat:1:24: error: expected '{' after '3', found 'window'\n"
                  " 1 | pattern p { heads 0..3 window 5; } stride 0;\n"
                  "   |                        ^~~~~~\n"
                  "t.spat:1:43: error: stride must be at least 1\n"
                  " 1 | pattern p { heads 0..3 window 5; } stride 0;\n"
                  "   |                                           ^\n"
                  "t.spat:2:2: error: heads 2 overlap heads 0..3 (line 1)\n"
                  " 2 |  heads 2 { dense; } }\n"
                  "   |  ^~~~~~~\n");
}
END_TEST

START_TEST(consecutive_syntax_errors_are_all_reported)
{
    compile_fails("pattern a { window; stride; segment; }", 3,
                  "t.spat:1:19: error: expected a number after 'window', found ';'\n"
                  " 1 | pattern a { window; stride; segment; }\n"
                  "   |                   ^\n"
                  "t.spat:1:27: error: expected a number after 'stride', found ';'\n"
                  " 1 | pattern a { window; stride; segment; }\n"
                  "   |                           ^\n"
                  "t.spat:1:36: error: expected a number after 'segment', found ';'\n"
                  " 1 | pattern a { window; stride; segment; }\n"
                  "   |                                    ^\n");
}
END_TEST

START_TEST(errors_in_one_rule_are_all_reported)
{
    compile_fails("pattern a { window -5..-10 dilation 0; }", 2,
                  "t.spat:1:20: error: window range -5..-10 is empty (its start is after its end)\n"
                  " 1 | pattern a { window -5..-10 dilation 0; }\n"
                  "   |                    ^~~~~~~\n"
                  "t.spat:1:37: error: dilation must be at least 1\n"
                  " 1 | pattern a { window -5..-10 dilation 0; }\n"
                  "   |                                     ^\n");
}
END_TEST

START_TEST(no_rules_is_not_reported_after_a_syntax_error)
{
    /* The rule was lost to the syntax error; "no rules" would be noise. */
    compile_fails("pattern a { windw 5; }", 1,
                  "t.spat:1:13: error: unknown rule 'windw'; did you mean 'window'?\n"
                  " 1 | pattern a { windw 5; }\n"
                  "   |             ^~~~~\n");
}
END_TEST

START_TEST(overflowing_head_index_is_reported_once)
{
    compile_fails("pattern a { heads 99999999999999999999 { dense; } }", 1,
                  "t.spat:1:19: error: number does not fit in 64 bits\n"
                  " 1 | pattern a { heads 99999999999999999999 { dense; } }\n"
                  "   |                   ^~~~~~~~~~~~~~~~~~~~\n");
}
END_TEST

static Suite *parser_suite(void)
{
    Suite *s = suite_create("parser");
    TCase *tc = tcase_create("good");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, benchmark_suite_lowers_exactly);
    tcase_add_test(tc, window_forms);
    tcase_add_test(tc, lengths_in_blocks_use_the_final_block_size);
    tcase_add_test(tc, sets_lists_ranges_blocks_first_last);
    tcase_add_test(tc, random_seed_takes_any_64_bit_value);
    tcase_add_test(tc, heads_groups_sorted_with_their_own_rules);
    tcase_add_test(tc, rules_only_in_groups_and_the_highest_head);
    tcase_add_test(tc, keywords_are_pattern_names);
    tcase_add_test(tc, comments_blank_lines_tabs_and_crlf);
    tcase_add_test(tc, empty_and_comment_only_files_have_no_patterns);
    tcase_add_test(tc, rule_locations_span_the_rule);
    tcase_add_test(tc, values_beyond_2_40_are_clamped);
    tcase_add_test(tc, huge_block_size_cannot_overflow);
    tcase_add_test(tc, parse_alone_keeps_signs_and_units);
    tcase_add_test(tc, parse_keeps_what_precedes_an_early_end_of_file);
    tcase_add_test(tc, length_not_nul_ends_the_text);
    tcase_add_test(tc, two_threads_compile_at_once);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, each_error_class_has_its_message, 0,
                        (int)(sizeof bad_cases / sizeof bad_cases[0]));
    tcase_add_test(tc, every_error_of_a_file_is_reported_in_order);
    tcase_add_test(tc, recovery_at_braces_keeps_later_patterns);
    tcase_add_test(tc, group_missing_its_brace_still_holds_its_rules);
    tcase_add_test(tc, consecutive_syntax_errors_are_all_reported);
    tcase_add_test(tc, errors_in_one_rule_are_all_reported);
    tcase_add_test(tc, no_rules_is_not_reported_after_a_syntax_error);
    tcase_add_test(tc, overflowing_head_index_is_reported_once);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(parser_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
