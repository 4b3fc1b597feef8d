/* Small helpers shared by the tests (Check ones: they fail the test). */
#ifndef SPAT_TEST_UTIL_H
#define SPAT_TEST_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct tensor;

/* Fills paths with the .spat files of patterns/ under $SPAT_SRCDIR (default
 * "."), sorted by name, malloc'd; returns how many (at most cap). */
int test_pattern_files(char *paths[], int cap);
/* A whole file, NUL-terminated, malloc'd; fails the test when unreadable. */
char *test_slurp(const char *path);
/* The rest of a stream, NUL-terminated, malloc'd. */
char *test_slurp_stream(FILE *f);
/* A new, empty directory /tmp/<prefix>-XXXXXX, its path in dir (cap
 * bytes); false when it cannot be made. */
bool test_tmpdir_make(char *dir, size_t cap, const char *prefix);
/* Removes such a directory and the files in it (no subdirectories: the
 * CUDA cache keeps its files flat). */
void test_tmpdir_remove(const char *dir);
/* Every byte of t (tensor.h) that is not an element's still holds POISON:
 * nothing wrote outside the elements of the output `what`. */
void check_untouched_outside(const struct tensor *t, const char *what, const char *ctx);

#endif
