/* The NVRTC output cache on disk (cuda_cache.h). */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cuda_cache.h"

#define MAGIC "SPATCBN1"
#define MAX_ENTRY ((size_t)1 << 30)

/* FNV-1a with two offset bases: independent enough for a cache key (a
 * collision would need both 64-bit halves to agree). */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

sp_cache_key sp_cache_key_of(const char *const *parts, const size_t *lens, int n)
{
    sp_cache_key k = {{0xcbf29ce484222325ull, 0x84222325cbf29ce4ull}};
    for (int i = 0; i < n; i++) {
        static const char sep = '\0';
        for (int x = 0; x < 2; x++) {
            k.h[x] = fnv(k.h[x], parts[i], lens[i]);
            k.h[x] = fnv(k.h[x], &sep, 1);
        }
    }
    /* Mix the second half so that it differs from the first beyond the
     * start value. */
    k.h[1] ^= k.h[1] >> 29;
    k.h[1] *= 0xbf58476d1ce4e5b9ull;
    k.h[1] ^= k.h[1] >> 32;
    return k;
}

/* mkdir -p, with 0700 for what it creates. */
static int mkdirs(const char *path)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp)
        return -1;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
        return -1;
    struct stat sb;
    return stat(tmp, &sb) == 0 && S_ISDIR(sb.st_mode) ? 0 : -1;
}

int sp_cache_dir(char *buf, size_t cap)
{
    const char *env = getenv("SPAT_CACHE_DIR");
    int n;
    if (env) {
        if (!*env)
            return -1;
        n = snprintf(buf, cap, "%s", env);
    } else if ((env = getenv("XDG_CACHE_HOME")) && *env) {
        n = snprintf(buf, cap, "%s/spat", env);
    } else if ((env = getenv("HOME")) && *env) {
        n = snprintf(buf, cap, "%s/.cache/spat", env);
    } else {
        return -1;
    }
    if (n < 0 || (size_t)n >= cap)
        return -1;
    return mkdirs(buf);
}

void sp_cache_path(const char *dir, sp_cache_key key, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/%016" PRIx64 "%016" PRIx64 ".cubin", dir, key.h[0], key.h[1]);
}

typedef struct header {
    char magic[8];
    uint64_t h0, h1, len, sum;
} header;

int sp_cache_get(const char *dir, sp_cache_key key, void **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    char path[PATH_MAX + 64];
    sp_cache_path(dir, key, path, sizeof path);
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    header h;
    void *buf = NULL;
    int rc = -1;
    if (fread(&h, sizeof h, 1, f) == 1 && !memcmp(h.magic, MAGIC, 8) && h.h0 == key.h[0] &&
        h.h1 == key.h[1] && h.len > 0 && h.len <= MAX_ENTRY && (buf = malloc(h.len)) &&
        fread(buf, 1, h.len, f) == h.len && fgetc(f) == EOF &&
        fnv(0xcbf29ce484222325ull, buf, h.len) == h.sum) {
        *data = buf;
        *len = h.len;
        buf = NULL;
        rc = 0;
    }
    free(buf);
    fclose(f);
    return rc;
}

int sp_cache_put(const char *dir, sp_cache_key key, const void *data, size_t len)
{
    if (len == 0 || len > MAX_ENTRY)
        return -1;
    char path[PATH_MAX + 64], tmp[PATH_MAX + 96];
    sp_cache_path(dir, key, path, sizeof path);
    if (snprintf(tmp, sizeof tmp, "%s.tmpXXXXXX", path) >= (int)sizeof tmp)
        return -1;
    int fd = mkstemp(tmp);
    if (fd < 0)
        return -1;
    header h;
    memcpy(h.magic, MAGIC, 8);
    h.h0 = key.h[0];
    h.h1 = key.h[1];
    h.len = len;
    h.sum = fnv(0xcbf29ce484222325ull, data, len);
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        close(fd);
        unlink(tmp);
        return -1;
    }
    bool ok = fwrite(&h, sizeof h, 1, f) == 1 && fwrite(data, 1, len, f) == len;
    ok &= fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok &= fclose(f) == 0;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}
