#include "diag.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sp_diag_init(sp_diag *d, const char *file, const char *src, size_t srclen)
{
    memset(d, 0, sizeof *d);
    d->file = file ? file : "<input>";
    d->src = src;
    d->srclen = srclen;
}

void sp_diag_free(sp_diag *d)
{
    free(d->text);
    d->text = NULL;
    d->len = d->cap = 0;
}

/* Out of memory while reporting an error: the error count still tells the
 * caller that compilation failed, so dropping the text is safe. */
static void append(sp_diag *d, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return;
    if (d->len + (size_t)n + 1 > d->cap) {
        size_t cap = d->cap ? d->cap : 256;
        while (cap < d->len + (size_t)n + 1)
            cap *= 2;
        char *t = realloc(d->text, cap);
        if (!t)
            return;
        d->text = t;
        d->cap = cap;
    }
    vsnprintf(d->text + d->len, (size_t)n + 1, fmt, ap);
    d->len += (size_t)n;
}

static void appendf(sp_diag *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    append(d, fmt, ap);
    va_end(ap);
}

/* Finds line `line` (1-based) of the source; returns its length. */
static const char *source_line(const sp_diag *d, int line, size_t *len)
{
    if (!d->src || line < 1)
        return NULL;
    const char *p = d->src, *end = d->src + d->srclen;
    for (int l = 1; l < line; l++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            return NULL;
        p = nl + 1;
    }
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    *len = (size_t)((nl ? nl : end) - p);
    if (*len && p[*len - 1] == '\r')
        (*len)--;
    return p;
}

void sp_diag_error(sp_diag *d, sp_loc loc, const char *fmt, ...)
{
    d->nerrors++;
    if (loc.line > 0)
        appendf(d, "%s:%d:%d: error: ", d->file, loc.line, loc.col);
    else
        appendf(d, "%s: error: ", d->file);
    va_list ap;
    va_start(ap, fmt);
    append(d, fmt, ap);
    va_end(ap);
    appendf(d, "\n");

    size_t len;
    const char *line = source_line(d, loc.line, &len);
    if (!line)
        return;
    /* The line is echoed with NULs shown as blanks, and the caret line is
     * built whole: tabs are echoed so the caret lines up under the text
     * whatever the tab width. */
    char *echo = malloc(len + 1), *mark = malloc(len + 3);
    if (!echo || !mark) {
        free(echo);
        free(mark);
        return;
    }
    size_t col = loc.col < 1 ? 1 : (size_t)loc.col, end = loc.end_col > loc.col ? (size_t)loc.end_col : col;
    size_t m = 0;
    for (size_t c = 0; c < len; c++)
        echo[c] = line[c] ? line[c] : ' ';
    echo[len] = 0;
    for (size_t c = 1; c < col && c <= len + 1; c++)
        mark[m++] = c - 1 < len && line[c - 1] == '\t' ? '\t' : ' ';
    mark[m++] = '^';
    for (size_t c = col + 1; c <= end && c <= len; c++)
        mark[m++] = '~';
    mark[m] = 0;
    int gutter = snprintf(NULL, 0, "%d", loc.line);
    appendf(d, " %d | %s\n %*s | %s\n", loc.line, echo, gutter, "", mark);
    free(echo);
    free(mark);
}

const char *sp_diag_text(const sp_diag *d) { return d->text ? d->text : ""; }
