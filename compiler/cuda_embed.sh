#!/bin/sh
# Turns a text file into a C string constant: cuda_embed.sh FILE NAME > out.c
# Backslashes, quotes and '?' (trigraphs) are escaped; each line ends in \n.
set -e
printf '/* Generated from %s by cuda_embed.sh. Do not edit. */\n' "$(basename "$1")"
printf 'const char %s[] =\n' "$2"
sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/?/\\?/g' -e 's/^/    "/' -e 's/$/\\n"/' "$1"
printf '    "";\n'
