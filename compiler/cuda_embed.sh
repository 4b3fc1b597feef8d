#!/bin/sh
# Turns a text file into a C string constant: cuda_embed.sh FILE NAME > out.c
# A line `#include "X"` becomes the text of X, from FILE's directory: NVRTC
# is given the source alone, so the engine's headers (rng.h) travel in it.
# Backslashes, quotes and '?' (trigraphs) are escaped; each line ends in \n.
set -e
tmp=${TMPDIR:-/tmp}/cuda_embed.$$
trap 'rm -f "$tmp"' EXIT
awk -v dir="$(dirname "$1")" '
/^#include "[^"]*"$/ {
    f = dir "/" substr($2, 2, length($2) - 2)
    while ((r = (getline line < f)) > 0)
        print line
    if (r < 0) {
        print "cuda_embed.sh: cannot read " f > "/dev/stderr"
        exit 1
    }
    close(f)
    next
}
{ print }' "$1" > "$tmp"
printf '/* Generated from %s by cuda_embed.sh. Do not edit. */\n' "$(basename "$1")"
printf 'const char %s[] =\n' "$2"
sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/?/\\?/g' -e 's/^/    "/' -e 's/$/\\n"/' "$tmp"
printf '    "";\n'
