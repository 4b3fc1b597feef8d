/* Semantic checks and lowering, AST -> pattern IR (ir.h).
 *
 * Every error is reported with the place of the offending text and checking
 * goes on, so one run lists all of a file's mistakes. Values are checked on
 * the exact 64-bit numbers as written, then clamped to SP_MAX_VALUE for the
 * IR: sequences are shorter than that, so clamping keeps the meaning and
 * makes overflow impossible in every later pass (block units included). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "frontend.h"

#define MAX_HEAD 65535

typedef struct sema {
    sp_arena *a;
    sp_diag *d;
    bool oom;
} sema;

/* One accepted heads group, for overlap checks and the IR's group order. */
typedef struct group_ref {
    int64_t h0, h1;
    const sp_ast_stmt *st;
    sp_group *ir;
} group_ref;

/* What one pattern's walk knows beyond the statement at hand. */
typedef struct pstate {
    const sp_ast_pattern *ast;
    int64_t B;
    const sp_ast_stmt *block;   /* the first `block` */
    const sp_ast_stmt *causal;  /* the first pattern-wide `causal` */
    const sp_ast_rule *random;  /* the first pattern-wide `random` */
    group_ref *groups;          /* accepted groups, sorted by h0 */
    int ngroups, capgroups;
    int nrules;                 /* rules written anywhere in the pattern */
} pstate;

/* ---------------------------------------------------------------- values */

static int64_t clampu(uint64_t v) { return v > (uint64_t)SP_MAX_VALUE ? SP_MAX_VALUE : (int64_t)v; }

/* a * b for values in 0..SP_MAX_VALUE, saturating at SP_MAX_VALUE. */
static int64_t mul_sat(int64_t a, int64_t b)
{
    if (a == 0 || b == 0)
        return 0;
    if (a > SP_MAX_VALUE / b)
        return SP_MAX_VALUE;
    return a * b > SP_MAX_VALUE ? SP_MAX_VALUE : a * b;
}

static int64_t signed_value(const sp_ast_num *n)
{
    return n->neg ? -clampu(n->v) : clampu(n->v);
}

static bool is_negative(const sp_ast_num *n) { return n->neg && n->v > 0; }

/* a < b on numbers as written (sign and full magnitude). */
static bool num_less(const sp_ast_num *a, const sp_ast_num *b)
{
    bool an = is_negative(a), bn = is_negative(b);
    if (an != bn)
        return an;
    return an ? a->v > b->v : a->v < b->v;
}

/* A number as written, for messages: "-5", "+0", "12". */
static const char *num_text(char *buf, size_t cap, const sp_ast_num *n)
{
    snprintf(buf, cap, "%s%" PRIu64, n->neg ? "-" : n->sign ? "+" : "", n->v);
    return buf;
}

/* ---------------------------------------------------------------- checks */

/* A count or size: at least 1. Returns 0, or -1 after reporting. */
static int need_positive(sema *s, const sp_ast_num *n, const char *what)
{
    if (n->bad)
        return -1; /* the scanner has said what is wrong with it */
    if (n->v == 0 || n->neg) {
        sp_diag_error(s->d, n->loc, "%s must be at least 1", what);
        return -1;
    }
    return 0;
}

/* A position or index: not negative. */
static int need_nonnegative(sema *s, const sp_ast_num *n, const char *what)
{
    if (n->bad)
        return -1;
    if (is_negative(n)) {
        sp_diag_error(s->d, n->loc, "%s must not be negative", what);
        return -1;
    }
    return 0;
}

/* A length of at least 1, in tokens (block units multiplied by B). */
static int length(sema *s, const pstate *ps, const sp_ast_len *l, const char *what, int64_t *out)
{
    if (need_positive(s, &l->n, what))
        return -1;
    int64_t v = clampu(l->n.v);
    *out = l->blocks ? mul_sat(v, ps->B) : v;
    return 0;
}

static int empty_range(sema *s, sp_loc loc, const char *what, const sp_ast_num *a,
                       const sp_ast_num *b)
{
    char ta[32], tb[32];
    sp_diag_error(s->d, loc, "%s %s..%s is empty (its start is after its end)", what,
                  num_text(ta, sizeof ta, a), num_text(tb, sizeof tb, b));
    return -1;
}

/* ---------------------------------------------------------------- rules */

static int lower_window(sema *s, const sp_ast_rule *r, sp_rule *out)
{
    const struct sp_ast_window *w = &r->u.window;
    int rc = 0;
    if (!w->range && w->hi.sign) {
        char t[32];
        snprintf(t, sizeof t, "%" PRIu64, w->hi.v);
        sp_diag_error(s->d, w->hi.loc,
                      "a single window width takes no sign: write 'window %s' for both sides, "
                      "or a range such as '-%s..+0'", t, t);
        rc = -1;
    }
    if (w->range && !w->lo.bad && !w->hi.bad && num_less(&w->hi, &w->lo))
        rc = empty_range(s, w->span_loc, "window range", &w->lo, &w->hi);
    if (w->dil_kind != SP_AST_DIL_NONE && w->blocks) {
        sp_diag_error(s->d, w->dil_loc, "'dilation' cannot be used with a window in blocks");
        rc = -1;
    } else if (w->dil_kind == SP_AST_DIL_EXP && w->range) {
        sp_diag_error(s->d, w->dil_loc,
                      "'dilation exp' needs a single width, as in 'window 256 dilation exp'");
        rc = -1;
    } else if (w->dil_kind == SP_AST_DIL_NUM && need_positive(s, &w->dil, "dilation")) {
        rc = -1;
    }
    if (rc)
        return rc;

    int64_t lo = w->range ? signed_value(&w->lo) : -clampu(w->hi.v);
    int64_t hi = w->range ? signed_value(&w->hi) : clampu(w->hi.v);
    if (w->blocks) {
        out->kind = SP_R_BLOCK_WINDOW;
        out->u.bwindow.lo = lo;
        out->u.bwindow.hi = hi;
    } else if (w->dil_kind == SP_AST_DIL_EXP) {
        out->kind = SP_R_WINDOW_EXP;
        out->u.wexp.w = hi;
    } else {
        out->kind = SP_R_WINDOW;
        out->u.window.lo = lo;
        out->u.window.hi = hi;
        out->u.window.dil = w->dil_kind == SP_AST_DIL_NUM ? clampu(w->dil.v) : 1;
    }
    return 0;
}

/* columns a..b mod S: a <= b < S, all checked on the exact values. */
static int lower_columns(sema *s, const pstate *ps, const sp_ast_rule *r, sp_rule *out)
{
    const struct sp_ast_columns *c = &r->u.columns;
    int rc = 0;
    if (need_nonnegative(s, &c->a, "column") | need_nonnegative(s, &c->b, "column"))
        rc = -1;
    if (need_positive(s, &c->s.n, "the period after 'mod'"))
        rc = -1;
    if (rc)
        return rc;
    if (c->b.v < c->a.v)
        return empty_range(s, c->range_loc, "column range", &c->a, &c->b);

    /* The period in tokens, exactly; `wide` when it exceeds 64 bits. */
    uint64_t S = c->s.n.v;
    bool wide = false;
    if (c->s.blocks) {
        if (S > UINT64_MAX / (uint64_t)ps->B)
            wide = true;
        else
            S *= (uint64_t)ps->B;
    }
    if (!wide && c->b.v >= S) {
        char ta[32], tb[32];
        sp_diag_error(s->d, c->range_loc,
                      "column range %s..%s must lie below the period %" PRIu64,
                      num_text(ta, sizeof ta, &c->a), num_text(tb, sizeof tb, &c->b), S);
        return -1;
    }
    out->kind = SP_R_COLUMNS;
    if (wide || S > (uint64_t)SP_MAX_VALUE) {
        /* For j < 2^40, j mod S = j, so the period 2^40 and the range cut
         * below it select the same keys. */
        out->u.columns.s = SP_MAX_VALUE;
        out->u.columns.a = clampu(c->a.v) < SP_MAX_VALUE ? clampu(c->a.v) : SP_MAX_VALUE - 1;
        out->u.columns.b = clampu(c->b.v) < SP_MAX_VALUE ? clampu(c->b.v) : SP_MAX_VALUE - 1;
    } else {
        out->u.columns.s = (int64_t)S;
        out->u.columns.a = (int64_t)c->a.v;
        out->u.columns.b = (int64_t)c->b.v;
    }
    return 0;
}

/* Block p in tokens: p*B .. p*B+B-1, saturating. */
static void block_span(int64_t p, int64_t B, int64_t *lo, int64_t *hi)
{
    *lo = mul_sat(p, B);
    *hi = *lo >= SP_MAX_VALUE ? SP_MAX_VALUE : *lo + B - 1;
    if (*hi > SP_MAX_VALUE)
        *hi = SP_MAX_VALUE;
}

static int lower_item(sema *s, const pstate *ps, const sp_ast_item *it, sp_setitem *out)
{
    memset(out, 0, sizeof *out);
    switch (it->kind) {
    case SP_AST_ITEM_POS: {
        if (need_nonnegative(s, &it->u.pos.p, "position"))
            return -1;
        int64_t p = clampu(it->u.pos.p.v);
        if (it->u.pos.blocks)
            block_span(p, ps->B, &out->lo, &out->hi);
        else
            out->lo = out->hi = p;
        return 0;
    }
    case SP_AST_ITEM_RANGE: {
        const sp_ast_num *a = &it->u.range.a, *b = &it->u.range.b;
        if (need_nonnegative(s, a, "position") | need_nonnegative(s, b, "position"))
            return -1;
        if (b->v < a->v)
            return empty_range(s, it->loc, "range", a, b);
        if (it->u.range.blocks) {
            int64_t unused;
            block_span(clampu(a->v), ps->B, &out->lo, &unused);
            block_span(clampu(b->v), ps->B, &unused, &out->hi);
        } else {
            out->lo = clampu(a->v);
            out->hi = clampu(b->v);
        }
        return 0;
    }
    case SP_AST_ITEM_FIRST: {
        int64_t n;
        if (length(s, ps, &it->u.count, "the count after 'first'", &n))
            return -1;
        out->lo = 0;
        out->hi = n - 1;
        return 0;
    }
    case SP_AST_ITEM_LAST: {
        int64_t n;
        if (length(s, ps, &it->u.count, "the count after 'last'", &n))
            return -1;
        out->lo = n;
        out->lo_end = true;
        out->hi = 1;
        out->hi_end = true;
        return 0;
    }
    }
    return -1;
}

static int lower_set(sema *s, const pstate *ps, const sp_ast_rule *r, sp_rule *out)
{
    static const sp_rule_kind kinds[] = {
        [SP_AST_SET_BOTH] = SP_R_GLOBAL,
        [SP_AST_SET_ROWS] = SP_R_GLOBAL_ROWS,
        [SP_AST_SET_COLS] = SP_R_GLOBAL_COLS,
    };
    out->kind = kinds[r->u.global.which];
    sp_setitem *items = SP_NEWN(s->a, sp_setitem, r->u.global.nitems);
    if (!items) {
        s->oom = true;
        return -1;
    }
    int rc = 0, n = 0;
    for (const sp_ast_item *it = r->u.global.items; it; it = it->next)
        if (lower_item(s, ps, it, &items[n++]))
            rc = -1;
    out->u.set.items = items;
    out->u.set.n = n;
    return rc;
}

/* One rule to IR. Returns 0, or -1 after reporting every error in it. */
static int lower_rule(sema *s, const pstate *ps, const sp_ast_rule *r, sp_rule *out)
{
    memset(out, 0, sizeof *out);
    out->loc = r->loc;
    switch (r->kind) {
    case SP_AST_WINDOW:
        return lower_window(s, r, out);
    case SP_AST_STRIDE:
        out->kind = SP_R_STRIDE;
        return length(s, ps, &r->u.stride, "stride", &out->u.stride.s);
    case SP_AST_SEGMENT:
        out->kind = SP_R_SEGMENT;
        return length(s, ps, &r->u.segment, "segment length", &out->u.segment.s);
    case SP_AST_COLUMNS:
        return lower_columns(s, ps, r, out);
    case SP_AST_GLOBAL:
        return lower_set(s, ps, r, out);
    case SP_AST_RANDOM: {
        out->kind = SP_R_RANDOM;
        int rc = need_positive(s, &r->u.random.r, "random block count");
        if (need_nonnegative(s, &r->u.random.seed, "seed"))
            rc = -1;
        out->u.random.r = clampu(r->u.random.r.v);
        out->u.random.seed = r->u.random.seed.v;
        return rc;
    }
    case SP_AST_DENSE:
        out->kind = SP_R_DENSE;
        return 0;
    }
    return -1;
}

/* ---------------------------------------------------------------- scopes */

/* The rules and `causal` of one scope (the pattern, or one heads group).
 * `outer_random` is a `random` that already applies to these heads. */
typedef struct scope {
    sp_rule *rules;
    int nrules;
    bool causal;
    const sp_ast_stmt *causal_st;
    const sp_ast_rule *random;
    const char *heads; /* "every head" or "heads 0..3", for messages */
} scope;

static int count_rules(const sp_ast_stmts *body)
{
    int n = 0;
    for (const sp_ast_stmt *st = body->first; st; st = st->next)
        n += st->kind == SP_AST_RULE;
    return n;
}

static int scope_rule(sema *s, pstate *ps, scope *sc, const sp_ast_rule *r)
{
    int rc = 0;
    if (r->kind == SP_AST_RANDOM) {
        if (sc->random && sc->random != r) {
            sp_diag_error(s->d, r->loc, "more than one 'random' rule for %s (the other is on line %d)",
                          sc->heads, sc->random->loc.line);
            rc = -1;
        } else {
            sc->random = r;
        }
    }
    if (lower_rule(s, ps, r, &sc->rules[sc->nrules++]))
        rc = -1;
    ps->nrules++;
    return rc;
}

static int scope_causal(sema *s, scope *sc, const sp_ast_stmt *st)
{
    if (sc->causal_st) {
        sp_diag_error(s->d, st->loc, "duplicate 'causal' (already given on line %d)",
                      sc->causal_st->loc.line);
        return -1;
    }
    sc->causal_st = st;
    sc->causal = true;
    return 0;
}

static int alloc_rules(sema *s, scope *sc, const sp_ast_stmts *body)
{
    int n = count_rules(body);
    sc->rules = n ? SP_NEWN(s->a, sp_rule, n) : NULL;
    if (n && !sc->rules) {
        s->oom = true;
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- groups */

static const char *heads_text(char *buf, size_t cap, int64_t h0, int64_t h1)
{
    if (h0 == h1)
        snprintf(buf, cap, "heads %" PRId64, h0);
    else
        snprintf(buf, cap, "heads %" PRId64 "..%" PRId64, h0, h1);
    return buf;
}

/* Checks the head range of a group; 0 with h0..h1 set, or -1. */
static int head_range(sema *s, const sp_ast_stmt *st, int64_t *h0, int64_t *h1)
{
    const sp_ast_num *a = &st->u.heads.h0, *b = &st->u.heads.h1;
    int rc = 0;
    const sp_ast_num *ends[2] = {a, st->u.heads.range ? b : NULL};
    for (int i = 0; i < 2; i++) {
        if (!ends[i])
            continue;
        if (need_nonnegative(s, ends[i], "head index")) {
            rc = -1;
        } else if (ends[i]->v > MAX_HEAD) {
            sp_diag_error(s->d, ends[i]->loc, "head index %" PRIu64 " is above %d", ends[i]->v,
                          MAX_HEAD);
            rc = -1;
        }
    }
    if (rc)
        return rc;
    if (b->v < a->v)
        return empty_range(s, st->u.heads.range_loc, "head range", a, b);
    *h0 = (int64_t)a->v;
    *h1 = (int64_t)b->v;
    return 0;
}

/* Index of the first accepted group whose h1 >= h (groups are disjoint and
 * sorted, so their h1 ascend too). */
static int first_reaching(const pstate *ps, int64_t h)
{
    int lo = 0, hi = ps->ngroups;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (ps->groups[mid].h1 < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Accepts h0..h1 unless it overlaps an earlier group. */
static int add_group(sema *s, pstate *ps, const sp_ast_stmt *st, int64_t h0, int64_t h1, int *at)
{
    int k = first_reaching(ps, h0);
    if (k < ps->ngroups && ps->groups[k].h0 <= h1) {
        char mine[48], other[48];
        const group_ref *g = &ps->groups[k];
        sp_diag_error(s->d, st->loc, "%s overlap %s (line %d)", heads_text(mine, sizeof mine, h0, h1),
                      heads_text(other, sizeof other, g->h0, g->h1), g->st->loc.line);
        return -1;
    }
    if (ps->ngroups == ps->capgroups) {
        int cap = ps->capgroups ? 2 * ps->capgroups : 8;
        group_ref *g = sp_arena_grow(s->a, ps->groups, sizeof *g * (size_t)ps->ngroups,
                                     sizeof *g * (size_t)cap);
        if (!g) {
            s->oom = true;
            return -1;
        }
        ps->groups = g;
        ps->capgroups = cap;
    }
    memmove(&ps->groups[k + 1], &ps->groups[k], sizeof ps->groups[0] * (size_t)(ps->ngroups - k));
    ps->groups[k] = (group_ref){h0, h1, st, NULL};
    ps->ngroups++;
    *at = k;
    return 0;
}

/* A heads group: its range, then its statements as their own scope. */
static int lower_group(sema *s, pstate *ps, const sp_ast_stmt *st)
{
    int64_t h0 = 0, h1 = 0;
    int rc = 0, at = -1;
    bool valid = head_range(s, st, &h0, &h1) == 0;
    if (!valid || add_group(s, ps, st, h0, h1, &at))
        rc = -1;

    char heads[80], t0[32], t1[32];
    snprintf(heads, sizeof heads, "heads %s%s%s", num_text(t0, sizeof t0, &st->u.heads.h0),
             st->u.heads.range ? ".." : "", st->u.heads.range ? num_text(t1, sizeof t1, &st->u.heads.h1) : "");
    scope sc = {.random = ps->random, .heads = heads};
    if (alloc_rules(s, &sc, &st->u.heads.body))
        return -1;
    for (const sp_ast_stmt *in = st->u.heads.body.first; in; in = in->next) {
        switch (in->kind) {
        case SP_AST_RULE:
            rc |= scope_rule(s, ps, &sc, &in->u.rule);
            break;
        case SP_AST_CAUSAL:
            rc |= scope_causal(s, &sc, in);
            break;
        case SP_AST_BLOCK:
            sp_diag_error(s->d, in->loc,
                          "'block' cannot be inside a heads group: the block size is the whole pattern's");
            rc = -1;
            break;
        case SP_AST_HEADS:
            sp_diag_error(s->d, in->loc, "heads groups cannot be nested");
            ps->nrules++; /* whatever it holds, "no rules" would be noise */
            rc = -1;
            break;
        }
    }
    if (at < 0)
        return -1;
    sp_group *g = SP_NEW(s->a, sp_group);
    if (!g) {
        s->oom = true;
        return -1;
    }
    g->h0 = h0;
    g->h1 = h1;
    g->loc = st->loc;
    g->causal = sc.causal;
    g->rules = sc.rules;
    g->nrules = sc.nrules;
    ps->groups[at].ir = g;
    return rc;
}

/* ---------------------------------------------------------------- patterns */

/* The block size, read before the walk: block units convert with the final
 * B wherever `block` is written. Errors are reported in text order later. */
static void find_block(pstate *ps)
{
    ps->B = 64;
    for (const sp_ast_stmt *st = ps->ast->body.first; st; st = st->next) {
        if (st->kind == SP_AST_BLOCK) {
            ps->block = st;
            const sp_ast_num *n = &st->u.block;
            if (!n->bad && !n->neg && n->v > 0)
                ps->B = clampu(n->v);
            return;
        }
    }
}

static const sp_ast_rule *find_random(const sp_ast_pattern *p)
{
    for (const sp_ast_stmt *st = p->body.first; st; st = st->next)
        if (st->kind == SP_AST_RULE && st->u.rule.kind == SP_AST_RANDOM)
            return &st->u.rule;
    return NULL;
}

static int block_stmt(sema *s, const pstate *ps, const sp_ast_stmt *st)
{
    if (st != ps->block) {
        sp_diag_error(s->d, st->loc, "duplicate 'block' (the block size is already set on line %d)",
                      ps->block->loc.line);
        return -1;
    }
    return need_positive(s, &st->u.block, "block size");
}

static int finish_groups(sema *s, const pstate *ps, sp_pattern *out)
{
    out->ngroups = ps->ngroups;
    if (!ps->ngroups)
        return 0;
    out->groups = SP_NEWN(s->a, sp_group, ps->ngroups);
    if (!out->groups) {
        s->oom = true;
        return -1;
    }
    for (int i = 0; i < ps->ngroups; i++) {
        if (!ps->groups[i].ir)
            return -1; /* its lowering failed and was reported */
        out->groups[i] = *ps->groups[i].ir;
    }
    out->nheads = ps->groups[ps->ngroups - 1].h1 + 1;
    return 0;
}

static int lower_pattern(sema *s, const sp_ast_pattern *p, sp_pattern *out)
{
    pstate ps = {.ast = p};
    find_block(&ps);
    ps.random = find_random(p);
    scope sc = {.random = ps.random, .heads = "every head"};
    if (alloc_rules(s, &sc, &p->body))
        return -1;

    int rc = 0;
    for (const sp_ast_stmt *st = p->body.first; st; st = st->next) {
        switch (st->kind) {
        case SP_AST_RULE:
            rc |= scope_rule(s, &ps, &sc, &st->u.rule);
            break;
        case SP_AST_CAUSAL:
            rc |= scope_causal(s, &sc, st);
            break;
        case SP_AST_BLOCK:
            rc |= block_stmt(s, &ps, st);
            break;
        case SP_AST_HEADS:
            rc |= lower_group(s, &ps, st);
            break;
        }
    }
    /* After a syntax error the rules may just have been lost. */
    if (ps.nrules == 0 && !p->syntax_error && p->name) {
        sp_diag_error(s->d, p->loc, "pattern '%s' has no rules", p->name);
        rc = -1;
    }
    /* The parse reported it; a half-read pattern never becomes IR. */
    if (p->syntax_error || !p->name)
        rc = -1;
    out->name = p->name;
    out->loc = p->loc;
    out->block = ps.B;
    out->causal = sc.causal;
    out->rules = sc.rules;
    out->nrules = sc.nrules;
    if (rc == 0 && finish_groups(s, &ps, out))
        rc = -1;
    return rc;
}

/* ---------------------------------------------------------------- names */

static uint64_t hash_name(const char *n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *n; n++)
        h = (h ^ (unsigned char)*n) * 0x100000001b3ull;
    return h;
}

/* Pattern names seen so far: an open-addressing table in the arena. */
typedef struct names {
    const sp_ast_pattern **tab;
    size_t cap;
} names;

static int names_init(sema *s, names *nm, int npatterns)
{
    nm->cap = 16;
    while (nm->cap < 2 * (size_t)npatterns)
        nm->cap *= 2;
    nm->tab = SP_NEWN(s->a, const sp_ast_pattern *, nm->cap);
    if (!nm->tab)
        s->oom = true;
    return nm->tab ? 0 : -1;
}

/* Reports a pattern whose name an earlier pattern already has. */
static int check_name(sema *s, names *nm, const sp_ast_pattern *p)
{
    if (!p->name)
        return 0;
    size_t i = (size_t)hash_name(p->name) & (nm->cap - 1);
    while (nm->tab[i] && strcmp(nm->tab[i]->name, p->name) != 0)
        i = (i + 1) & (nm->cap - 1);
    if (nm->tab[i]) {
        sp_diag_error(s->d, p->loc, "duplicate pattern '%s' (first defined on line %d)", p->name,
                      nm->tab[i]->loc.line);
        return -1;
    }
    nm->tab[i] = p;
    return 0;
}

/* ---------------------------------------------------------------- entry */

int sp_sema(const sp_ast_file *ast, sp_arena *a, sp_diag *d, sp_program **out)
{
    sema s = {a, d, false};
    *out = NULL;
    sp_program *prog = SP_NEW(a, sp_program);
    sp_pattern *pats = ast->npatterns ? SP_NEWN(a, sp_pattern, ast->npatterns) : NULL;
    if (!prog || (ast->npatterns && !pats)) {
        sp_diag_error(d, (sp_loc){0, 0, 0}, "out of memory");
        return -1;
    }
    names nm;
    if (names_init(&s, &nm, ast->npatterns)) {
        sp_diag_error(d, (sp_loc){0, 0, 0}, "out of memory");
        return -1;
    }
    int rc = 0, n = 0;
    for (const sp_ast_pattern *p = ast->patterns; p && n < ast->npatterns; p = p->next) {
        rc |= check_name(&s, &nm, p);
        rc |= lower_pattern(&s, p, &pats[n++]);
    }
    if (s.oom) {
        sp_diag_error(d, (sp_loc){0, 0, 0}, "out of memory");
        rc = -1;
    }
    if (rc)
        return -1;
    prog->patterns = pats;
    prog->npatterns = n;
    *out = prog;
    return 0;
}
