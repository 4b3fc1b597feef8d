/* Random inputs for the front end, for a bounded time (SPAT_FUZZ_SECONDS,
 * default 3): valid pattern texts are mutated (bit flips, inserted and
 * deleted bytes, spliced tokens, random bytes, truncation, crossover) by a
 * fixed-seeded generator (SPAT_FUZZ_SEED to change it). For every input the
 * front end must either accept it with an IR that keeps the invariants of
 * ir.h, or reject it with well-formed diagnostics: every error a
 * `file:line:col: error:` line inside the text, then the source line and a
 * caret under the column. A failure prints the seed, iteration and input. */
#include <check.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "frontend.h"

#define FILE_NAME "fuzz.spat"
#define MAX_INPUT 4096

/* ---------------------------------------------------------------- generator */

typedef struct rng {
    uint64_t s;
} rng;

/* xorshift64*: small, fast, and the same sequence on every machine. */
static uint64_t rng_next(rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545f4914f6cdd1dull;
}

static size_t rng_below(rng *r, size_t n) { return n ? (size_t)(rng_next(r) % n) : 0; }

/* ---------------------------------------------------------------- corpus */

static const char *const seeds[] = {
    "pattern dense { dense; }\npattern causal { dense; causal; }\n",
    "pattern window256 { window 256; }\n",
    "pattern causal_window1024 { causal; window -1023..+0; }\n",
    "pattern longformer { window 256; global 0..15; }\n",
    "pattern bigbird { block 64; window 1 blocks; global first 2 blocks; random 3 blocks seed 1234; }\n",
    "pattern dilated4 { window 256 dilation 4; }\n",
    "pattern strided128 { causal; window -127..+0; stride 128; }\n",
    "pattern fixed128 { causal; segment 128; columns 112..127 mod 128; }\n",
    "# every form\n"
    "pattern mix {\n"
    "  window 8 dilation exp; window -2..+0 blocks; window 0..+5; stride 2 blocks;\n"
    "  global rows 0, 5..7, 3 blocks, 1..2 blocks, first 10, last 16, last 1 block;\n"
    "  global cols first 1 block; random 1 block seed 0xFFFFFFFFFFFFFFFF;\n"
    "  heads 4..7 { window 3; causal; }\n"
    "  heads 0 { dense; }\n"
    "  block 32;\n"
    "  columns 0..0 mod 1 blocks;\n"
    "}\n",
    "pattern h {\n\twindow 4;\n\theads 0..3 { window 16 dilation 2; random 1 blocks seed 9; }\n"
    "\theads 8 { segment 4 blocks; }\r\n}\r\n",
};

typedef struct piece {
    const char *s;
    size_t n;
} piece;

#define P(lit) {lit, sizeof lit - 1}
static const piece tokens[] = {
    P("pattern"), P("causal"), P("block"), P("blocks"), P("heads"), P("window"), P("dilation"),
    P("exp"), P("stride"), P("segment"), P("columns"), P("mod"), P("global"), P("rows"),
    P("cols"), P("random"), P("seed"), P("dense"), P("first"), P("last"), P("{"), P("}"),
    P(";"), P(","), P(".."), P("+"), P("-"), P("0"), P("1"), P("64"), P("65535"), P("65536"),
    P("0x"), P("0xFFFFFFFFFFFFFFFF"), P("18446744073709551615"), P("18446744073709551616"),
    P("1099511627776"), P("1099511627777"), P("99999999999999999999999"), P("1.5"), P("12ab"),
    P("foo"), P("windw"), P("Dense"), P("#"), P("# comment\n"), P("\n"), P("\t"), P(" "),
    P("\r\n"), P("@"), P("\xc3\xa9"), P("\xff"), P("\0"), P("heads 0..3 {"), P("window 5;"),
    P("pattern x {"), P("{{{{"), P("}}}}"),
};

/* Numbers and statements that keep a text parseable, so that sema and the
 * IR see many valid but extreme inputs, not only syntax errors. */
static const piece numbers[] = {
    P("0"), P("1"), P("2"), P("3"), P("7"), P("64"), P("65535"), P("65536"), P("-1"), P("+0"),
    P("-5"), P("1099511627775"), P("1099511627776"), P("1099511627777"),
    P("18446744073709551615"), P("0xFFFFFFFFFFFFFFFF"), P("0x10"), P("4611686018427387904"),
};
static const piece statements[] = {
    P("window 5;"), P("window -3..+2;"), P("window 1 blocks;"), P("window 2 dilation 3;"),
    P("window 9 dilation exp;"), P("stride 3;"), P("segment 2 blocks;"), P("columns 1..2 mod 4;"),
    P("global 0, 3..4, first 2, last 1 blocks;"), P("global rows 5;"), P("global cols last 2;"),
    P("random 2 blocks seed 7;"), P("dense;"), P("causal;"), P("block 16;"), P("block 0;"),
    P("heads 0..3 { dense; }"), P("heads 2 { causal; window 1; }"), P("heads 70000 { dense; }"),
};
#undef P

/* ---------------------------------------------------------------- mutation */

typedef struct buf {
    char b[MAX_INPUT];
    size_t n;
} buf;

static void insert(buf *x, size_t at, const char *s, size_t n)
{
    if (n > MAX_INPUT - x->n)
        n = MAX_INPUT - x->n;
    memmove(x->b + at + n, x->b + at, x->n - at);
    memcpy(x->b + at, s, n);
    x->n += n;
}

static void erase(buf *x, size_t at, size_t n)
{
    if (n > x->n - at)
        n = x->n - at;
    memmove(x->b + at, x->b + at + n, x->n - at - n);
    x->n -= n;
}

/* A random place just after `;` or `{`, or the end. */
static size_t statement_boundary(rng *r, const buf *x)
{
    size_t start = rng_below(r, x->n + 1);
    for (size_t i = start; i < x->n; i++)
        if (x->b[i] == ';' || x->b[i] == '{')
            return i + 1;
    return x->n;
}

static void replace_number(rng *r, buf *x)
{
    size_t i = rng_below(r, x->n + 1);
    while (i < x->n && !(x->b[i] >= '0' && x->b[i] <= '9'))
        i++;
    if (i >= x->n)
        return;
    size_t j = i;
    while (j < x->n && ((x->b[j] >= '0' && x->b[j] <= '9') || x->b[j] == 'x' ||
                        (x->b[j] >= 'A' && x->b[j] <= 'F')))
        j++;
    if (i > 0 && (x->b[i - 1] == '-' || x->b[i - 1] == '+'))
        i--;
    erase(x, i, j - i);
    const piece *n = &numbers[rng_below(r, sizeof numbers / sizeof numbers[0])];
    insert(x, i, n->s, n->n);
}

static void mutate_once(rng *r, buf *x)
{
    size_t at = rng_below(r, x->n + 1);
    switch (rng_below(r, 12)) {
    case 9:
    case 10:
        replace_number(r, x);
        break;
    case 11: {
        const piece *st = &statements[rng_below(r, sizeof statements / sizeof statements[0])];
        insert(x, statement_boundary(r, x), st->s, st->n);
        break;
    }
    case 0: /* flip a bit */
        if (x->n)
            x->b[rng_below(r, x->n)] ^= (char)(1u << rng_below(r, 8));
        break;
    case 1: { /* insert a byte */
        char c = (char)rng_next(r);
        insert(x, at, &c, 1);
        break;
    }
    case 2: /* delete a few bytes */
        erase(x, at, 1 + rng_below(r, 8));
        break;
    case 3: { /* insert a token */
        const piece *t = &tokens[rng_below(r, sizeof tokens / sizeof tokens[0])];
        insert(x, at, t->s, t->n);
        break;
    }
    case 4: { /* replace a few bytes by a token */
        const piece *t = &tokens[rng_below(r, sizeof tokens / sizeof tokens[0])];
        erase(x, at, 1 + rng_below(r, 6));
        insert(x, at, t->s, t->n);
        break;
    }
    case 5: { /* random bytes */
        char junk[16];
        size_t n = 1 + rng_below(r, sizeof junk);
        for (size_t i = 0; i < n; i++)
            junk[i] = (char)rng_next(r);
        insert(x, at, junk, n);
        break;
    }
    case 6: /* truncate */
        x->n = at;
        break;
    case 7: { /* duplicate a chunk of itself */
        if (!x->n)
            break;
        size_t from = rng_below(r, x->n), n = 1 + rng_below(r, 40);
        if (n > x->n - from)
            n = x->n - from;
        char tmp[40];
        memcpy(tmp, x->b + from, n);
        insert(x, at, tmp, n);
        break;
    }
    case 8: { /* splice in a piece of another seed */
        const char *o = seeds[rng_below(r, sizeof seeds / sizeof seeds[0])];
        size_t on = strlen(o), from = rng_below(r, on), n = 1 + rng_below(r, 60);
        if (n > on - from)
            n = on - from;
        insert(x, at, o + from, n);
        break;
    }
    }
}

static void make_input(rng *r, buf *x)
{
    const char *s = seeds[rng_below(r, sizeof seeds / sizeof seeds[0])];
    x->n = strlen(s);
    memcpy(x->b, s, x->n);
    /* Mostly one or two mutations: a text stays close to valid. */
    size_t rounds = 1;
    while (rounds < 8 && rng_below(r, 2))
        rounds++;
    for (size_t i = 0; i < rounds; i++)
        mutate_once(r, x);
}

/* ---------------------------------------------------------------- checks */

/* Line `line` (1-based) of the source: start and length without the
 * newline (and without a CR before it, as the diagnostics print it). */
static int source_line(const char *src, size_t len, long line, const char **start, size_t *n)
{
    const char *p = src, *end = src + len;
    for (long l = 1; l < line; l++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            return -1;
        p = nl + 1;
    }
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    *start = p;
    *n = (size_t)((nl ? nl : end) - p);
    if (*n && p[*n - 1] == '\r')
        (*n)--;
    return 0;
}

/* Checks rendered diagnostics against the source; NULL when well formed,
 * else what is wrong (in why). */
static const char *check_diag(const char *src, size_t len, const char *text, int nerrors, char *why,
                              size_t cap)
{
    const char *file = FILE_NAME ":";
    size_t flen = strlen(file);
    if (nerrors <= 0)
        return snprintf(why, cap, "nerrors is %d", nerrors), why;
    if (strncmp(text, file, flen) != 0)
        return snprintf(why, cap, "the text does not start with the file name"), why;
    int headers = 0;
    const char *p = text;
    while (*p) {
        const char *eol = strchr(p, '\n');
        if (!eol)
            return snprintf(why, cap, "the text does not end with a newline"), why;
        if (strncmp(p, file, flen) != 0)
            return snprintf(why, cap, "line %.*s is not an error header", (int)(eol - p), p), why;
        headers++;
        long line, col;
        int used = 0;
        if (sscanf(p + flen, "%ld:%ld: error: %n", &line, &col, &used) != 2 || used == 0 ||
            p + flen + used > eol || p[flen + (size_t)used - 1] != ' ')
            return snprintf(why, cap, "bad error header %.*s", (int)(eol - p), p), why;
        if (p + flen + used == eol)
            return snprintf(why, cap, "error without a message"), why;
        const char *sl;
        size_t sn;
        if (line < 1 || source_line(src, len, line, &sl, &sn) != 0)
            return snprintf(why, cap, "line %ld is not in the text", line), why;
        if (col < 1 || (size_t)col > sn + 1)
            return snprintf(why, cap, "column %ld is outside line %ld (%zu bytes)", col, line, sn), why;

        /* " L | <source line>" */
        p = eol + 1;
        eol = strchr(p, '\n');
        char gutter[32];
        int g = snprintf(gutter, sizeof gutter, " %ld | ", line);
        if (!eol || strncmp(p, gutter, (size_t)g) != 0)
            return snprintf(why, cap, "no source line after the error on line %ld", line), why;
        /* The whole line is echoed, a NUL byte as a blank. */
        bool same = (size_t)(eol - p - g) == sn;
        for (size_t c = 0; same && c < sn; c++)
            same = p[g + c] == (sl[c] ? sl[c] : ' ');
        if (!same)
            return snprintf(why, cap, "the source line shown is not line %ld", line), why;

        /* "   | " then blanks, '^' under the column, '~'s */
        p = eol + 1;
        eol = strchr(p, '\n');
        if (!eol || strncmp(p + g - 3, " | ", 3) != 0)
            return snprintf(why, cap, "no caret line after the error on line %ld", line), why;
        const char *c = p + g;
        for (long k = 1; k < col; k++, c++)
            if (c >= eol || (*c != ' ' && *c != '\t'))
                return snprintf(why, cap, "the caret is not at column %ld", col), why;
        if (c >= eol || *c != '^')
            return snprintf(why, cap, "the caret is not at column %ld", col), why;
        for (c++; c < eol; c++)
            if (*c != '~')
                return snprintf(why, cap, "stray text on the caret line"), why;
        p = eol + 1;
    }
    if (headers != nerrors)
        return snprintf(why, cap, "%d error lines for %d errors", headers, nerrors), why;
    return NULL;
}

static bool in_range(int64_t v, int64_t lo, int64_t hi) { return v >= lo && v <= hi; }

static const char *check_rule(const sp_rule *r, char *why, size_t cap)
{
    const int64_t M = SP_MAX_VALUE;
    if (r->loc.line < 1 || r->loc.col < 1 || r->loc.end_col < r->loc.col)
        return snprintf(why, cap, "rule location %d:%d-%d", r->loc.line, r->loc.col, r->loc.end_col), why;
    switch (r->kind) {
    case SP_R_WINDOW:
        if (!in_range(r->u.window.lo, -M, M) || !in_range(r->u.window.hi, r->u.window.lo, M) ||
            !in_range(r->u.window.dil, 1, M))
            return snprintf(why, cap, "window %" PRId64 "..%" PRId64 " dil %" PRId64, r->u.window.lo,
                            r->u.window.hi, r->u.window.dil), why;
        return NULL;
    case SP_R_WINDOW_EXP:
        return in_range(r->u.wexp.w, 0, M) ? NULL : (snprintf(why, cap, "window exp %" PRId64, r->u.wexp.w), why);
    case SP_R_BLOCK_WINDOW:
        if (!in_range(r->u.bwindow.lo, -M, M) || !in_range(r->u.bwindow.hi, r->u.bwindow.lo, M))
            return snprintf(why, cap, "block window %" PRId64 "..%" PRId64, r->u.bwindow.lo,
                            r->u.bwindow.hi), why;
        return NULL;
    case SP_R_STRIDE:
        return in_range(r->u.stride.s, 1, M) ? NULL : (snprintf(why, cap, "stride %" PRId64, r->u.stride.s), why);
    case SP_R_SEGMENT:
        return in_range(r->u.segment.s, 1, M) ? NULL : (snprintf(why, cap, "segment %" PRId64, r->u.segment.s), why);
    case SP_R_COLUMNS:
        if (!in_range(r->u.columns.s, 1, M) || !in_range(r->u.columns.a, 0, r->u.columns.b) ||
            !in_range(r->u.columns.b, r->u.columns.a, r->u.columns.s - 1))
            return snprintf(why, cap, "columns %" PRId64 "..%" PRId64 " mod %" PRId64, r->u.columns.a,
                            r->u.columns.b, r->u.columns.s), why;
        return NULL;
    case SP_R_GLOBAL:
    case SP_R_GLOBAL_ROWS:
    case SP_R_GLOBAL_COLS:
        if (r->u.set.n < 1 || !r->u.set.items)
            return snprintf(why, cap, "empty set"), why;
        for (int i = 0; i < r->u.set.n; i++) {
            const sp_setitem *it = &r->u.set.items[i];
            bool ok = in_range(it->lo, it->lo_end ? 1 : 0, M) && in_range(it->hi, it->hi_end ? 1 : 0, M);
            if (!it->lo_end && !it->hi_end)
                ok = ok && it->lo <= it->hi;
            if (it->lo_end && it->hi_end)
                ok = ok && it->lo >= it->hi; /* L-lo <= L-hi */
            if (!ok)
                return snprintf(why, cap, "set item %" PRId64 "%s..%" PRId64 "%s", it->lo,
                                it->lo_end ? "(end)" : "", it->hi, it->hi_end ? "(end)" : ""), why;
        }
        return NULL;
    case SP_R_RANDOM:
        return in_range(r->u.random.r, 1, M) ? NULL : (snprintf(why, cap, "random %" PRId64, r->u.random.r), why);
    case SP_R_DENSE:
        return NULL;
    }
    return snprintf(why, cap, "unknown rule kind %d", (int)r->kind), why;
}

/* The invariants ir.h promises of an accepted program. */
static const char *check_program(const sp_program *prog, char *why, size_t cap)
{
    if (prog->npatterns < 0 || (prog->npatterns > 0 && !prog->patterns))
        return snprintf(why, cap, "bad pattern array"), why;
    for (int i = 0; i < prog->npatterns; i++) {
        const sp_pattern *p = &prog->patterns[i];
        if (!p->name)
            return snprintf(why, cap, "pattern %d has no name", i), why;
        if (sp_program_find(prog, p->name) != p)
            return snprintf(why, cap, "pattern name '%s' is not unique", p->name), why;
        if (!in_range(p->block, 1, SP_MAX_VALUE))
            return snprintf(why, cap, "block %" PRId64, p->block), why;
        int nrules = p->nrules;
        for (int k = 0; k < p->nrules; k++)
            if (check_rule(&p->rules[k], why, cap))
                return why;
        int64_t last = -1;
        for (int g = 0; g < p->ngroups; g++) {
            const sp_group *gr = &p->groups[g];
            if (gr->h0 <= last || gr->h0 > gr->h1 || gr->h1 > 65535)
                return snprintf(why, cap, "group %" PRId64 "..%" PRId64 " after %" PRId64, gr->h0,
                                gr->h1, last), why;
            last = gr->h1;
            nrules += gr->nrules;
            for (int k = 0; k < gr->nrules; k++)
                if (check_rule(&gr->rules[k], why, cap))
                    return why;
        }
        if (p->nheads != (p->ngroups ? last + 1 : 0))
            return snprintf(why, cap, "nheads %" PRId64 " with last head %" PRId64, p->nheads, last), why;
        if (nrules == 0)
            return snprintf(why, cap, "pattern '%s' has no rules", p->name), why;
    }
    return NULL;
}

/* ---------------------------------------------------------------- the loop */

/* The input as a C string literal, for reproducing a failure. */
static void print_input(FILE *f, const char *s, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n')
            fputs("\\n", f);
        else if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c >= 0x20 && c < 0x7f)
            fputc(c, f);
        else
            fprintf(f, "\\%03o", c);
    }
    fputs("\"\n", f);
}

/* Compiles one input and checks the outcome; NULL, or what went wrong. */
static const char *fuzz_one(const char *src, size_t len, char *why, size_t cap, bool *accepted,
                            char **text_out)
{
    sp_arena a;
    sp_diag d;
    sp_program *prog = (sp_program *)1;
    sp_arena_init(&a);
    sp_diag_init(&d, FILE_NAME, src, len);
    int rc = sp_frontend(src, len, &a, &d, &prog);
    const char *bad = NULL;
    if (rc == 0) {
        *accepted = true;
        if (!prog)
            bad = "accepted without a program";
        else if (d.nerrors != 0 || sp_diag_text(&d)[0] != '\0')
            bad = "accepted with diagnostics";
        else
            bad = check_program(prog, why, cap);
    } else if (rc == -1) {
        *accepted = false;
        if (prog)
            bad = "rejected but returned a program";
        else
            bad = check_diag(src, len, sp_diag_text(&d), d.nerrors, why, cap);
    } else {
        snprintf(why, cap, "sp_frontend returned %d", rc);
        bad = why;
    }
    if (text_out)
        *text_out = strdup(sp_diag_text(&d));
    sp_diag_free(&d);
    sp_arena_free(&a);
    return bad;
}

static double seconds_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double fuzz_seconds(void)
{
    const char *e = getenv("SPAT_FUZZ_SECONDS");
    double s = e ? strtod(e, NULL) : 3.0;
    return s > 0 ? s : 0;
}

static uint64_t fuzz_seed(void)
{
    const char *e = getenv("SPAT_FUZZ_SEED");
    uint64_t s = e ? strtoull(e, NULL, 0) : 0x5eed5eed2024ull;
    return s ? s : 1; /* xorshift never leaves 0 */
}

START_TEST(mutated_patterns_are_accepted_or_cleanly_rejected)
{
    const uint64_t seed = fuzz_seed();
    const double budget = fuzz_seconds();
    rng r = {seed};
    static buf x;
    char why[512];
    long accepted = 0, rejected = 0;
    const double start = seconds_now();
    for (long it = 0;; it++) {
        /* At least a few hundred inputs, however short the budget. */
        if (it >= 500 && (it & 63) == 0 && seconds_now() - start >= budget)
            break;
        make_input(&r, &x);
        bool ok_accepted = false;
        char *text1 = NULL, *text2 = NULL;
        bool again = (it & 15) == 0; /* now and then: the same input twice */
        const char *bad = fuzz_one(x.b, x.n, why, sizeof why, &ok_accepted, again ? &text1 : NULL);
        if (!bad && again) {
            bool acc2 = false;
            bad = fuzz_one(x.b, x.n, why, sizeof why, &acc2, &text2);
            if (!bad && (acc2 != ok_accepted || strcmp(text1, text2) != 0))
                bad = "two compilations of the same input differ";
        }
        free(text1);
        free(text2);
        if (bad) {
            fprintf(stderr, "test_fuzz: SPAT_FUZZ_SEED=%" PRIu64 " iteration %ld: %s\ninput (%zu bytes): ",
                    seed, it, bad, x.n);
            print_input(stderr, x.b, x.n);
            ck_abort_msg("seed %" PRIu64 ", iteration %ld: %s", seed, it, bad);
        }
        if (ok_accepted)
            accepted++;
        else
            rejected++;
    }
    printf("test_fuzz: SPAT_FUZZ_SEED=%" PRIu64 ": %ld inputs in %.1f s, %ld accepted, %ld rejected\n",
           seed, accepted + rejected, seconds_now() - start, accepted, rejected);
    /* Mutations that never keep a text valid, or never break one, would
     * test only half of the front end. */
    ck_assert_msg(accepted > 0 && rejected > 0, "seed %" PRIu64 ": %ld accepted, %ld rejected", seed,
                  accepted, rejected);
}
END_TEST

START_TEST(every_seed_text_compiles)
{
    char why[512];
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
        bool accepted = false;
        char *text = NULL;
        const char *bad = fuzz_one(seeds[i], strlen(seeds[i]), why, sizeof why, &accepted, &text);
        ck_assert_msg(!bad, "seed text %zu: %s", i, bad);
        ck_assert_msg(accepted, "seed text %zu is rejected:\n%s", i, text);
        free(text);
    }
}
END_TEST

/* The checkers must be able to fail, or the loop above proves nothing. */
START_TEST(diagnostic_checker_rejects_malformed_text)
{
    const char *src = "pattern p { x; }\n";
    const char *good = "fuzz.spat:1:13: error: unknown rule 'x'\n"
                       " 1 | pattern p { x; }\n"
                       "   |             ^\n";
    char why[256];
    ck_assert_ptr_null(check_diag(src, strlen(src), good, 1, why, sizeof why));
    static const char *const bad[] = {
        /* wrong file */
        "other.spat:1:13: error: unknown rule 'x'\n 1 | pattern p { x; }\n   |             ^\n",
        /* column beyond the line */
        "fuzz.spat:1:40: error: unknown rule 'x'\n 1 | pattern p { x; }\n   |             ^\n",
        /* line beyond the text */
        "fuzz.spat:3:1: error: unknown rule 'x'\n 3 | \n   | ^\n",
        /* caret not under the column */
        "fuzz.spat:1:13: error: unknown rule 'x'\n 1 | pattern p { x; }\n   |            ^\n",
        /* source line missing */
        "fuzz.spat:1:13: error: unknown rule 'x'\n   |             ^\n",
        /* no message */
        "fuzz.spat:1:13: error: \n 1 | pattern p { x; }\n   |             ^\n",
        /* no position */
        "fuzz.spat: error: unknown rule 'x'\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(check_diag(src, strlen(src), bad[i], 1, why, sizeof why) != NULL,
                      "malformed text %zu passes", i);
    /* The count must match the error lines. */
    ck_assert_ptr_nonnull(check_diag(src, strlen(src), good, 2, why, sizeof why));
    ck_assert_ptr_nonnull(check_diag(src, strlen(src), good, 0, why, sizeof why));
}
END_TEST

START_TEST(program_checker_rejects_broken_ir)
{
    sp_rule rule = {.kind = SP_R_WINDOW, .loc = {1, 1, 5}, .u.window = {-3, 3, 1}};
    sp_group groups[2] = {{.h0 = 0, .h1 = 3, .rules = &rule, .nrules = 1},
                          {.h0 = 4, .h1 = 5, .rules = &rule, .nrules = 1}};
    sp_pattern pat = {.name = "p", .block = 64, .rules = &rule, .nrules = 1, .groups = groups,
                      .ngroups = 2, .nheads = 6};
    sp_program prog = {&pat, 1};
    char why[256];
    ck_assert_ptr_null(check_program(&prog, why, sizeof why));

    rule.u.window.lo = 4; /* lo > hi */
    ck_assert_ptr_nonnull(check_program(&prog, why, sizeof why));
    rule.u.window.lo = -3;
    groups[1].h0 = 3; /* overlapping groups */
    ck_assert_ptr_nonnull(check_program(&prog, why, sizeof why));
    groups[1].h0 = 4;
    pat.nheads = 5; /* not the highest head + 1 */
    ck_assert_ptr_nonnull(check_program(&prog, why, sizeof why));
    pat.nheads = 6;
    pat.block = 0;
    ck_assert_ptr_nonnull(check_program(&prog, why, sizeof why));
    pat.block = 64;
    rule.kind = SP_R_COLUMNS;
    rule.u.columns.a = 0;
    rule.u.columns.b = 8;
    rule.u.columns.s = 8; /* b not below s */
    ck_assert_ptr_nonnull(check_program(&prog, why, sizeof why));
    rule.u.columns.b = 7;
    ck_assert_ptr_null(check_program(&prog, why, sizeof why));
}
END_TEST

static Suite *fuzz_suite(void)
{
    Suite *s = suite_create("fuzz");
    TCase *tc = tcase_create("checkers");
    tcase_add_test(tc, every_seed_text_compiles);
    tcase_add_test(tc, diagnostic_checker_rejects_malformed_text);
    tcase_add_test(tc, program_checker_rejects_broken_ir);
    suite_add_tcase(s, tc);

    tc = tcase_create("random");
    tcase_add_test(tc, mutated_patterns_are_accepted_or_cleanly_rejected);
    /* The budget plus slack for slow machines and valgrind. */
    tcase_set_timeout(tc, fuzz_seconds() * 4 + 60);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(fuzz_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
