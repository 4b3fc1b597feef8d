#!/bin/sh
# The spat Python package's tests (python/tests, pytest) against the libspat
# of this build. They need torch and pytest (sh .ci/deps installs them).
# Without them this test is SKIPPED on a developer's machine, saying so; in
# CI (CI set, as .ci/run runs) or with SPAT_REQUIRE_PYTHON=1 it FAILS instead,
# so that a broken install never passes as a skip.
PY=${PYTHON:-python3}
[ "$PY" = no ] && PY=python3
SRC=${SPAT_SRCDIR:-.}
BUILD=${SPAT_BUILDDIR:-.}
if ! missing=$("$PY" -c 'import torch, pytest' 2>&1); then
    echo "spat Python tests: $PY cannot import torch and pytest:"
    echo "$missing" | tail -n 1
    if [ -n "${CI:-}" ] || [ "${SPAT_REQUIRE_PYTHON:-}" = 1 ]; then
        echo "FAIL: CI needs them (sh .ci/deps installs them)"
        exit 1
    fi
    echo "SKIP: install them (sh .ci/deps) to run the Python tests"
    exit 77
fi
SPAT_LIBRARY=${SPAT_LIBRARY:-$BUILD/.libs/libspat.so}
PYTHONPATH=$SRC/python${PYTHONPATH:+:$PYTHONPATH}
PYTHONDONTWRITEBYTECODE=1
export SPAT_LIBRARY PYTHONPATH PYTHONDONTWRITEBYTECODE
exec "$PY" -m pytest -q -p no:cacheprovider -W "ignore:Failed to initialize NumPy" -o console_output_style=classic \
    -r s "$SRC/python/tests"
