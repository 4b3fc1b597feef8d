#!/bin/sh
# The CPU benchmark of DESIGN.md section 5: every suite pattern through
# spat-bench (JIT-compiled CPU kernel, checked against the reference, with
# OpenBLAS sgemm and the dense kernel measured in the same process), and with
# --flex PyTorch FlexAttention on the CPU (bench/flex_cpu.py, when torch is
# installed) at the same shape and threads, in the same run. Writes a
# markdown table.
#
# With --backward spat-bench also times the backward (spat_backward on the
# forward's O and LSE, backend -b: auto, cpu or reference), and a second
# table follows the first: the backward's time, useful GFLOP/s
# (10 * d * pairs), its rate against the forward's, its peak memory and its
# worst per-row error against the reference backward; with --sdpa, PyTorch
# SDPA's CPU backward (bench/sdpa_cpu_bwd.py) at the same shape and threads,
# in the same run, beside it.
#
#   bench/suite.sh [-n N] [-d D] [-H H] [-t THREADS] [-r REPS] [--flex]
#                  [--backward [-b auto|cpu|reference] [--sdpa]] [-o TABLE.md]
#
# Run from the build directory (it uses ./bench/spat-bench, or $SPAT_BENCH);
# patterns come from $SPAT_SRCDIR/patterns (default: next to this script).
set -eu
N=16384 D=64 H=16 T=2 R=5 FLEX=0 BWD=0 BACKEND=auto SDPA=0 OUT= FAILED=0
here=$(cd "$(dirname "$0")" && pwd)
SRC=${SPAT_SRCDIR:-$here/..}
BENCH=${SPAT_BENCH:-./bench/spat-bench}
SPATC=${SPATC:-./spatc}
usage="usage: $0 [-n N] [-d D] [-H H] [-t THREADS] [-r REPS] [--flex] [--backward [-b auto|cpu|reference] [--sdpa]] [-o TABLE.md]"
while [ $# -gt 0 ]; do
    case $1 in
    -n) N=$2; shift 2 ;;
    -d) D=$2; shift 2 ;;
    -H) H=$2; shift 2 ;;
    -t) T=$2; shift 2 ;;
    -r) R=$2; shift 2 ;;
    --flex) FLEX=1; shift ;;
    --backward) BWD=1; shift ;;
    -b) BACKEND=$2; shift 2 ;;
    --sdpa) SDPA=1; shift ;;
    -o) OUT=$2; shift 2 ;;
    *) echo "$usage" >&2; exit 2 ;;
    esac
done
case $BACKEND in auto|cpu|reference) ;; *) echo "$usage" >&2; exit 2 ;; esac
[ $SDPA = 0 ] || [ $BWD = 1 ] || { echo "suite.sh: --sdpa is the backward's peer: give --backward too" >&2; exit 2; }
[ -x "$BENCH" ] || { echo "suite.sh: no $BENCH (build with LLVM and OpenBLAS, run from the build directory)" >&2; exit 1; }
# The suite, then the other families of patterns/ (flex_masks.py FAMILIES); those with a rule per
# head of 16 (PER_HEAD there) need H a multiple of 16.
PATS="dense causal window256 causal_window1024 longformer bigbird dilated4 strided128 fixed128 logsparse"
if [ $((H % 16)) = 0 ]; then PATS="$PATS longformer_dilated longnet"
else echo "suite.sh: H = $H: longformer_dilated and longnet (a rule per head of 16) left out" >&2; fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/spat-suite.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
for p in $PATS; do
    echo "suite.sh: $p" >&2
    # The dense kernel is measured once, with the dense pattern itself.
    extra=--no-dense
    [ "$p" = dense ] && extra=
    if [ $BWD = 1 ]; then extra="$extra --backward --backend $BACKEND"; fi
    # Exit 3: a check failed; the row is written and the table shows its
    # error, and the suite exits 3 at the end.
    rc=0
    "$BENCH" "$SRC/patterns/$p.spat" -n "$N" -d "$D" -H "$H" --threads "$T" --reps "$R" --json $extra \
        >> "$tmp/spat.json" || rc=$?
    case $rc in
    0) ;;
    3) echo "suite.sh: $p: a check against the reference failed (see its error column)" >&2; FAILED=3 ;;
    *) exit $rc ;;
    esac
done
if [ $FLEX = 1 ]; then
    echo "suite.sh: FlexAttention (torch)" >&2
    python3 "$here/flex_cpu.py" --n "$N" --d "$D" --heads "$H" --threads "$T" --reps 3 \
        2>"$tmp/flex.err" | grep '^{' > "$tmp/flex.json" || {
        echo "suite.sh: no FlexAttention column: $(tail -1 "$tmp/flex.err")" >&2; : > "$tmp/flex.json"; }
fi
: > "$tmp/sdpa.json"
if [ $SDPA = 1 ]; then
    echo "suite.sh: SDPA backward (torch)" >&2
    python3 "$here/sdpa_cpu_bwd.py" --n "$N" --d "$D" --heads "$H" --threads "$T" --reps 3 \
        2>"$tmp/sdpa.err" | grep '^{' > "$tmp/sdpa.json" || :
    if [ -s "$tmp/sdpa.err" ]; then echo "suite.sh: SDPA: $(tail -1 "$tmp/sdpa.err")" >&2; fi
fi
# The machine, for the backward table's header: lscpu's model name and the
# vector level of the CPU code spat generates here (the widest registers in
# spatc --emit=asm for the host: zmm AVX-512, ymm AVX2, else SSE).
MODEL=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)
FAMILY=$(lscpu 2>/dev/null | sed -n 's/^CPU family: *//p' | head -1)
CPUMODEL=$(lscpu 2>/dev/null | sed -n 's/^Model: *//p' | head -1)
ISA=unknown
if [ $BWD = 1 ] && [ -x "$SPATC" ] && "$SPATC" "$SRC/patterns/dense.spat" --emit=asm --head-dim "$D" -o "$tmp/dense.s" 2>/dev/null; then
    if grep -q '%zmm' "$tmp/dense.s"; then ISA=AVX-512
    elif grep -q '%ymm' "$tmp/dense.s"; then ISA=AVX2
    else ISA=SSE; fi
fi
table() {
    python3 - "$tmp/spat.json" "$tmp/flex.json" "$N" "$D" "$H" "$T" "$tmp/sdpa.json" "$BWD" \
        "${MODEL:-unknown} (family ${FAMILY:-?}, model ${CPUMODEL:-?}), $(nproc) cores" "$ISA" <<'PY'
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
if sys.argv[8] != "1":
    sys.exit(0)
# The backward table.
sdpa = {r["pattern"]: r for r in (json.loads(l) for l in open(sys.argv[7]) if l.strip())}
machine, isa = sys.argv[9], sys.argv[10]
ran = sorted({r.get("bwd_backend", "?") for r in spat})
how = {"cpu": f"spat's CPU backend ({isa})", "reference": "the reference backend (portable C, double accumulation)"}
def num(v, fmt):
    return "n/a" if v is None else format(v, fmt)
print(f"\n### Backward\n\nMachine: {machine}; spat's CPU code: {isa}; backward: " +
      ", ".join(how.get(b, b) for b in ran) + f". N = {N}, d = {D}, H = {H}, batch 1, fp32, {T} threads. "
      "Useful GFLOP/s = 10 * d * pairs / time (2.5 times the forward's 4 * d * pairs); times are medians.\n")
cols = ["pattern", "pairs/head", "spat fwd ms", "spat bwd ms", "bwd useful GFLOP/s", "bwd/fwd rate (target >= 0.60)"]
if sdpa:
    cols += ["SDPA bwd ms", "SDPA useful GFLOP/s", "speedup over SDPA"]
cols += ["spat bwd peak MiB"] + (["SDPA bwd peak MiB"] if sdpa else []) + ["worst row rel. err"]
print("| " + " | ".join(cols) + " |")
print("|" + "---|" * len(cols))
for r in spat:
    rate = r["bwd_over_fwd"]
    row = [r["pattern"], f'{r["pairs"] // int(H):,}', f'{r["ms"]:.2f}', f'{r["bwd_ms"]:.2f}',
           f'{r["bwd_gflops"]:.1f}', f'{rate:.2f}' if rate >= 0.60 else f'**{rate:.2f}**']
    s = sdpa.get(r["pattern"])
    if sdpa:
        row += [f'{s["ms"]:.1f}', f'{s["useful_gflops"]:.1f}', f'{s["ms"] / r["bwd_ms"]:.2f}x'] if s else ["-"] * 3
    row += [num(r.get("bwd_peak_mib"), ".1f")]
    if sdpa:
        row += [f'{s["peak_mib"]:.1f}' if s else "-"]
    row += [num(r.get("bwd_err"), ".1e")]
    print("| " + " | ".join(row) + " |")
print("\nspat bwd peak: resident memory the first spat_backward call added at its peak (VmHWM after "
      "resetting it through /proc/self/clear_refs, minus VmRSS before), without dQ, dK and dV, which the "
      "caller passes in. Worst row rel. err: max over rows of max|err| / max|ref| of the row, against the "
      "reference backward: dQ of three blocks of 32 rows of every head (the reference on those rows), "
      f"and dQ, dK, dV of a full call at N = {spat[0].get('bwd_check_n', min(int(N), 512)) if spat else '?'}. "
      "Bold: below the 0.60 target.")
if sdpa:
    v = next(iter(sdpa.values()))
    print(f'\nSDPA: torch {v["torch"]}, F.scaled_dot_product_attention on the CPU ({v["kernel"]} kernel), '
          f'{v["threads"]} threads, backward by torch.autograd.grad with a fixed dO, run by bench/sdpa_cpu_bwd.py '
          'in the same suite.sh invocation, a fresh process per pattern: causal with is_causal=True, dense plain, '
          "the others with a boolean [N, N] attn_mask from bench/flex_masks.py (bigbird's random blocks are "
          "that file's torch table, not spat's: compare it per useful FLOP). SDPA bwd peak: the same measure "
          f'at its second call (the first adds torch\'s one-time set-up), and it includes the {v["grads_mib"]:.1f} MiB '
          "of dQ, dK and dV that torch allocates in the call.")
PY
}
if [ -n "$OUT" ]; then table > "$OUT"; cat "$OUT"; else table; fi
exit $FAILED
