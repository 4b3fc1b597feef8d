/* The on-disk cache of NVRTC output. An entry is keyed by a 128-bit hash
 * of everything that determines the compiled code: the CUDA source, the
 * NVRTC options (head dim, dtype, architecture), NVRTC's version and
 * libspat's. Entries are written to a temporary file and renamed into
 * place, so readers never see half an entry; an entry whose header,
 * length or checksum is wrong is treated as missing and rewritten.
 *
 * Where: $SPAT_CACHE_DIR, else $XDG_CACHE_HOME/spat, else ~/.cache/spat.
 * SPAT_CACHE_DIR set to the empty string turns the cache off. A cache that
 * cannot be created or written is skipped silently: it only saves time. */
#ifndef SPAT_CUDA_CACHE_H
#define SPAT_CUDA_CACHE_H

#include <stddef.h>
#include <stdint.h>

typedef struct sp_cache_key {
    uint64_t h[2];
} sp_cache_key;

/* Hashes the parts (NUL-separated) into a key. */
sp_cache_key sp_cache_key_of(const char *const *parts, const size_t *lens, int n);

/* The cache directory into buf (created if missing), or -1 when the cache
 * is off or unusable. */
int sp_cache_dir(char *buf, size_t cap);

/* Reads the entry of key in dir: 0 and a malloc'd copy, or -1 (missing,
 * unreadable or corrupt). */
int sp_cache_get(const char *dir, sp_cache_key key, void **data, size_t *len);

/* Stores an entry atomically; returns 0 or -1 (not stored). */
int sp_cache_put(const char *dir, sp_cache_key key, const void *data, size_t len);

/* The file name of an entry ("<32 hex digits>.cubin") into buf. */
void sp_cache_path(const char *dir, sp_cache_key key, char *buf, size_t cap);

#endif
