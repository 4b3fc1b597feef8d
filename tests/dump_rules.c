/* Writes each rule pattern of tests/rule_patterns.c to DIR/ruleNN.spat, for
 * tests that take pattern files (test_cuda_sched.sh). */
#include <stdio.h>

#include "rule_patterns.h"

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: dump_rules DIR\n");
        return 2;
    }
    for (int i = 0; i < n_rule_patterns; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/rule%02d.spat", argv[1], i);
        FILE *f = fopen(path, "w");
        if (!f || fprintf(f, "%s\n", rule_patterns[i]) < 0 || fclose(f) != 0) {
            perror(path);
            return 1;
        }
    }
    return 0;
}
