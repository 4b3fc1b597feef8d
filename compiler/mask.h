/* Pictures of a pattern (`spatc --emit=mask`): the attended pairs of one
 * head at one length, query rows top to bottom, keys left to right. */
#ifndef SPAT_MASK_H
#define SPAT_MASK_H

#include <stdint.h>
#include <stdio.h>

#include "plan.h"

/* size x size pixels (size <= n), each pixel shaded by the fraction of the
 * pairs it covers that are attended: black all, white none. Returns 0, or
 * -1 when out of memory or on a write error. */
int sp_mask_png(const sp_plan *p, int64_t head, int64_t n, int size, FILE *f);
int sp_mask_svg(const sp_plan *p, int64_t head, int64_t n, int size, FILE *f);

#endif
