#!/bin/sh
# The GPU benchmark (bench/gpu/bench.py) in a spat build tree that
# tests/gpu/run.sh left, or in the current directory's:
#
#   sh bench/gpu/run.sh BUILDDIR OUTDIR [bench.py options]
#
# Writes OUTDIR/bench.json and OUTDIR/bench.log; the table ends the log.
set -u
build=$(realpath "${1:-.}")
out=$(realpath "${2:-.}")
shift 2 2>/dev/null || shift $#
cd "$build" || exit 2
[ -d spat-0.1.0 ] && cd spat-*/
mkdir -p "$out"
PYTHONUNBUFFERED=1 python3 bench/gpu/bench.py --lib .libs/libspat.so --patterns patterns \
    --json "$out/bench.json" "$@" 2>&1 | tee "$out/bench.log"
