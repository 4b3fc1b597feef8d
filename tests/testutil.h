/* Small helpers shared by the tests. */
#ifndef SPAT_TEST_UTIL_H
#define SPAT_TEST_UTIL_H

/* Fills paths with the .spat files of patterns/ under $SPAT_SRCDIR (default
 * "."), sorted by name, malloc'd; returns how many (at most cap). */
int test_pattern_files(char *paths[], int cap);
/* A whole file, NUL-terminated, malloc'd; fails the test when unreadable. */
char *test_slurp(const char *path);

#endif
