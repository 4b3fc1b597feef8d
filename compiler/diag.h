/* Diagnostics: every error of a compilation is collected, rendered as
 * `file:line:col: error: message`, followed by the source line and a caret
 * under the offending columns, so that one run reports all of a file's
 * mistakes, not just the first. */
#ifndef SPAT_DIAG_H
#define SPAT_DIAG_H

#include <stddef.h>

/* 1-based; line 0 means "no position" (a whole-file error). end_col is the
 * last column of the offending text, on line `line`. */
typedef struct sp_loc {
    int line, col, end_col;
} sp_loc;

typedef struct sp_diag {
    const char *file; /* name used in messages */
    const char *src;  /* the text the locations point into */
    size_t srclen;
    char *text; /* rendered messages, NUL-terminated, malloc'd */
    size_t len, cap;
    int nerrors;
} sp_diag;

void sp_diag_init(sp_diag *d, const char *file, const char *src, size_t srclen);
void sp_diag_free(sp_diag *d);
void sp_diag_error(sp_diag *d, sp_loc loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* All messages so far ("" when none). */
const char *sp_diag_text(const sp_diag *d);

#endif
