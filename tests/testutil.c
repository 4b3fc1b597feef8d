#include "testutil.h"

#include <check.h>
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tensor.h"

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int test_pattern_files(char *paths[], int cap)
{
    const char *src = getenv("SPAT_SRCDIR");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/patterns", src ? src : ".");
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) && n < cap;) {
        size_t len = strlen(e->d_name);
        if (len > 5 && !strcmp(e->d_name + len - 5, ".spat")) {
            char *p = malloc(strlen(dir) + len + 2);
            sprintf(p, "%s/%s", dir, e->d_name);
            paths[n++] = p;
        }
    }
    closedir(d);
    qsort(paths, (size_t)n, sizeof *paths, cmp_str);
    return n;
}

char *test_slurp_stream(FILE *f)
{
    size_t cap = 4096, n = 0;
    char *s = malloc(cap);
    for (size_t r; (r = fread(s + n, 1, cap - n - 1, f)) > 0;) {
        n += r;
        if (n + 1 == cap)
            s = realloc(s, cap *= 2);
    }
    s[n] = 0;
    return s;
}

char *test_slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    char *s = test_slurp_stream(f);
    fclose(f);
    return s;
}

bool test_tmpdir_make(char *dir, size_t cap, const char *prefix)
{
    const int n = snprintf(dir, cap, "/tmp/%s-XXXXXX", prefix);
    return n > 0 && (size_t)n < cap && mkdtemp(dir) != NULL;
}

void test_tmpdir_remove(const char *dir)
{
    DIR *h = opendir(dir);
    for (struct dirent *e; h && (e = readdir(h));) {
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (e->d_name[0] != '.')
            unlink(p);
    }
    if (h)
        closedir(h);
    rmdir(dir);
}

void check_untouched_outside(const tensor *t, const char *what, const char *ctx)
{
    int64_t x = tensor_written_outside(t);
    ck_assert_msg(x < 0, "%s: a write outside the elements of %s (element slot %" PRId64 ")", ctx, what, x);
}
