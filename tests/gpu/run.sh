#!/bin/sh
# Builds spat from a `make dist` tarball and runs the GPU tests, on a
# machine with an NVIDIA GPU, NVRTC and compute-sanitizer:
#
#   sh tests/gpu/run.sh spat-0.1.0.tar.gz OUTDIR [test_gpu options]
#
# OUTDIR receives build.log, gpu_test.log, gpu_extra.log (on Hopper also
# gpu_test_ctas3.log and gpu_test_sm90.log) and the logs of
# compute-sanitizer's memcheck, racecheck and synccheck on a small set.
# The build stays in $SPAT_GPU_BUILD (default: a new temporary directory)
# for bench/gpu/run.sh. Exit status 0 when everything passed.
#
# The cases are bound by NVRTC's cold compiles (one core each), so the
# test runs are split over $SPAT_GPU_SHARDS processes at once (default:
# half the cores, at most 8; test_gpu --shard), their logs concatenated.
# A case running past $SPAT_GPU_CASE_TIMEOUT seconds (default 300) is
# reported as TIMEOUT and fails its shard instead of holding the run.
set -u
tarball=$(realpath "$1")
out=$(realpath "${2:-.}")
shift 2 2>/dev/null || shift $#
build=${SPAT_GPU_BUILD:-$(mktemp -d)}
mkdir -p "$build" "$out"
cd "$build" && tar xzf "$tarball" && cd spat-*/ || exit 2
if ! { ./configure --with-cuda="${CUDA_PATH:-/usr/local/cuda}" && make -j"$(nproc)" &&
       make -j"$(nproc)" tests/gpu/test_gpu; } > "$out/build.log" 2>&1; then
    tail -40 "$out/build.log"
    exit 2
fi
export SPAT_SRCDIR="$PWD" SPAT_CACHE_DIR="$build/cache"
shards=${SPAT_GPU_SHARDS:-$(($(nproc) / 2))}
[ "$shards" -ge 1 ] || shards=1
[ "$shards" -le 8 ] || shards=8
# sharded LOG [test_gpu options]: the cases over $shards processes; LOG
# gets their logs one after the other. Status 0 when every shard passed.
sharded() {
    log=$1
    shift
    i=0 pids= rc=0
    while [ $i -lt "$shards" ]; do
        ./tests/gpu/test_gpu --shard $i/"$shards" "$@" > "$log.$i" 2>&1 &
        pids="$pids $!"
        i=$((i + 1))
    done
    for p in $pids; do
        wait "$p" || rc=1
    done
    i=0
    : > "$log"
    while [ $i -lt "$shards" ]; do
        cat "$log.$i" >> "$log" && rm -f "$log.$i"
        i=$((i + 1))
    done
    return $rc
}
status=0
sharded "$out/gpu_test.log" "$@" || status=1
grep -v '^ok ' "$out/gpu_test.log" | tail -30
sharded "$out/gpu_extra.log" --extra "$@" || status=1
grep -v '^ok ' "$out/gpu_extra.log" | tail -10
# On Hopper the tiles run on wgmma (sm_90a) in persistent CTAs: the cases
# run again with 3 CTAs per launch, so that every CTA works through many
# query tiles (few cases have more tiles than the GPU has room for CTAs);
# the mma.sync tiles, which every other GPU runs, are tested here too
# through an sm_90 build.
hopper=false
[ "$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1)" = 9.0 ] && hopper=true
if $hopper; then
    echo "persistent CTAs, 3 per launch (SPAT_CUDA_CTAS=3):"
    (export SPAT_CUDA_CTAS=3 && sharded "$out/gpu_test_ctas3.log" "$@") || status=1
    grep -v '^ok ' "$out/gpu_test_ctas3.log" | tail -10
    echo "mma.sync tiles (SPAT_CUDA_ARCH=sm_90):"
    (export SPAT_CUDA_ARCH=sm_90 && sharded "$out/gpu_test_sm90.log" "$@") || status=1
    grep -v '^ok ' "$out/gpu_test_sm90.log" | tail -10
fi
# API errors are not reported: libspat probes host pointers with
# cuPointerGetAttribute on purpose (the reference calls of the test).
# On Hopper racecheck and synccheck also run with 2 CTAs per launch.
sanitize() {
    tool=$1 log=$2
    compute-sanitizer --tool "$tool" --report-api-errors no --error-exitcode 9 \
        ./tests/gpu/test_gpu --small > "$log" 2>&1
    rc=$?
    echo "compute-sanitizer $tool${SPAT_CUDA_CTAS:+ (SPAT_CUDA_CTAS=$SPAT_CUDA_CTAS)}: exit $rc;" \
        "$(grep -c '^ok ' "$log") cases ok; $(grep -E 'SUMMARY' "$log" | tail -1)"
    return $rc
}
for tool in memcheck racecheck synccheck; do
    sanitize $tool "$out/$tool.log" || status=1
    if $hopper && [ $tool != memcheck ]; then
        (export SPAT_CUDA_CTAS=2 && sanitize $tool "$out/${tool}_ctas2.log") || status=1
    fi
done
exit $status
