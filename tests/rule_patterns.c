/* Patterns that exercise every rule of the language, alone and together,
 * with causal, odd block sizes, head groups and overlapping rules: the
 * plan, stats, reference and kernel tests all run over these. */
#include "rule_patterns.h"

const char *const rule_patterns[] = {
    "pattern w { window 5; }",
    "pattern w0 { window 0; }",
    "pattern wide { window 100000; }",
    "pattern asym { window -3..+9; }",
    "pattern future { window +2..+6; }",
    "pattern past_causal { causal; window -40..+0; }",
    "pattern dil { window 17 dilation 3; }",
    "pattern dil_asym { window -20..+7 dilation 4; }",
    "pattern dil_causal { causal; window 30 dilation 5; }",
    "pattern exp { window 300 dilation exp; }",
    "pattern exp_causal { causal; window 64 dilation exp; window -2..+0; }",
    "pattern bw { block 16; window 1 blocks; }",
    "pattern bw_asym { block 8; window -2..+0 blocks; }",
    "pattern bw_causal { block 16; causal; window -1..+1 blocks; }",
    "pattern stride { stride 7; }",
    "pattern stride_causal { causal; stride 16; }",
    "pattern seg { segment 24; }",
    "pattern seg_causal { causal; segment 10; }",
    "pattern cols { columns 3..5 mod 11; }",
    "pattern cols_causal { causal; columns 0..0 mod 4; }",
    "pattern glob { global 0, 5..9, last 3; }",
    "pattern glob_causal { causal; global first 2 blocks; block 4; }",
    "pattern rows { global rows 3, 50..60; }",
    "pattern rows_only_empty_rows { global rows last 1; }",
    "pattern colset { global cols 1..2, last 5; }",
    "pattern dense { dense; }",
    "pattern causal { causal; dense; }",
    "pattern rnd { block 8; random 2 blocks seed 7; }",
    "pattern rnd_causal { block 8; causal; random 3 blocks seed 99; window -8..+0; }",
    "pattern rnd_crowded { block 4; window 2 blocks; global first 1 blocks; random 30 blocks seed 1; }",
    "pattern everything {\n"
    "  block 16; window 5; window -20..+3 dilation 4; window 70 dilation exp; stride 33;\n"
    "  segment 40; columns 2..3 mod 9; global 4; global rows 30..33; global cols last 2;\n"
    "  window -1..+0 blocks; random 2 blocks seed 5;\n"
    "}",
    "pattern everything_causal {\n"
    "  causal; block 8; window 3; window 12 dilation 3; window 50 dilation exp; stride 10;\n"
    "  segment 13; columns 0..1 mod 6; global 2, last 1 blocks; window -1..+0 blocks;\n"
    "  random 1 blocks seed 11;\n"
    "}",
    "pattern merged { window 4; window -10..-3; window 2..9; window 6 dilation 2; stride 4; stride 8; }",
    "pattern heads {\n"
    "  global 0;\n"
    "  heads 0..1 { window 3; }\n"
    "  heads 2 { causal; stride 5; random 1 blocks seed 3; }\n"
    "}",
    "pattern groups { block 8; window 2;\n"
    "  heads 0 { causal; segment 20; }\n"
    "  heads 1..2 { window 9 dilation 3; random 2 blocks seed 4; }\n"
    "  heads 4 { columns 7..7 mod 8; }\n"
    "}",
};

const int n_rule_patterns = (int)(sizeof rule_patterns / sizeof *rule_patterns);
