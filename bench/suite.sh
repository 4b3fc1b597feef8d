#!/bin/sh
# The CPU benchmark of DESIGN.md section 5: every suite pattern through
# spat-bench (JIT-compiled CPU kernel, checked against the reference, with
# OpenBLAS sgemm and the dense kernel measured in the same process), and with
# --flex PyTorch FlexAttention on the CPU (bench/flex_cpu.py, when torch is
# installed) at the same shape and threads, in the same run. Writes a
# markdown table.
#
#   bench/suite.sh [-n N] [-d D] [-H H] [-t THREADS] [-r REPS] [--flex] [-o TABLE.md]
#
# Run from the build directory (it uses ./bench/spat-bench, or $SPAT_BENCH);
# patterns come from $SPAT_SRCDIR/patterns (default: next to this script).
set -eu
N=16384 D=64 H=16 T=2 R=5 FLEX=0 OUT=
here=$(cd "$(dirname "$0")" && pwd)
SRC=${SPAT_SRCDIR:-$here/..}
BENCH=${SPAT_BENCH:-./bench/spat-bench}
while [ $# -gt 0 ]; do
    case $1 in
    -n) N=$2; shift 2 ;;
    -d) D=$2; shift 2 ;;
    -H) H=$2; shift 2 ;;
    -t) T=$2; shift 2 ;;
    -r) R=$2; shift 2 ;;
    --flex) FLEX=1; shift ;;
    -o) OUT=$2; shift 2 ;;
    *) echo "usage: $0 [-n N] [-d D] [-H H] [-t THREADS] [-r REPS] [--flex] [-o TABLE.md]" >&2; exit 2 ;;
    esac
done
[ -x "$BENCH" ] || { echo "suite.sh: no $BENCH (build with LLVM and OpenBLAS, run from the build directory)" >&2; exit 1; }
PATS="dense causal window256 causal_window1024 longformer bigbird dilated4 strided128 fixed128"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/spat-suite.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
for p in $PATS; do
    echo "suite.sh: $p" >&2
    # The dense kernel is measured once, with the dense pattern itself.
    extra=--no-dense
    [ "$p" = dense ] && extra=
    "$BENCH" "$SRC/patterns/$p.spat" -n "$N" -d "$D" -H "$H" --threads "$T" --reps "$R" --json $extra \
        >> "$tmp/spat.json"
done
if [ $FLEX = 1 ]; then
    echo "suite.sh: FlexAttention (torch)" >&2
    python3 "$here/flex_cpu.py" --n "$N" --d "$D" --heads "$H" --threads "$T" --reps 3 \
        2>"$tmp/flex.err" | grep '^{' > "$tmp/flex.json" || {
        echo "suite.sh: no FlexAttention column: $(tail -1 "$tmp/flex.err")" >&2; : > "$tmp/flex.json"; }
fi
table() {
    python3 - "$tmp/spat.json" "$tmp/flex.json" "$N" "$D" "$H" "$T" <<'PY'
import json, sys
spat = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
try:
    flex = {r["pattern"]: r for r in (json.loads(l) for l in open(sys.argv[2]) if l.strip())}
except FileNotFoundError:
    flex = {}
N, D, H, T = sys.argv[3:7]
dense = next((r for r in spat if r["pattern"] == "dense"), None)
print(f"N = {N}, d = {D}, H = {H}, batch 1, fp32, {T} threads. Useful GFLOP/s = 4 * d * pairs / time "
      "(pairs actually attended); sgemm = OpenBLAS 2048^3 in the same process; times are medians.\n")
cols = ["pattern", "pairs/head", "spat ms", "useful GFLOP/s", "sgemm GFLOP/s", "spat/sgemm", "rel. err"]
if flex:
    cols += ["Flex ms", "Flex GFLOP/s", "spat/Flex"]
print("| " + " | ".join(cols) + " |")
print("|" + "---|" * len(cols))
for r in spat:
    row = [r["pattern"], f'{r["pairs"] // int(H):,}', f'{r["ms"]:.2f}', f'{r["useful_gflops"]:.1f}',
           f'{r["sgemm_gflops"]:.1f}', f'{r["ratio_sgemm"]:.2f}', f'{r["relerr"]:.1e}']
    if flex:
        f = flex.get(r["pattern"])
        row += [f'{f["ms"]:.1f}', f'{f["useful_gflops"]:.1f}', f'{f["ms"] / r["ms"]:.1f}x'] if f else ["-"] * 3
    print("| " + " | ".join(row) + " |")
if dense:
    print(f'\nDense kernel at this shape: {dense["dense_ms"]:.1f} ms, {dense["dense_gflops"]:.1f} GFLOP/s '
          f'({dense["dense_gflops"] / dense["sgemm_gflops"]:.2f} of sgemm). JIT compile times (ms): ' +
          ", ".join(f'{r["pattern"]} {r["compile_ms"]:.0f}' for r in spat) + ".")
if flex:
    v = next(iter(flex.values()))
    print(f'\nFlexAttention: torch {v["torch"]}, torch.compile(flex_attention) on the CPU, {v["threads"]} threads.')
PY
}
if [ -n "$OUT" ]; then table > "$OUT"; cat "$OUT"; else table; fi
