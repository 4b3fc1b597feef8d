"""Finds the package and libspat of this source tree when run from it.

`make check` (tests/test_python.sh) sets SPAT_LIBRARY, SPAT_BUILDDIR and
PYTHONPATH itself; run by hand (`python3 -m pytest python/tests` at the top
of a built tree) the defaults below do the same.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))

if os.path.join(TOP, "python") not in sys.path:
    sys.path.insert(0, os.path.join(TOP, "python"))
os.environ.setdefault("SPAT_BUILDDIR", TOP)
os.environ.setdefault("SPAT_SRCDIR", TOP)
_built = os.path.join(os.environ["SPAT_BUILDDIR"], ".libs", "libspat.so")
if os.path.exists(_built):
    os.environ.setdefault("SPAT_LIBRARY", _built)
