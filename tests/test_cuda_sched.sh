#!/bin/sh
# The schedules of the generated CUDA kernels, replayed on the host
# (tests/cuda_sched.cc) for every pattern in patterns/ and every rule
# pattern, with CTAs of 64 query rows and of 128 (-DSP_WG=2: two compute
# warpgroups), and of 192 (three) for the patterns that run them (SP_EVERY,
# SP_LOWER): every attended pair is visited exactly once, nothing else.
# Needs a C++ compiler ($CXX, else c++); skipped (77) without one.
set -u
SRCDIR=${SPAT_SRCDIR:-.}
BUILDDIR=${SPAT_BUILDDIR:-.}
CXX=${CXX:-c++}
command -v "$CXX" >/dev/null 2>&1 || { echo "SKIP: no C++ compiler ($CXX)"; exit 77; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
"$BUILDDIR/tests/dump_rules" "$T" || exit 1
one() { # FILE.spat [CXXFLAGS]
    name=$(basename "$1" .spat)
    "$BUILDDIR/spatc" "$1" --emit=cuda -o "$T/$name.cu" || { echo "FAIL: spatc --emit=cuda $1"; return 1; }
    $CXX -std=c++17 -O1 -w ${2:-} -DGEN="\"$T/$name.cu\"" -I"$BUILDDIR" -I"$SRCDIR/include" -I"$SRCDIR/compiler" \
        -I"$SRCDIR/grammar" -I"$BUILDDIR/grammar" -I"$SRCDIR/runtime" -c "$SRCDIR/tests/cuda_sched.cc" \
        -o "$T/$name.o" || { echo "FAIL: compiling the replay of $1 ${2:-}"; return 1; }
    "$BUILDDIR/libtool" --quiet --tag=CC --mode=link $CXX -o "$T/$name" "$T/$name.o" "$BUILDDIR/libspatcore.la" \
        > "$T/$name.link" 2>&1 || { cat "$T/$name.link"; echo "FAIL: linking the replay of $1 ${2:-}"; return 1; }
    "$T/$name" "$1"
}
status=0
for f in "$SRCDIR"/patterns/*.spat "$T"/rule*.spat; do
    one "$f" || status=1
    one "$f" -DSP_WG=2 || status=1
    if grep -q "^#define SP_EVERY 1\|^#define SP_LOWER 1" "$T/$(basename "$f" .spat).cu"; then
        one "$f" -DSP_WG=3 || status=1
    fi
done
exit $status
