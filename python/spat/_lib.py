"""libspat through ctypes: finding the library, its structs and signatures.

The structs mirror include/spat.h field for field (ctypes lays them out by
the same C rules); nothing here knows torch.
"""
from __future__ import annotations

import ctypes as C
import ctypes.util
import os
from typing import Optional

SONAME = "libspat.so.0"

# spat_status
OK, ESYNTAX, EINVAL, ENOPATTERN, EHEADDIM, EDTYPE, EOVERLAP, EDEVICE = range(8)
# spat_dtype, spat_device, spat_backend
F32, F16, BF16 = 0, 1, 2
DEVICE_CPU, DEVICE_CUDA = 0, 1
BACKENDS = {"auto": 0, "reference": 1, "cpu": 2, "cuda": 3}
STATS_NO_LAYERS = 1


class SpatError(RuntimeError):
    """A libspat call failed. ``status`` is the spat_status code, ``message``
    the text of spat_last_error() (for a pattern that does not compile, every
    diagnostic as file:line:col: error: ...)."""

    def __init__(self, status: int, message: str, call: str = ""):
        self.status = status
        self.message = message
        self.call = call
        super().__init__(f"{call}: {message}" if call else message)


class CompileOptions(C.Structure):
    _fields_ = [("head_dims", C.POINTER(C.c_int)), ("n_head_dims", C.c_int),
                ("cpu", C.c_char_p), ("cpu_features", C.c_char_p), ("filename", C.c_char_p)]


_SHAPE = [("batch", C.c_int64), ("heads_q", C.c_int64), ("heads_kv", C.c_int64),
          ("seq_q", C.c_int64), ("seq_k", C.c_int64), ("head_dim", C.c_int64),
          ("dtype", C.c_int), ("device", C.c_int), ("backend", C.c_int)]
_S4 = C.c_int64 * 4
_S3 = C.c_int64 * 3


class ForwardArgs(C.Structure):
    _fields_ = _SHAPE + [
        ("q", C.c_void_p), ("k", C.c_void_p), ("v", C.c_void_p), ("o", C.c_void_p), ("lse", C.c_void_p),
        ("q_stride", _S4), ("k_stride", _S4), ("v_stride", _S4), ("o_stride", _S4), ("lse_stride", _S3),
        ("seqlens_q", C.c_void_p), ("seqlens_k", C.c_void_p),
        ("q_offset", C.c_int64), ("q_offsets", C.c_void_p),
        ("scale", C.c_float), ("threads", C.c_int), ("stream", C.c_void_p)]


class BackwardArgs(C.Structure):
    _fields_ = _SHAPE + [
        ("q", C.c_void_p), ("k", C.c_void_p), ("v", C.c_void_p), ("o", C.c_void_p), ("dout", C.c_void_p),
        ("lse", C.c_void_p), ("dq", C.c_void_p), ("dk", C.c_void_p), ("dv", C.c_void_p),
        ("q_stride", _S4), ("k_stride", _S4), ("v_stride", _S4), ("o_stride", _S4), ("dout_stride", _S4),
        ("dq_stride", _S4), ("dk_stride", _S4), ("dv_stride", _S4), ("lse_stride", _S3),
        ("seqlens_q", C.c_void_p), ("seqlens_k", C.c_void_p),
        ("q_offset", C.c_int64), ("q_offsets", C.c_void_p),
        ("scale", C.c_float), ("deterministic", C.c_int), ("threads", C.c_int), ("stream", C.c_void_p)]


def _configured_libdir() -> Optional[str]:
    try:
        from . import _config  # written by `make` from _config.py.in
    except ImportError:
        return None
    d = getattr(_config, "LIBDIR", "")
    return d if d and "@" not in d else None


def _candidates() -> list[tuple[str, str]]:
    """(how it was found, path or name) in the order they are tried."""
    out = []
    env = os.environ.get("SPAT_LIBRARY")
    if env:
        out.append(("$SPAT_LIBRARY", env))
    libdir = _configured_libdir()
    if libdir:
        out.append(("the libdir recorded at configure time", os.path.join(libdir, SONAME)))
    out.append(("the system loader", ctypes.util.find_library("spat") or SONAME))
    return out


def _load() -> tuple[C.CDLL, str]:
    tried = []
    env = os.environ.get("SPAT_LIBRARY")
    for how, path in _candidates():
        try:
            return C.CDLL(path), path
        except OSError as e:
            tried.append(f"  {how}: {path}: {e}")
            if how == "$SPAT_LIBRARY":
                # An explicit choice that fails is an error, not a hint to
                # quietly load another libspat.
                break
    libdir = _configured_libdir()
    raise OSError(
        "spat: cannot load libspat. Looked, in order, at\n"
        f"  1. $SPAT_LIBRARY ({env if env else 'not set'})\n"
        f"  2. the libdir recorded when libspat was configured ({libdir or 'none: spat/_config.py not generated'})\n"
        f"  3. the system loader ({SONAME}: LD_LIBRARY_PATH, ldconfig's cache)\n"
        "Tried:\n" + "\n".join(tried) + "\n"
        "Install libspat (make install), or set SPAT_LIBRARY to the path of libspat.so.")


def _declare(L: C.CDLL) -> None:
    p, i64, i = C.c_void_p, C.c_int64, C.c_int
    sigs = {
        "spat_strerror": (C.c_char_p, [i]),
        "spat_last_error": (C.c_char_p, []),
        "spat_compile": (i, [C.c_char_p, C.c_char_p, C.POINTER(CompileOptions), C.POINTER(p)]),
        "spat_kernel_free": (None, [p]),
        "spat_kernel_name": (C.c_char_p, [p]),
        "spat_kernel_heads": (i64, [p]),
        "spat_kernel_head_dims": (i, [p, C.POINTER(C.POINTER(C.c_int))]),
        "spat_kernel_pairs": (i, [p, i64, i64, C.POINTER(i64)]),
        "spat_kernel_stats": (i, [p, i64, i64, i64, C.c_uint, C.POINTER(C.c_void_p)]),
        "spat_kernel_mask": (i, [p, i64, i64, p]),
        "spat_kernel_mask_png": (i, [p, i64, i64, i, C.POINTER(C.c_void_p), C.POINTER(C.c_size_t)]),
        "spat_free": (None, [p]),
        "spat_forward_args_init": (None, [C.POINTER(ForwardArgs)] + [i64] * 6),
        "spat_forward": (i, [p, C.POINTER(ForwardArgs)]),
        "spat_backward_args_init": (None, [C.POINTER(BackwardArgs)] + [i64] * 6),
        "spat_backward": (i, [p, C.POINTER(BackwardArgs)]),
    }
    for name, (res, args) in sigs.items():
        try:
            f = getattr(L, name)
        except AttributeError:
            if name in ("spat_kernel_stats", "spat_kernel_mask", "spat_kernel_mask_png", "spat_free"):
                continue  # an older libspat: Pattern.stats/mask/show say so when called
            raise
        f.restype, f.argtypes = res, args


_lib: Optional[C.CDLL] = None
_path: Optional[str] = None


def lib() -> C.CDLL:
    """The loaded libspat (loaded on first use)."""
    global _lib, _path
    if _lib is None:
        L, path = _load()
        _declare(L)
        _lib, _path = L, path
    return _lib


def library_path() -> str:
    """Where libspat was loaded from."""
    lib()
    assert _path is not None
    return _path


def last_error() -> str:
    return (lib().spat_last_error() or b"").decode("utf-8", "replace")


def check(rc: int, call: str) -> None:
    if rc != OK:
        msg = last_error()
        if not msg:
            msg = lib().spat_strerror(rc).decode()
        raise SpatError(rc, msg, call)


def need(name: str) -> C._CFuncPtr:  # type: ignore[name-defined]
    f = getattr(lib(), name, None)
    if f is None or f.argtypes is None:
        raise SpatError(EINVAL, f"{library_path()} has no {name}: it is older than this package; "
                        "rebuild and reinstall libspat", name)
    return f
