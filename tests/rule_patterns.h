#ifndef SPAT_TEST_RULE_PATTERNS_H
#define SPAT_TEST_RULE_PATTERNS_H

/* Pattern sources, one pattern each (see rule_patterns.c). */
extern const char *const rule_patterns[];
extern const int n_rule_patterns;

#endif
