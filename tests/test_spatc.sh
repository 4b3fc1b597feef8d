#!/bin/sh
# spatc from the outside: exit codes, diagnostics on stderr, outputs written
# whole or not at all, every --emit kind.
set -u
SPATC="$(cd "${SPAT_BUILDDIR:-.}" && pwd)/spatc"
PATS="${SPAT_SRCDIR:-.}/patterns"
T=$(mktemp -d "${TMPDIR:-/tmp}/spatc-test.XXXXXX")
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# A good file compiles to a shared object that exports the descriptor.
"$SPATC" "$PATS/bigbird.spat" -o "$T/bb.so" || fail "bigbird.spat does not compile"
[ -s "$T/bb.so" ] || fail "no bb.so"
grep -q spat_module_v1 "$T/bb.so" || fail "bb.so lacks spat_module_v1"
ls "$T" | grep -q tmp && fail "temporary file left behind: $(ls "$T")"

# Default output name: FILE.so in the current directory.
(cd "$T" && cp "$PATS/window256.spat" . && "$SPATC" window256.spat) || fail "default -o"
[ -s "$T/window256.so" ] || fail "window256.so not written by default"

# A bad file: every error with its location, exit 1, the old output untouched.
printf 'pattern p {\n    window 256 dilation 0;\n    stirde 4;\n}\npattern p { dense; }\n' > "$T/bad.spat"
echo "precious" > "$T/out.so"
"$SPATC" "$T/bad.spat" -o "$T/out.so" 2> "$T/err"
[ $? -eq 1 ] || fail "bad file: exit status not 1"
[ "$(cat "$T/out.so")" = precious ] || fail "bad file overwrote the output"
grep -q "bad.spat:2:25: error: " "$T/err" || fail "no located error for dilation 0: $(cat "$T/err")"
grep -q "bad.spat:3:5: error: .*stirde" "$T/err" || fail "no located error for the unknown word: $(cat "$T/err")"
grep -q "bad.spat:5:9: error: .*p" "$T/err" || fail "no located error for the duplicate name: $(cat "$T/err")"
grep -q "\^" "$T/err" || fail "no caret in: $(cat "$T/err")"
grep -q "^3 errors$" "$T/err" || fail "error count missing: $(cat "$T/err")"
ls "$T" | grep -q tmp && fail "temporary file left behind after an error"

# An output that cannot be written: exit 1, nothing left behind.
"$SPATC" "$PATS/dense.spat" -o "$T/no/such/dir/x.so" 2>/dev/null && fail "unwritable output accepted"

# Usage errors exit 2; a missing input exits 1.
"$SPATC" 2>/dev/null; [ $? -eq 2 ] || fail "no input: not exit 2"
"$SPATC" --emit=bogus "$PATS/dense.spat" 2>/dev/null; [ $? -eq 2 ] || fail "bad --emit: not exit 2"
"$SPATC" "$T/missing.spat" 2>/dev/null; [ $? -eq 1 ] || fail "missing input: not exit 1"
"$SPATC" "$PATS/dense.spat" --pattern nope --emit=ir 2>"$T/err"; [ $? -eq 1 ] || fail "unknown --pattern accepted"
grep -q "has no pattern 'nope'" "$T/err" || fail "unknown --pattern message: $(cat "$T/err")"

# --emit=ir shows the plan.
"$SPATC" "$PATS/strided128.spat" --emit=ir > "$T/ir" || fail "--emit=ir"
grep -q "residue   i-j = 0 mod 128  (skips pairs of #0)" "$T/ir" || fail "plan text: $(cat "$T/ir")"

# --emit=stats is JSON with the fields the man page lists.
"$SPATC" "$PATS/longformer.spat" --emit=stats --seq-len 1000 --heads 2 > "$T/stats" || fail "--emit=stats"
for f in name n heads pairs density block_density flops_forward layers_to_connect; do
    grep -q "\"$f\"" "$T/stats" || fail "stats lack $f"
done
if command -v python3 >/dev/null; then
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); p=d['patterns'][0]; \
assert p['pairs']==sum(h['pairs'] for h in p['heads']); assert p['layers_to_connect']==2" "$T/stats" \
        || fail "stats JSON does not parse or add up: $(cat "$T/stats")"
fi
# Layers the structure does not give are not computed at long lengths, and
# say so (man spatc); those it gives come at once.
echo 'pattern r { block 8; random 2 blocks seed 7; window 1; }' > "$T/rnd.spat"
"$SPATC" "$T/rnd.spat" --emit=stats --seq-len 8192 > "$T/stats" || fail "--emit=stats of random blocks"
grep -q '"layers_to_connect": "not computed above n = 4096"' "$T/stats" || fail "random layers at 8192: $(cat "$T/stats")"
echo 'pattern w { window 1; }' > "$T/w1.spat"
"$SPATC" "$T/w1.spat" --emit=stats --seq-len 4097 > "$T/stats" || fail "--emit=stats of window 1"
grep -q '"layers_to_connect": 4096}' "$T/stats" || fail "window 1 layers at 4097: $(cat "$T/stats")"
"$SPATC" "$PATS/longformer_dilated.spat" --emit=stats --heads 4 2>/dev/null && fail "--heads against a 16-head pattern accepted"

# --emit=mask: a PNG (signature, IHDR size) and an SVG.
"$SPATC" "$PATS/fixed128.spat" --emit=mask --seq-len 300 -o "$T/m.png" 2>/dev/null || fail "--emit=mask png"
[ "$(head -c 8 "$T/m.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "not a PNG"
[ "$(dd if="$T/m.png" bs=1 skip=16 count=8 2>/dev/null | od -An -tx1 | tr -d ' \n')" = 0000012c0000012c ] \
    || fail "PNG is not 300x300"
"$SPATC" "$PATS/longformer_dilated.spat" --emit=mask --head 9 --seq-len 64 -o "$T/m.svg" 2>/dev/null || fail "--emit=mask svg"
grep -q "<svg" "$T/m.svg" || fail "not an SVG"
"$SPATC" "$PATS/longformer_dilated.spat" --emit=mask --head 16 -o "$T/x.png" 2>/dev/null && fail "mask of head 16 of 16 accepted"
[ -e "$T/x.png" ] && fail "failed mask left a file"

# --emit=llvm and --emit=asm show the CPU code (when spatc has LLVM).
if "$SPATC" "$PATS/window256.spat" --emit=llvm --head-dim 64 -o "$T/w.ll" 2>"$T/err"; then
    grep -q "define hidden void @spat_cpu_p0_d64_e0" "$T/w.ll" || fail "--emit=llvm: no entry point"
    "$SPATC" "$PATS/window256.spat" --emit=llvm --no-opt --head-dim 64 > "$T/raw.ll" || fail "--no-opt"
    grep -q "llvm.fmuladd" "$T/raw.ll" || fail "--emit=llvm --no-opt: no fmuladd"
    "$SPATC" "$PATS/window256.spat" --emit=asm --head-dim 64 -o "$T/w.s" || fail "--emit=asm"
    grep -q "spat_cpu_p0_d64_e0:" "$T/w.s" || fail "--emit=asm: no entry point"
    # A named CPU and features: x86-64 is SSE2 only, and -avx512f keeps AVX2.
    "$SPATC" "$PATS/window256.spat" --emit=asm --head-dim 64 -mcpu=x86-64 > "$T/sse.s" || fail "-mcpu=x86-64"
    grep -q "%ymm\|%zmm" "$T/sse.s" && fail "-mcpu=x86-64 code uses AVX registers"
    grep -q "mulps" "$T/sse.s" || fail "-mcpu=x86-64: no SSE code"
    "$SPATC" "$PATS/window256.spat" --emit=asm --head-dim 64 -mcpu=haswell > "$T/avx2.s" || fail "-mcpu=haswell"
    grep -q "vfmadd...ps.*%ymm" "$T/avx2.s" || fail "-mcpu=haswell: no AVX2 FMA"
    grep -q "%zmm" "$T/avx2.s" && fail "-mcpu=haswell code uses zmm"
    "$SPATC" "$PATS/window256.spat" --emit=asm --head-dim 64 -mcpu=skylake-avx512 > "$T/avx512.s" ||
        fail "-mcpu=skylake-avx512"
    grep -q "vfmadd...ps.*%zmm" "$T/avx512.s" || fail "-mcpu=skylake-avx512: no zmm FMA"
    "$SPATC" "$PATS/window256.spat" --emit=asm --head-dim 64 -mcpu=skylake-avx512 --target-features=-avx512f \
        > "$T/no512.s" || fail "--target-features=-avx512f"
    grep -q "%zmm" "$T/no512.s" && fail "--target-features=-avx512f code uses zmm"
    # kernel.so for another CPU is written (loading it is spat_load's business).
    "$SPATC" "$PATS/bigbird.spat" -mcpu=haswell -o "$T/hsw.so" || fail "kernel.so for -mcpu=haswell"
    [ -s "$T/hsw.so" ] || fail "no kernel.so for haswell"
    # It needs libc (and at most libm) at run time, no LLVM.
    if command -v readelf >/dev/null; then
        readelf -d "$T/hsw.so" | grep NEEDED | grep -v "libc\.so\|libm\.so" &&
            fail "kernel.so needs more than libc and libm"
    fi
else
    grep -q "without LLVM" "$T/err" || fail "--emit=llvm failed: $(cat "$T/err")"
fi

# --emit=cuda: one pattern's CUDA source, with its entry points; a file of
# several patterns needs --pattern; --cuda-arch only with kernel.so.
"$SPATC" "$PATS/strided128.spat" --emit=cuda -o "$T/s.cu" || fail "--emit=cuda"
grep -q 'extern "C" __global__ .*spat_direct' "$T/s.cu" || fail "--emit=cuda: no spat_direct"
grep -q 'extern "C" __global__ .*spat_remap' "$T/s.cu" || fail "--emit=cuda: strided128 has no remap pass"
grep -q 'spat_rows' "$T/s.cu" && fail "--emit=cuda: strided128 has no global rows"
printf 'pattern a { window 2; }\npattern b { dense; }\n' > "$T/two.spat"
"$SPATC" "$T/two.spat" --emit=cuda > /dev/null 2> "$T/err" && fail "--emit=cuda of two patterns"
grep -q -- "--pattern" "$T/err" || fail "--emit=cuda of two patterns: $(cat "$T/err")"
"$SPATC" "$T/two.spat" --emit=cuda --pattern b > /dev/null || fail "--emit=cuda --pattern b"
"$SPATC" "$T/two.spat" --emit=ir --cuda-arch=sm_80 > /dev/null 2>&1 && fail "--cuda-arch with --emit=ir"
"$SPATC" "$T/two.spat" --cuda-arch=sm_7 -o "$T/bad.so" 2> "$T/err" && fail "--cuda-arch=sm_7 accepted"
grep -q "sm_7" "$T/err" || fail "--cuda-arch=sm_7: $(cat "$T/err")"
# With NVRTC the CUBIN goes into kernel.so; without, the error says why.
if "$SPATC" "$T/two.spat" --pattern a --head-dim 64 --cuda-arch=sm_80 -o "$T/cubin.so" 2> "$T/err"; then
    [ -s "$T/cubin.so" ] || fail "--cuda-arch wrote no kernel.so"
else
    grep -q "NVRTC\|CUDA support" "$T/err" || fail "--cuda-arch failed: $(cat "$T/err")"
fi

# Outputs are 0666 & ~umask (kernel.so, which the linker makes, 0777 &
# ~umask), not mkstemp's 0600.
(
    umask 027
    "$SPATC" "$PATS/window256.spat" --emit=ir -o "$T/mode.txt" || exit 1
    "$SPATC" "$PATS/window256.spat" --head-dim 64 -o "$T/mode.so" || exit 1
) || fail "spatc under umask 027"
mode_of() { stat -c %a "$1" 2>/dev/null || echo "?"; }
[ "$(mode_of "$T/mode.txt")" = 640 ] || fail "--emit=ir -o: mode $(mode_of "$T/mode.txt"), want 640 under umask 027"
[ "$(mode_of "$T/mode.so")" = 750 ] || fail "kernel.so: mode $(mode_of "$T/mode.so"), want 750 under umask 027"

if [ $fails -ne 0 ]; then
    echo "$fails failure(s)"
    exit 1
fi
echo "spatc: all checks passed"
