/* XXH64 (Yann Collet's xxHash, 64-bit), written from its specification:
 * kernel.so's digest (module.h). It detects corruption, not an attacker. */
#ifndef SPAT_DIGEST_H
#define SPAT_DIGEST_H

#include <stddef.h>
#include <stdint.h>

/* XXH64 of the n bytes at p with seed. */
uint64_t sp_xxh64(const void *p, size_t n, uint64_t seed);

#endif
