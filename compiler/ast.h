/* The syntax tree of a .spat file, as the parser (grammar/parser.y) builds
 * it: the text's structure with a location on every node and no meaning
 * attached yet. Numbers keep their sign and full 64-bit magnitude, and units
 * stay as written, so that sema (compiler/sema.c) can check ranges exactly
 * and name the offending text. Every node lives in the compilation's arena. */
#ifndef SPAT_AST_H
#define SPAT_AST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "diag.h"

/* A number as written: [+|-] magnitude. `bad` marks a literal the scanner
 * already reported (too large, malformed), so sema does not report it again. */
typedef struct sp_ast_num {
    uint64_t v;
    bool neg;  /* written with '-' */
    bool sign; /* written with '+' or '-' */
    bool bad;
    sp_loc loc;
} sp_ast_num;

/* A length: a number, in tokens unless `blocks` (or `block`) follows. */
typedef struct sp_ast_len {
    sp_ast_num n;
    bool blocks;
    sp_loc loc; /* the number and its unit */
} sp_ast_len;

typedef enum sp_ast_item_kind {
    SP_AST_ITEM_POS,   /* p [blocks] */
    SP_AST_ITEM_RANGE, /* a..b [blocks] */
    SP_AST_ITEM_FIRST, /* first n */
    SP_AST_ITEM_LAST,  /* last n */
} sp_ast_item_kind;

typedef struct sp_ast_item {
    sp_ast_item_kind kind;
    sp_loc loc;
    struct sp_ast_item *next;
    union {
        struct { sp_ast_num p; bool blocks; } pos;
        struct { sp_ast_num a, b; bool blocks; } range;
        sp_ast_len count; /* FIRST, LAST */
    } u;
} sp_ast_item;

typedef enum sp_ast_rule_kind {
    SP_AST_WINDOW,  /* window W | window lo..hi, [blocks], [dilation D | dilation exp] */
    SP_AST_STRIDE,  /* stride len */
    SP_AST_SEGMENT, /* segment len */
    SP_AST_COLUMNS, /* columns a..b mod len */
    SP_AST_GLOBAL,  /* global [rows | cols] set */
    SP_AST_RANDOM,  /* random R blocks seed S */
    SP_AST_DENSE,   /* dense */
} sp_ast_rule_kind;

typedef enum sp_ast_dil_kind {
    SP_AST_DIL_NONE,
    SP_AST_DIL_NUM, /* dilation D */
    SP_AST_DIL_EXP, /* dilation exp */
} sp_ast_dil_kind;

typedef enum sp_ast_set_kind {
    SP_AST_SET_BOTH, /* global */
    SP_AST_SET_ROWS, /* global rows */
    SP_AST_SET_COLS, /* global cols */
} sp_ast_set_kind;

typedef struct sp_ast_rule {
    sp_ast_rule_kind kind;
    sp_loc loc; /* from the keyword to the end of the rule, `;` excluded */
    union {
        struct sp_ast_window {
            bool range;      /* lo..hi written; otherwise the width is in hi */
            sp_ast_num lo, hi;
            sp_loc span_loc; /* the width or the range */
            bool blocks;
            sp_ast_dil_kind dil_kind;
            sp_ast_num dil;  /* DIL_NUM */
            sp_loc dil_loc;  /* `dilation ...` */
        } window;
        sp_ast_len stride;
        sp_ast_len segment;
        struct sp_ast_columns {
            sp_ast_num a, b;
            sp_ast_len s;
            sp_loc range_loc; /* a..b */
        } columns;
        struct {
            sp_ast_set_kind which;
            sp_ast_item *items; /* linked, in text order */
            int nitems;
        } global;
        struct { sp_ast_num r, seed; } random;
    } u;
} sp_ast_rule;

typedef enum sp_ast_stmt_kind {
    SP_AST_RULE,   /* rule ; */
    SP_AST_CAUSAL, /* causal ; */
    SP_AST_BLOCK,  /* block N ; */
    SP_AST_HEADS,  /* heads h0[..h1] { stmt* } */
} sp_ast_stmt_kind;

typedef struct sp_ast_stmt sp_ast_stmt;

/* Statements in text order; appended at the tail while parsing. */
typedef struct sp_ast_stmts {
    sp_ast_stmt *first, *last;
    int n;
} sp_ast_stmts;

struct sp_ast_stmt {
    sp_ast_stmt_kind kind;
    sp_loc loc; /* the statement, `;` excluded; for HEADS, `heads h0..h1` */
    sp_ast_stmt *next;
    union {
        sp_ast_rule rule;
        sp_ast_num block;
        struct {
            bool range; /* h0..h1 written; otherwise h1 = h0 */
            sp_ast_num h0, h1;
            sp_loc range_loc;
            sp_ast_stmts body;
        } heads;
    } u;
};

typedef struct sp_ast_pattern {
    const char *name; /* NULL when the name was a syntax error */
    sp_loc loc;       /* the name */
    sp_ast_stmts body;
    /* A syntax error was reported inside this pattern: statements may be
     * missing, so sema skips the checks that missing text would fake. */
    bool syntax_error;
    struct sp_ast_pattern *next;
} sp_ast_pattern;

typedef struct sp_ast_file {
    sp_ast_pattern *patterns; /* linked, in text order */
    int npatterns;
} sp_ast_file;

/* The scanner and parser behind sp_parse (implemented in grammar/lexer.l).
 * Always stores a file (possibly partial) in *out unless memory runs out.
 * Returns 0, or -1 when it reported an error to d. */
int sp_grammar_parse(const char *src, size_t len, sp_arena *a, sp_diag *d, sp_ast_file **out);

#endif
