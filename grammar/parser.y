/* The .spat grammar: a pure, reentrant bison parser that builds the AST of
 * compiler/ast.h. Syntax errors are reported with what was expected, and the
 * parser recovers at `;` and `}` (and skips a garbled `{ ... }` whole), so
 * that one run lists every error of a file. Statements are appended to the
 * AST as soon as they are complete, so everything before an unrecoverable
 * error (end of file inside a pattern) still reaches sema. */

%define api.pure full
%define api.prefix {sp_yy}
%define api.location.type {sp_yyltype}
%define parse.error custom
%define parse.lac full
%locations
%param {yyscan_t scanner} {sp_pctx *ctx}

%code requires {
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "ast.h"
#include "diag.h"

#ifndef YY_TYPEDEF_YY_SCANNER_T
#define YY_TYPEDEF_YY_SCANNER_T
typedef void *yyscan_t;
#endif

typedef struct sp_pctx sp_pctx;

/* Lines and columns as in sp_loc; offsets into the source text, so that a
 * construct can be named by its text and underlined to the end of its line. */
typedef struct sp_yyltype {
    int first_line, first_column, last_line, last_column;
    size_t first_off, last_off; /* last_off: one past the end */
} sp_yyltype;

#define YYLLOC_DEFAULT(Cur, Rhs, N)                                   \
    do {                                                              \
        if (N) {                                                      \
            (Cur).first_line = YYRHSLOC(Rhs, 1).first_line;           \
            (Cur).first_column = YYRHSLOC(Rhs, 1).first_column;       \
            (Cur).first_off = YYRHSLOC(Rhs, 1).first_off;             \
            (Cur).last_line = YYRHSLOC(Rhs, N).last_line;             \
            (Cur).last_column = YYRHSLOC(Rhs, N).last_column;         \
            (Cur).last_off = YYRHSLOC(Rhs, N).last_off;               \
        } else {                                                      \
            (Cur).first_line = (Cur).last_line = YYRHSLOC(Rhs, 0).last_line;        \
            (Cur).first_column = (Cur).last_column = YYRHSLOC(Rhs, 0).last_column;  \
            (Cur).first_off = (Cur).last_off = YYRHSLOC(Rhs, 0).last_off;           \
        }                                                             \
    } while (0)

/* The value of a token: where its text is, and for a number its value. */
typedef struct sp_tokval {
    size_t off, len;
    uint64_t v;
    bool bad;  /* a number the scanner reported as invalid */
    bool none; /* a name that was a syntax error */
} sp_tokval;

typedef struct sp_wspan {
    bool range, blocks;
    sp_ast_num lo, hi;
    sp_loc loc;
} sp_wspan;

typedef struct sp_wdil {
    sp_ast_dil_kind kind;
    sp_ast_num n;
    sp_loc loc;
} sp_wdil;

typedef struct sp_itemlist {
    sp_ast_item *first, *last;
    int n;
} sp_itemlist;

typedef struct sp_hspec {
    bool range;
    sp_ast_num h0, h1;
    sp_loc loc;
} sp_hspec;
}

%code provides {
/* A token the parser has read, for messages ("after 'stride'"). */
typedef struct sp_tokinfo {
    int kind; /* 0: none */
    size_t off, len;
} sp_tokinfo;

/* Where statements go: a pattern's body, a heads group's, or a discarded
 * list while skipping a garbled block. */
typedef struct sp_scope {
    sp_ast_stmts *list;
    struct sp_scope *up;
} sp_scope;

/* All state of one parse; the scanner's `extra`. */
struct sp_pctx {
    const char *src;
    size_t len;
    sp_arena *arena;
    sp_diag *diag;
    sp_ast_file *file;
    sp_ast_pattern *last; /* the file's last pattern, where the next goes */
    sp_ast_pattern *pat;  /* the pattern being parsed, NULL outside one */
    sp_scope *scope;
    bool oom;
    /* scanner position */
    int line, col;
    size_t off;
    /* just after the last token, where "end of file" is reported */
    int end_line, end_col;
    size_t end_off;
    sp_tokinfo la, prev; /* the lookahead and the token before it */
    int stmt_start;      /* the first token of the current statement */
};

/* The flex scanner (grammar/lexer.l). */
int sp_scan(SP_YYSTYPE *lval, sp_yyltype *lloc, yyscan_t scanner);

/* Reports an error at loc, marking the pattern being parsed. */
void sp_pctx_error(sp_pctx *c, sp_loc loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
sp_loc sp_pctx_loc(const sp_pctx *c, const sp_yyltype *l);
}

%code {
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int sp_yylex(SP_YYSTYPE *lval, sp_yyltype *lloc, yyscan_t scanner, sp_pctx *ctx);
static void sp_yyerror(sp_yyltype *lloc, yyscan_t scanner, sp_pctx *ctx, const char *msg);

static sp_yyltype join(const sp_yyltype *a, const sp_yyltype *b);
static sp_ast_num mknum(sp_pctx *c, const sp_tokval *t, const sp_yyltype *l, int sign);
static sp_ast_rule *new_rule(sp_pctx *c, sp_ast_rule_kind k, const sp_yyltype *l);
static sp_ast_item *new_item(sp_pctx *c, sp_ast_item_kind k, const sp_yyltype *l);
static sp_ast_stmt *add_stmt(sp_pctx *c, sp_ast_stmt_kind k, const sp_yyltype *l);
static int push_scope(sp_pctx *c, sp_ast_stmts *list);
static void pop_scope(sp_pctx *c);
static int open_pattern(sp_pctx *c, const sp_tokval *name, const sp_yyltype *l);
static int open_group(sp_pctx *c, const sp_hspec *h, const sp_yyltype *l);

/* Arena exhaustion ends the parse: yyparse reports it through yyerror. */
#define NOMEM() do { ctx->oom = true; YYNOMEM; } while (0)
}

%union {
    sp_tokval tok;
    sp_ast_num num;
    sp_ast_len len;
    bool flag;
    sp_ast_rule *rule;
    sp_ast_item *item;
    sp_itemlist items;
    sp_wspan wspan;
    sp_wdil wdil;
    sp_hspec hspec;
}

%token <tok> NUM "number"
%token <tok> IDENT "identifier"
%token <tok> KW_PATTERN "pattern" KW_CAUSAL "causal" KW_BLOCK "block" KW_BLOCKS "blocks"
%token <tok> KW_HEADS "heads" KW_WINDOW "window" KW_DILATION "dilation" KW_EXP "exp"
%token <tok> KW_STRIDE "stride" KW_SEGMENT "segment" KW_COLUMNS "columns" KW_MOD "mod"
%token <tok> KW_GLOBAL "global" KW_ROWS "rows" KW_COLS "cols" KW_RANDOM "random"
%token <tok> KW_SEED "seed" KW_DENSE "dense" KW_FIRST "first" KW_LAST "last"
%token <tok> LBRACE "{" RBRACE "}" SEMI ";" COMMA "," DOTDOT ".." PLUS "+" MINUS "-"

%nterm <tok> name keyword
%nterm <num> snum
%nterm <len> len
%nterm <flag> unit unit_opt
%nterm <rule> rule
%nterm <item> item
%nterm <items> set
%nterm <wspan> wspan
%nterm <wdil> dilation
%nterm <hspec> hspec

%%

file
    : %empty
    | file pattern
    | file error pattern
    | file error "}"                       { yyerrok; }
    | file error skip_open body rbrace     { pop_scope(ctx); yyerrok; }
    ;

pattern
    : pattern_head body rbrace             { pop_scope(ctx); ctx->pat = NULL; }
    ;

pattern_head
    : "pattern" { yyerrok; } name "{"      { if (open_pattern(ctx, &$3, &@3)) NOMEM(); }
    ;

/* Keywords are names too: the benchmark suite has patterns called `dense`
 * and `causal`. */
name
    : IDENT
    | keyword
    | error                                { memset(&$$, 0, sizeof $$); $$.none = true; }
    ;

keyword
    : "pattern" | "causal" | "block" | "blocks" | "heads" | "window" | "dilation"
    | "exp" | "stride" | "segment" | "columns" | "mod" | "global" | "rows" | "cols"
    | "random" | "seed" | "dense" | "first" | "last"
    ;

/* A `}` closes the body even after an error in its last statement. */
rbrace
    : "}"
    | error "}"                            { yyerrok; }
    ;

/* A `{` after a syntax error opens a block that is parsed (so its `}` is
 * matched) and thrown away. */
skip_open
    : "{"                                  { if (push_scope(ctx, NULL)) NOMEM(); }
    ;

body
    : %empty
    | body stmt
    | body error ";"                       { yyerrok; }
    | body error skip_open body rbrace     { pop_scope(ctx); yyerrok; }
    ;

stmt
    : rule ";"
        {
            sp_ast_stmt *s = add_stmt(ctx, SP_AST_RULE, &@1);
            if (!s)
                NOMEM();
            s->u.rule = *$1;
        }
    | "causal" ";"
        { if (!add_stmt(ctx, SP_AST_CAUSAL, &@1)) NOMEM(); }
    | "block" snum ";"
        {
            sp_yyltype l = join(&@1, &@2);
            sp_ast_stmt *s = add_stmt(ctx, SP_AST_BLOCK, &l);
            if (!s)
                NOMEM();
            s->u.block = $2;
        }
    | heads_head body rbrace               { pop_scope(ctx); }
    ;

/* A group whose `{` is missing still opens, so its rules and its `}`
 * are read as the writer meant them. */
heads_head
    : "heads" hspec "{"
        {
            sp_yyltype l = join(&@1, &@2);
            if (open_group(ctx, &$2, &l))
                NOMEM();
        }
    | "heads" hspec error
        {
            sp_yyltype l = join(&@1, &@2);
            if (open_group(ctx, &$2, &l))
                NOMEM();
        }
    ;

hspec
    : snum                  { $$.range = false; $$.h0 = $$.h1 = $1; $$.loc = sp_pctx_loc(ctx, &@$); }
    | snum ".." snum        { $$.range = true; $$.h0 = $1; $$.h1 = $3; $$.loc = sp_pctx_loc(ctx, &@$); }
    ;

rule
    : "window" wspan dilation
        {
            if (!($$ = new_rule(ctx, SP_AST_WINDOW, &@$)))
                NOMEM();
            $$->u.window.range = $2.range;
            $$->u.window.lo = $2.lo;
            $$->u.window.hi = $2.hi;
            $$->u.window.span_loc = $2.loc;
            $$->u.window.blocks = $2.blocks;
            $$->u.window.dil_kind = $3.kind;
            $$->u.window.dil = $3.n;
            $$->u.window.dil_loc = $3.loc;
        }
    | "stride" len
        {
            if (!($$ = new_rule(ctx, SP_AST_STRIDE, &@$)))
                NOMEM();
            $$->u.stride = $2;
        }
    | "segment" len
        {
            if (!($$ = new_rule(ctx, SP_AST_SEGMENT, &@$)))
                NOMEM();
            $$->u.segment = $2;
        }
    | "columns" snum ".." snum "mod" len
        {
            if (!($$ = new_rule(ctx, SP_AST_COLUMNS, &@$)))
                NOMEM();
            $$->u.columns.a = $2;
            $$->u.columns.b = $4;
            $$->u.columns.s = $6;
            sp_yyltype l = join(&@2, &@4);
            $$->u.columns.range_loc = sp_pctx_loc(ctx, &l);
        }
    | "global" set
        {
            if (!($$ = new_rule(ctx, SP_AST_GLOBAL, &@$)))
                NOMEM();
            $$->u.global.which = SP_AST_SET_BOTH;
            $$->u.global.items = $2.first;
            $$->u.global.nitems = $2.n;
        }
    | "global" "rows" set
        {
            if (!($$ = new_rule(ctx, SP_AST_GLOBAL, &@$)))
                NOMEM();
            $$->u.global.which = SP_AST_SET_ROWS;
            $$->u.global.items = $3.first;
            $$->u.global.nitems = $3.n;
        }
    | "global" "cols" set
        {
            if (!($$ = new_rule(ctx, SP_AST_GLOBAL, &@$)))
                NOMEM();
            $$->u.global.which = SP_AST_SET_COLS;
            $$->u.global.items = $3.first;
            $$->u.global.nitems = $3.n;
        }
    | "random" snum unit "seed" snum
        {
            if (!($$ = new_rule(ctx, SP_AST_RANDOM, &@$)))
                NOMEM();
            $$->u.random.r = $2;
            $$->u.random.seed = $5;
        }
    | "dense"
        {
            if (!($$ = new_rule(ctx, SP_AST_DENSE, &@$)))
                NOMEM();
        }
    ;

wspan
    : snum unit_opt
        {
            $$.range = false;
            $$.lo = $$.hi = $1;
            $$.blocks = $2;
            $$.loc = $1.loc;
        }
    | snum ".." snum unit_opt
        {
            $$.range = true;
            $$.lo = $1;
            $$.hi = $3;
            $$.blocks = $4;
            sp_yyltype l = join(&@1, &@3);
            $$.loc = sp_pctx_loc(ctx, &l);
        }
    ;

dilation
    : %empty                  { memset(&$$, 0, sizeof $$); $$.kind = SP_AST_DIL_NONE; }
    | "dilation" snum         { $$.kind = SP_AST_DIL_NUM; $$.n = $2; $$.loc = sp_pctx_loc(ctx, &@$); }
    | "dilation" "exp"
        {
            memset(&$$, 0, sizeof $$);
            $$.kind = SP_AST_DIL_EXP;
            $$.loc = sp_pctx_loc(ctx, &@$);
        }
    ;

len
    : snum unit_opt           { $$.n = $1; $$.blocks = $2; $$.loc = sp_pctx_loc(ctx, &@$); }
    ;

unit
    : "blocks"                { $$ = true; }
    | "block"                 { $$ = true; }
    ;

unit_opt
    : %empty                  { $$ = false; }
    | unit
    ;

set
    : item                    { $$.first = $$.last = $1; $$.n = 1; }
    | set "," item            { $$ = $1; $$.last->next = $3; $$.last = $3; $$.n++; }
    ;

item
    : snum unit_opt
        {
            if (!($$ = new_item(ctx, SP_AST_ITEM_POS, &@$)))
                NOMEM();
            $$->u.pos.p = $1;
            $$->u.pos.blocks = $2;
        }
    | snum ".." snum unit_opt
        {
            if (!($$ = new_item(ctx, SP_AST_ITEM_RANGE, &@$)))
                NOMEM();
            $$->u.range.a = $1;
            $$->u.range.b = $3;
            $$->u.range.blocks = $4;
        }
    | "first" len
        {
            if (!($$ = new_item(ctx, SP_AST_ITEM_FIRST, &@$)))
                NOMEM();
            $$->u.count = $2;
        }
    | "last" len
        {
            if (!($$ = new_item(ctx, SP_AST_ITEM_LAST, &@$)))
                NOMEM();
            $$->u.count = $2;
        }
    ;

snum
    : NUM                     { $$ = mknum(ctx, &$1, &@$, 0); }
    | "+" NUM                 { $$ = mknum(ctx, &$2, &@$, '+'); }
    | "-" NUM                 { $$ = mknum(ctx, &$2, &@$, '-'); }
    ;

%%

/* ---------------------------------------------------------------- locations */

sp_loc sp_pctx_loc(const sp_pctx *c, const sp_yyltype *l)
{
    sp_loc loc = {l->first_line, l->first_column, l->last_column};
    if (l->last_line != l->first_line) {
        /* Underline to the end of the first line of a multi-line construct. */
        size_t off = l->first_off;
        while (off < c->len && c->src[off] != '\n')
            off++;
        loc.end_col = l->first_column + (int)(off - l->first_off) - 1;
    }
    if (loc.end_col < loc.col)
        loc.end_col = loc.col;
    return loc;
}

/* From the start of a to the end of b. */
static sp_yyltype join(const sp_yyltype *a, const sp_yyltype *b)
{
    sp_yyltype l = *a;
    l.last_line = b->last_line;
    l.last_column = b->last_column;
    l.last_off = b->last_off;
    return l;
}

void sp_pctx_error(sp_pctx *c, sp_loc loc, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->pat)
        c->pat->syntax_error = true;
    sp_diag_error(c->diag, loc, "%s", msg);
}

/* ---------------------------------------------------------------- building */

static sp_ast_num mknum(sp_pctx *c, const sp_tokval *t, const sp_yyltype *l, int sign)
{
    sp_ast_num n;
    memset(&n, 0, sizeof n);
    n.v = t->v;
    n.bad = t->bad;
    n.sign = sign != 0;
    n.neg = sign == '-';
    n.loc = sp_pctx_loc(c, l);
    return n;
}

static sp_ast_rule *new_rule(sp_pctx *c, sp_ast_rule_kind k, const sp_yyltype *l)
{
    sp_ast_rule *r = SP_NEW(c->arena, sp_ast_rule);
    if (r) {
        r->kind = k;
        r->loc = sp_pctx_loc(c, l);
    }
    return r;
}

static sp_ast_item *new_item(sp_pctx *c, sp_ast_item_kind k, const sp_yyltype *l)
{
    sp_ast_item *it = SP_NEW(c->arena, sp_ast_item);
    if (it) {
        it->kind = k;
        it->loc = sp_pctx_loc(c, l);
    }
    return it;
}

static void append_stmt(sp_ast_stmts *list, sp_ast_stmt *s)
{
    if (list->last)
        list->last->next = s;
    else
        list->first = s;
    list->last = s;
    list->n++;
}

/* A new statement at the end of the current scope. */
static sp_ast_stmt *add_stmt(sp_pctx *c, sp_ast_stmt_kind k, const sp_yyltype *l)
{
    sp_ast_stmt *s = SP_NEW(c->arena, sp_ast_stmt);
    if (!s)
        return NULL;
    s->kind = k;
    s->loc = sp_pctx_loc(c, l);
    if (c->scope)
        append_stmt(c->scope->list, s);
    return s;
}

/* list NULL: a fresh list nobody reads (the body of a skipped block). */
static int push_scope(sp_pctx *c, sp_ast_stmts *list)
{
    sp_scope *sc = SP_NEW(c->arena, sp_scope);
    if (!sc)
        return -1;
    if (!list && !(list = SP_NEW(c->arena, sp_ast_stmts)))
        return -1;
    sc->list = list;
    sc->up = c->scope;
    c->scope = sc;
    return 0;
}

static void pop_scope(sp_pctx *c)
{
    if (c->scope)
        c->scope = c->scope->up;
}

static int open_pattern(sp_pctx *c, const sp_tokval *name, const sp_yyltype *l)
{
    sp_ast_pattern *p = SP_NEW(c->arena, sp_ast_pattern);
    if (!p)
        return -1;
    if (name->none) {
        p->syntax_error = true;
    } else if (!(p->name = sp_arena_strndup(c->arena, c->src + name->off, name->len))) {
        return -1;
    }
    p->loc = sp_pctx_loc(c, l);
    if (c->last)
        c->last->next = p;
    else
        c->file->patterns = p;
    c->last = p;
    c->file->npatterns++;
    c->pat = p;
    c->scope = NULL; /* a pattern is never inside another scope */
    return push_scope(c, &p->body);
}

static int open_group(sp_pctx *c, const sp_hspec *h, const sp_yyltype *l)
{
    sp_ast_stmt *s = add_stmt(c, SP_AST_HEADS, l);
    if (!s)
        return -1;
    s->u.heads.range = h->range;
    s->u.heads.h0 = h->h0;
    s->u.heads.h1 = h->h1;
    s->u.heads.range_loc = h->loc;
    return push_scope(c, &s->u.heads.body);
}

/* ---------------------------------------------------------------- tokens */

static bool is_rule_start(int kind)
{
    switch (kind) {
    case KW_WINDOW: case KW_STRIDE: case KW_SEGMENT: case KW_COLUMNS:
    case KW_GLOBAL: case KW_RANDOM: case KW_DENSE:
        return true;
    default:
        return false;
    }
}

/* sp_tokinfo.kind of the end of the file (0 means no token yet). */
enum { TOK_END = -1 };

/* Reads a token and remembers it and the one before, for messages. */
static int sp_yylex(SP_YYSTYPE *lval, sp_yyltype *lloc, yyscan_t scanner, sp_pctx *ctx)
{
    int kind = sp_scan(lval, lloc, scanner);
    if (kind == SP_YYEOF) {
        if (ctx->la.kind != TOK_END) {
            ctx->prev = ctx->la;
            ctx->la.kind = TOK_END;
            ctx->la.off = ctx->end_off;
            ctx->la.len = 0;
        }
        return kind;
    }
    int before = ctx->la.kind;
    if (before == 0 || before == SEMI || before == LBRACE || before == RBRACE)
        ctx->stmt_start = kind;
    ctx->prev = ctx->la;
    ctx->la.kind = kind;
    ctx->la.off = lloc->first_off;
    ctx->la.len = lloc->last_off - lloc->first_off;
    ctx->end_line = lloc->last_line;
    ctx->end_col = lloc->last_column + 1;
    ctx->end_off = lloc->last_off;
    return kind;
}

/* ---------------------------------------------------------------- messages */

enum { SHOW_MAX = 40 };

/* The text of a token as `'text'`, shortened when long. */
static void quote_text(char *buf, size_t cap, const sp_pctx *c, size_t off, size_t len)
{
    if (off > c->len)
        off = c->len;
    if (len > c->len - off)
        len = c->len - off;
    if (len > SHOW_MAX)
        snprintf(buf, cap, "'%.*s...'", (int)SHOW_MAX, c->src + off);
    else
        snprintf(buf, cap, "'%.*s'", (int)len, c->src + off);
}

/* A grammar symbol as the user wrote it: 'window', '..'. (Under
 * parse.error custom, bison keeps token aliases unquoted.) */
static void quote_symbol(char *buf, size_t cap, yysymbol_kind_t sym)
{
    snprintf(buf, cap, "'%s'", yysymbol_name(sym));
}

static bool has_symbol(const yysymbol_kind_t *exp, int n, yysymbol_kind_t sym)
{
    for (int i = 0; i < n; i++)
        if (exp[i] == sym)
            return true;
    return false;
}

static bool is_keyword_symbol(yysymbol_kind_t s)
{
    return s >= YYSYMBOL_KW_PATTERN && s <= YYSYMBOL_KW_LAST;
}

static bool is_rule_symbol(yysymbol_kind_t s)
{
    switch (s) {
    case YYSYMBOL_KW_WINDOW: case YYSYMBOL_KW_STRIDE: case YYSYMBOL_KW_SEGMENT:
    case YYSYMBOL_KW_COLUMNS: case YYSYMBOL_KW_GLOBAL: case YYSYMBOL_KW_RANDOM:
    case YYSYMBOL_KW_DENSE: case YYSYMBOL_KW_CAUSAL: case YYSYMBOL_KW_BLOCK:
    case YYSYMBOL_KW_HEADS:
        return true;
    default:
        return false;
    }
}

/* Optimal string alignment distance (edits and adjacent swaps), ignoring
 * case, capped at 9 for words too long to be a misspelt keyword. */
static int edit_distance(const char *a, size_t na, const char *b)
{
    size_t nb = strlen(b);
    if (na > 16 || nb > 16)
        return 9;
    int d[18][18];
    for (size_t i = 0; i <= na; i++)
        d[i][0] = (int)i;
    for (size_t j = 0; j <= nb; j++)
        d[0][j] = (int)j;
    for (size_t i = 1; i <= na; i++) {
        for (size_t j = 1; j <= nb; j++) {
            int ca = a[i - 1] | 0x20, cb = b[j - 1] | 0x20;
            int best = d[i - 1][j - 1] + (ca != cb);
            if (d[i - 1][j] + 1 < best)
                best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && ca == (b[j - 2] | 0x20) && (a[i - 2] | 0x20) == cb &&
                d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[na][nb];
}

/* The keyword among `cands` closest to the word, or NULL if none is close
 * enough to be what was meant (a third of the keyword's letters). */
static const char *suggest(const char *w, size_t n, const yysymbol_kind_t *cands, int ncands)
{
    const char *best = NULL;
    int bestd = 0;
    for (int i = 0; i < ncands; i++) {
        const char *kw = yysymbol_name(cands[i]);
        int d = edit_distance(w, n, kw);
        int limit = ((int)strlen(kw) + 2) / 3;
        if (d <= limit && (!best || d < bestd)) {
            best = kw;
            bestd = d;
        }
    }
    return best;
}

/* Appends to a message buffer, truncating silently. */
static void addf(char *buf, size_t cap, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void addf(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
    if (*len >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (n > 0)
        *len = *len + (size_t)n < cap ? *len + (size_t)n : cap;
}

/* "a number, 'first' or 'last'": the expected symbols, with the many ways
 * to write a number, a rule or a name each said once. */
static void describe_expected(char *buf, size_t cap, const yysymbol_kind_t *exp, int n)
{
    bool rule_pos = has_symbol(exp, n, YYSYMBOL_KW_WINDOW);
    bool name_pos = has_symbol(exp, n, YYSYMBOL_IDENT);
    bool said_num = false, said_rule = false, said_name = false, eof = false;
    const char *parts[YYNTOKENS];
    char quoted[YYNTOKENS][32];
    int np = 0;
    for (int i = 0; i < n; i++) {
        yysymbol_kind_t s = exp[i];
        if (s == YYSYMBOL_NUM || s == YYSYMBOL_PLUS || s == YYSYMBOL_MINUS) {
            if (!said_num)
                parts[np++] = "a number";
            said_num = true;
        } else if (name_pos && (s == YYSYMBOL_IDENT || is_keyword_symbol(s))) {
            if (!said_name)
                parts[np++] = "a pattern name";
            said_name = true;
        } else if (rule_pos && is_rule_symbol(s)) {
            if (!said_rule)
                parts[np++] = "a rule";
            said_rule = true;
        } else if (s == YYSYMBOL_YYEOF) {
            eof = true; /* said last: "'pattern' or end of file" */
        } else if (s == YYSYMBOL_KW_BLOCK && has_symbol(exp, n, YYSYMBOL_KW_BLOCKS)) {
            continue; /* `block` is the singular of 'blocks' */
        } else {
            quote_symbol(quoted[np], sizeof quoted[np], s);
            parts[np] = quoted[np];
            np++;
        }
    }
    if (eof)
        parts[np++] = "end of file";
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < np; i++)
        addf(buf, cap, &len, "%s%s", i == 0 ? "" : i == np - 1 ? " or " : ", ", parts[i]);
}

/* What `;` is missing after, from the statement's first token. */
static const char *statement_name(int start)
{
    if (is_rule_start(start))
        return " after the rule";
    if (start == KW_CAUSAL)
        return " after 'causal'";
    if (start == KW_BLOCK)
        return " after the block size";
    return "";
}

static int yyreport_syntax_error(const yypcontext_t *yyctx, yyscan_t scanner, sp_pctx *ctx)
{
    (void)scanner;
    yysymbol_kind_t exp[YYNTOKENS];
    int n = yypcontext_expected_tokens(yyctx, exp, YYNTOKENS);
    if (n < 0)
        return n;
    yysymbol_kind_t la = yypcontext_token(yyctx);
    sp_loc loc = sp_pctx_loc(ctx, yypcontext_location(yyctx));
    const sp_tokinfo *t = &ctx->la;

    char found[64];
    if (la == YYSYMBOL_YYEOF)
        snprintf(found, sizeof found, "end of file");
    else
        quote_text(found, sizeof found, ctx, t->off, t->len);

    if (la == YYSYMBOL_IDENT) {
        const char *w = ctx->src + t->off;
        if (has_symbol(exp, n, YYSYMBOL_KW_WINDOW)) {
            static const yysymbol_kind_t rules[] = {
                YYSYMBOL_KW_WINDOW, YYSYMBOL_KW_STRIDE, YYSYMBOL_KW_SEGMENT, YYSYMBOL_KW_COLUMNS,
                YYSYMBOL_KW_GLOBAL, YYSYMBOL_KW_RANDOM, YYSYMBOL_KW_DENSE, YYSYMBOL_KW_CAUSAL,
                YYSYMBOL_KW_BLOCK, YYSYMBOL_KW_HEADS,
            };
            const char *s = suggest(w, t->len, rules, (int)(sizeof rules / sizeof rules[0]));
            if (s)
                sp_pctx_error(ctx, loc, "unknown rule %s; did you mean '%s'?", found, s);
            else
                sp_pctx_error(ctx, loc, "unknown rule %s", found);
            return 0;
        }
        yysymbol_kind_t kws[YYNTOKENS];
        int nk = 0;
        for (int i = 0; i < n; i++)
            if (is_keyword_symbol(exp[i]))
                kws[nk++] = exp[i];
        const char *s = suggest(w, t->len, kws, nk);
        if (s) {
            sp_pctx_error(ctx, loc, "unknown word %s; did you mean '%s'?", found, s);
            return 0;
        }
    }

    if (has_symbol(exp, n, YYSYMBOL_SEMI)) {
        sp_pctx_error(ctx, loc, "expected ';'%s, found %s", statement_name(ctx->stmt_start), found);
        return 0;
    }

    char want[256];
    describe_expected(want, sizeof want, exp, n);
    char after[64] = "";
    const sp_tokinfo *p = &ctx->prev;
    if (p->kind != 0 && p->kind != SEMI && p->kind != LBRACE && p->kind != RBRACE) {
        char q[56];
        quote_text(q, sizeof q, ctx, p->off, p->len);
        snprintf(after, sizeof after, " after %s", q);
    }
    sp_pctx_error(ctx, loc, "expected %s%s, found %s", want, after, found);
    return 0;
}

/* Called by yyparse only when it runs out of memory or stack. */
static void sp_yyerror(sp_yyltype *lloc, yyscan_t scanner, sp_pctx *ctx, const char *msg)
{
    (void)scanner;
    (void)msg;
    if (ctx->oom)
        sp_pctx_error(ctx, sp_pctx_loc(ctx, lloc), "out of memory");
    else
        sp_pctx_error(ctx, sp_pctx_loc(ctx, lloc), "braces are nested too deeply");
}
