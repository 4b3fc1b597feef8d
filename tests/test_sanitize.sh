#!/bin/sh
# The unit tests built with -fsanitize=address,undefined (tests/sanitize.mk),
# one after another: any report of AddressSanitizer or UBSan fails the test
# that made it (UBSan halts on the first; Check runs each test in a child
# and counts its exit as a failure). Check's timeouts are stretched for the
# sanitizers' slowdown.
set -u
cd "${SPAT_BUILDDIR:-.}" || exit 99
[ -n "${SPAT_SAN_TESTS:-}" ] || { echo "no sanitizer tests configured"; exit 77; }
ASAN_OPTIONS="abort_on_error=0:detect_stack_use_after_return=1:strict_string_checks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
CK_TIMEOUT_MULTIPLIER=${CK_TIMEOUT_MULTIPLIER:-4}
export ASAN_OPTIONS UBSAN_OPTIONS CK_TIMEOUT_MULTIPLIER
fails=0
for t in $SPAT_SAN_TESTS; do
    start=$(date +%s)
    if "./$t" > "$t.out" 2>&1; then
        status=ok
    else
        status=FAILED
        fails=$((fails + 1))
        tail -n 60 "$t.out"
    fi
    echo "$t: $status ($(($(date +%s) - start)) s)"
done
[ $fails -eq 0 ] || { echo "$fails sanitizer test(s) failed"; exit 1; }
echo "sanitizers: all tests passed"
