/* Brute-force evaluation of a pattern, straight from the IR rules and the
 * words of DESIGN.md §2 / spat(5): no plan, no view. The tests hold the plan,
 * the reference backend and every kernel to this. */
#ifndef SPAT_TEST_BRUTE_H
#define SPAT_TEST_BRUTE_H

#include <stdbool.h>
#include <stdint.h>

#include "ir.h"

/* mask[i*L + j] = 1 when query head `head` attends (i, j) at length L. */
void brute_mask(const sp_pattern *p, int64_t head, int64_t L, unsigned char *mask);
/* One pair; slow (recomputes random draws): for spot checks. */
bool brute_attends(const sp_pattern *p, int64_t head, int64_t L, int64_t i, int64_t j);

#endif
