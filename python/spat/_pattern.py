"""Patterns: spat.compile and what a Pattern shows of itself."""
from __future__ import annotations

import ctypes as C
import itertools
import json
import os
import threading
from typing import Any, Dict, Optional, Sequence, Tuple, Union

from . import _lib

PathLike = Union[str, "os.PathLike[str]"]

# Patterns by handle: the custom ops take the handle (an int) since a
# torch.library op cannot take a Python object. Memoised patterns live as
# long as the process, so the table never holds a dead one.
_registry: Dict[int, "Pattern"] = {}
_memo: Dict[Tuple[str, str, Optional[str], Optional[Tuple[int, ...]]], "Pattern"] = {}
_lock = threading.Lock()
_handles = itertools.count(1)


class _Kernel:
    """One spat_kernel*, freed with its owner."""

    __slots__ = ("ptr", "head_dims")

    def __init__(self, source: bytes, name: Optional[str], filename: str, head_dims: Optional[Sequence[int]]):
        self.ptr: Optional[int] = None
        L = _lib.lib()
        opts = _lib.CompileOptions()
        if head_dims is not None:
            dims = (C.c_int * len(head_dims))(*head_dims)
            opts.head_dims, opts.n_head_dims = dims, len(head_dims)
        opts.filename = filename.encode()
        ptr = C.c_void_p()
        _lib.check(L.spat_compile(source, name.encode() if name else None, C.byref(opts), C.byref(ptr)),
                   "spat_compile")
        self.ptr = ptr.value
        d = C.POINTER(C.c_int)()
        n = L.spat_kernel_head_dims(self.ptr, C.byref(d))
        self.head_dims = tuple(d[i] for i in range(n))

    def __del__(self) -> None:
        if self.ptr and _lib._lib is not None:
            _lib._lib.spat_kernel_free(self.ptr)
            self.ptr = None


class Pattern:
    """A pattern compiled by libspat (make one with :func:`spat.compile`).

    With ``head_dims=None`` the pattern serves any head dimension libspat
    supports: it starts with libspat's default kernel (64 and 128) and
    compiles one more kernel the first time another dimension is asked for.
    With explicit ``head_dims`` only those are built, and another raises
    :class:`spat.SpatError` (SPAT_EHEADDIM) from libspat.
    """

    def __init__(self, source: str, name: Optional[str], filename: str, head_dims: Optional[Tuple[int, ...]]):
        self.source = source
        self.filename = filename
        self._src = source.encode()
        self._fixed = head_dims
        k = _Kernel(self._src, name, filename, head_dims)
        self._kernels: Dict[int, _Kernel] = {d: k for d in k.head_dims}
        self._first = k
        L = _lib.lib()
        self.name: str = L.spat_kernel_name(k.ptr).decode()
        self.heads: int = int(L.spat_kernel_heads(k.ptr))
        self.handle: int = next(_handles)
        with _lock:
            _registry[self.handle] = self

    # -- kernels ------------------------------------------------------------

    @property
    def head_dims(self) -> Tuple[int, ...]:
        """The head dims compiled so far."""
        return tuple(sorted(self._kernels))

    def kernel(self, head_dim: int) -> int:
        """The spat_kernel* (an address) that runs head_dim."""
        k = self._kernels.get(head_dim)
        if k is not None:
            return k.ptr
        if self._fixed is not None or not (8 <= head_dim <= 256 and head_dim % 8 == 0):
            return self._first.ptr  # libspat says what is wrong with this head dim
        with _lock:
            k = self._kernels.get(head_dim)
            if k is None:
                k = _Kernel(self._src, self.name, self.filename, (head_dim,))
                self._kernels[head_dim] = k
        return k.ptr

    # -- what it looks like -------------------------------------------------

    def pairs(self, n: int, head: Optional[int] = None) -> int:
        """Attended pairs at sequence length n: of one head, or (head=None)
        summed over the pattern's heads (one head for a pattern without head
        groups). A forward pass does 4 * head_dim * pairs useful FLOPs."""
        heads = [head] if head is not None else range(max(self.heads, 1))
        total = 0
        for h in heads:
            p = C.c_int64()
            _lib.check(_lib.lib().spat_kernel_pairs(self._first.ptr, n, h, C.byref(p)), "spat_kernel_pairs")
            total += p.value
        return total

    def stats(self, n: int, heads: Optional[int] = None, head_dim: Optional[int] = None,
              layers: bool = True) -> Dict[str, Any]:
        """What ``spatc --emit=stats --seq-len n`` prints for this pattern, as
        a dict: pairs per head and in all, density, block density, FLOPs,
        bytes, layers_to_connect (layers=False skips it: it costs
        O(n^2 layers / 512))."""
        f = _lib.need("spat_kernel_stats")
        out = C.c_void_p()
        _lib.check(f(self._first.ptr, n, heads or 0, head_dim or 0, 0 if layers else _lib.STATS_NO_LAYERS,
                     C.byref(out)), "spat_kernel_stats")
        try:
            text = C.string_at(out.value).decode()
        finally:
            _lib.lib().spat_free(out)
        return json.loads(text)

    def mask(self, n: int, head: int = 0, q_offset: int = 0, seq_q: Optional[int] = None):
        """The attended pairs of a head at length n as a bool tensor [n, n]
        (row i: query position i, column j: key j). With q_offset / seq_q:
        the rows q_offset .. q_offset + seq_q - 1 of it, as a forward with
        that offset sees them."""
        import torch

        f = _lib.need("spat_kernel_mask")
        m = torch.empty((n, n), dtype=torch.uint8)
        _lib.check(f(self._first.ptr, n, head, m.data_ptr()), "spat_kernel_mask")
        m = m.view(torch.bool)
        if q_offset or seq_q is not None:
            m = m[q_offset:q_offset + (seq_q if seq_q is not None else n - q_offset)]
        return m

    def png(self, n: int = 512, head: int = 0, size: int = 0) -> bytes:
        """The PNG that ``spatc --emit=mask --seq-len n`` draws (size x size
        pixels; 0: min(n, 1024))."""
        f = _lib.need("spat_kernel_mask_png")
        out, ln = C.c_void_p(), C.c_size_t()
        _lib.check(f(self._first.ptr, n, head, size, C.byref(out), C.byref(ln)), "spat_kernel_mask_png")
        try:
            return C.string_at(out.value, ln.value)
        finally:
            _lib.lib().spat_free(out)

    def show(self, n: int = 512, head: int = 0, size: int = 0) -> "MaskImage":
        """A picture of the pattern for notebooks (it has _repr_png_; .save(path)
        writes the file)."""
        return MaskImage(self.png(n, head, size), f"{self.name} head {head} n={n}")

    def _repr_png_(self) -> bytes:
        return self.png(512, 0, 256)

    def __repr__(self) -> str:
        heads = f"{self.heads} heads" if self.heads else "any heads"
        return f"<spat.Pattern '{self.name}' ({heads}, head dims {list(self.head_dims)})>"


class MaskImage:
    def __init__(self, data: bytes, title: str):
        self.data = data
        self.title = title

    def _repr_png_(self) -> bytes:
        return self.data

    def save(self, path: PathLike) -> None:
        with open(path, "wb") as f:
            f.write(self.data)

    def __repr__(self) -> str:
        return f"<spat mask picture: {self.title}, {len(self.data)} bytes of PNG>"


def _read_source(source_or_path: Union[PathLike, "Pattern"]) -> Tuple[str, str]:
    if isinstance(source_or_path, os.PathLike):
        path = os.fspath(source_or_path)
    elif isinstance(source_or_path, str):
        s = source_or_path
        # Pattern text always has a '{'; a path never needs one.
        if "{" in s or "\n" in s:
            return s, "<string>"
        path = s
    else:
        raise TypeError(f"spat.compile: expected pattern text or a path, got {type(source_or_path).__name__}")
    with open(path, encoding="utf-8") as f:
        return f.read(), path


def compile(source_or_path: Union[PathLike, Pattern], head_dims: Optional[Sequence[int]] = None,
            name: Optional[str] = None) -> Pattern:
    """Compiles a pattern: .spat text, or the path of a .spat file (a str
    without '{', or an os.PathLike). ``name`` picks a pattern of a source
    that holds several. Memoised per (source, name, head dims) for the life
    of the process. Raises :class:`spat.SpatError` with libspat's message
    (a syntax error as file:line:col: error: ...)."""
    if isinstance(source_or_path, Pattern):
        return source_or_path
    text, filename = _read_source(source_or_path)
    dims = tuple(sorted(set(int(d) for d in head_dims))) if head_dims is not None else None
    key = (text, filename, name, dims)
    with _lock:
        p = _memo.get(key)
    if p is None:
        p = Pattern(text, name, filename, dims)
        with _lock:
            p = _memo.setdefault(key, p)
    return p


def lookup(handle: int) -> Pattern:
    p = _registry.get(handle)
    if p is None:
        raise ValueError(f"spat: no pattern with handle {handle}")
    return p
