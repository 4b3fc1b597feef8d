/* Small helpers shared by the tests (Check ones: they fail the test). */
#ifndef SPAT_TEST_UTIL_H
#define SPAT_TEST_UTIL_H

#include <stdio.h>

struct tensor;

/* Fills paths with the .spat files of patterns/ under $SPAT_SRCDIR (default
 * "."), sorted by name, malloc'd; returns how many (at most cap). */
int test_pattern_files(char *paths[], int cap);
/* A whole file, NUL-terminated, malloc'd; fails the test when unreadable. */
char *test_slurp(const char *path);
/* The rest of a stream, NUL-terminated, malloc'd. */
char *test_slurp_stream(FILE *f);
/* Every byte of t (tensor.h) that is not an element's still holds POISON:
 * nothing wrote outside the elements of the output `what`. */
void check_untouched_outside(const struct tensor *t, const char *what, const char *ctx);

#endif
