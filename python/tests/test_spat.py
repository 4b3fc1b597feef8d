"""The spat package on the CPU: patterns, forward and gradients against a
dense masked float64 reference, gradcheck, opcheck, torch.compile, layouts,
GQA, varlen, bad inputs. CUDA tests are in test_cuda.py."""
import json
import os
import pathlib
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import spat
import reference as ref

SRC = os.environ.get("SPAT_SRCDIR", ".")
BUILD = os.environ.get("SPAT_BUILDDIR", ".")

PATTERNS = {
    "window": "pattern window { window 5; }",
    "longformer": "pattern longformer { window 4; global 0, 9; }",
    "strided": "pattern strided { causal; window -3..+0; stride 4; }",
    "bigbird": "pattern bigbird { block 8; window 1 blocks; global first 1 blocks; random 1 blocks seed 3; }",
    "heads": "pattern heads { global 0; heads 0..1 { window 3; } heads 2..3 { causal; stride 5; } }",
    "lastcols": "pattern lastcols { window -2..+0; global cols last 3; }",
}


def rand(*shape, dtype=torch.float32, grad=False, seed=0):
    g = torch.Generator().manual_seed(seed + sum(shape))
    t = torch.randn(*shape, generator=g, dtype=torch.float32).to(dtype)
    return t.requires_grad_(grad)


def qkv(B, Hq, Hkv, Nq, Nk, d, layout="bhsd", dtype=torch.float32, grad=True):
    if layout == "bhsd":
        shapes = [(B, Hq, Nq, d), (B, Hkv, Nk, d), (B, Hkv, Nk, d)]
    else:
        shapes = [(B, Nq, Hq, d), (B, Nk, Hkv, d), (B, Nk, Hkv, d)]
    return [rand(*s, dtype=dtype, grad=grad, seed=i) for i, s in enumerate(shapes)]


def grads(o, inputs, seed=7):
    do = rand(*o.shape, seed=seed).to(o.dtype)
    return torch.autograd.grad(o, inputs, do)


# ---------------------------------------------------------------- patterns

def test_library_found():
    assert os.path.exists(spat.library_path())


def test_library_not_found_names_all_three(tmp_path):
    code = "import spat\ntry:\n    spat.compile('pattern w { window 1; }')\nexcept OSError as e:\n    print(e)\n"
    pkg = os.path.dirname(os.path.dirname(spat.__file__))
    env = dict(os.environ, SPAT_LIBRARY=str(tmp_path / "nowhere" / "libspat.so"), PYTHONPATH=pkg)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         cwd=str(tmp_path)).stdout + "(stderr omitted)"
    assert "$SPAT_LIBRARY" in out and "configured" in out and "system loader" in out, out
    assert "nowhere" in out


def test_compile_is_memoised():
    a = spat.compile(PATTERNS["window"])
    assert spat.compile(PATTERNS["window"]) is a
    assert spat.compile(PATTERNS["window"], head_dims=[32]) is not a
    assert spat.compile(PATTERNS["window"], head_dims=[32]) is spat.compile(PATTERNS["window"], head_dims=(32, 32))
    assert a.name == "window" and a.heads == 0 and a.head_dims == (64, 128)
    assert spat.compile(PATTERNS["heads"]).heads == 4


def test_compile_path_and_name(tmp_path):
    p = spat.compile(os.path.join(SRC, "patterns", "longformer.spat"))
    assert p.name == "longformer"
    assert spat.compile(pathlib.Path(SRC) / "patterns" / "longformer.spat") is p
    two = tmp_path / "two.spat"
    two.write_text("pattern a { window 1; }\npattern b { stride 2; }\n")
    assert spat.compile(str(two), name="b").name == "b"
    with pytest.raises(spat.SpatError, match="a, b"):
        spat.compile(str(two))


def test_compile_error_has_location(tmp_path):
    bad = tmp_path / "bad.spat"
    bad.write_text("pattern p {\n    window 256 dilation 0;\n    stirde 4;\n}\n")
    with pytest.raises(spat.SpatError) as e:
        spat.compile(str(bad))
    msg = str(e.value)
    assert f"{bad}:2:25: error: " in msg and f"{bad}:3:5: error: " in msg, msg
    assert e.value.status == 1  # SPAT_ESYNTAX
    with pytest.raises(spat.SpatError, match=r"<string>:1:13: error: unknown rule 'windw'"):
        spat.compile("pattern x { windw 3; }")
    with pytest.raises(FileNotFoundError):
        spat.compile(str(tmp_path / "missing.spat"))


def spatc(*args):
    return subprocess.run([os.path.join(BUILD, "spatc"), *args], check=True, capture_output=True).stdout


@pytest.mark.parametrize("name", ["longformer", "bigbird", "longnet", "fixed128"])
def test_stats_as_spatc(name):
    path = os.path.join(SRC, "patterns", name + ".spat")
    want = json.loads(spatc("--emit=stats", "--seq-len", "1000", path))["patterns"][0]
    assert spat.compile(path).stats(1000) == want
    want = json.loads(spatc("--emit=stats", "--seq-len", "300", "--no-layers", path))["patterns"][0]
    assert spat.compile(path).stats(300, layers=False) == want


def test_mask_pairs_png(tmp_path):
    p = spat.compile(PATTERNS["heads"])
    for h in range(4):
        m = p.mask(37, head=h)
        assert m.dtype == torch.bool and m.shape == (37, 37)
        assert int(m.sum()) == p.pairs(37, head=h)
    assert p.pairs(37) == sum(p.pairs(37, h) for h in range(4)) == p.stats(37)["pairs"]
    # The picture is spatc's, byte for byte.
    path = os.path.join(SRC, "patterns", "bigbird.spat")
    spatc("--emit=mask", "--seq-len", "700", "-o", str(tmp_path / "m.png"), path)
    pb = spat.compile(path)
    assert pb.png(700) == (tmp_path / "m.png").read_bytes()
    img = pb.show(300)
    assert img._repr_png_().startswith(b"\x89PNG") and pb._repr_png_().startswith(b"\x89PNG")
    img.save(tmp_path / "x.png")
    assert (tmp_path / "x.png").read_bytes() == img.data
    with pytest.raises(spat.SpatError, match="heads 0..3"):
        p.mask(8, head=4)


# ---------------------------------------------------------------- forward and backward

@pytest.mark.parametrize("name", list(PATTERNS))
@pytest.mark.parametrize("layout", ["bhsd", "bshd"])
def test_forward_backward_vs_reference(name, layout):
    pat = spat.compile(PATTERNS[name])
    H = 4
    N, d = 37, 16
    q, k, v = qkv(2, H, H, N, N, d, layout)
    o, lse = spat.attention(q, k, v, pat, layout=layout, return_lse=True)
    ro, rlse = ref.attention(q, k, v, pat, layout=layout)
    assert o.shape == q.shape and o.is_contiguous() and o.dtype == torch.float32
    torch.testing.assert_close(o.double(), ro, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(lse.double(), rlse, atol=2e-5, rtol=1e-5)
    assert not lse.requires_grad
    g = grads(o, (q, k, v))
    rg = grads(ro, (q, k, v))
    for a, b in zip(g, rg):
        torch.testing.assert_close(a.double(), b.double(), atol=1e-4, rtol=1e-3)


def test_scale_and_empty_rows():
    # Rows 0..2 of `global rows` style patterns can be empty: O = 0, LSE = -inf, no NaN anywhere.
    pat = spat.compile("pattern few { global rows 3..5; }")
    q, k, v = qkv(1, 2, 2, 9, 9, 8)
    o, lse = spat.attention(q, k, v, pat, scale=0.3, return_lse=True)
    ro, rlse = ref.attention(q, k, v, pat, scale=0.3)
    torch.testing.assert_close(o.double(), ro, atol=2e-5, rtol=1e-4)
    assert torch.isinf(lse[:, :, :3]).all() and (o[:, :, :3] == 0).all()
    dq, dk, dv = grads(o, (q, k, v))
    assert torch.isfinite(dq).all() and (dq[:, :, :3] == 0).all()


def test_noncontiguous_inputs():
    pat = spat.compile(PATTERNS["longformer"])
    base = rand(2, 40, 6, 3, 32, grad=False)
    # Q, K, V are strided views of one buffer (BSHD, every stride odd-sized), not copies.
    q = base[:, 1::2, 0:4, 0].detach().requires_grad_()
    kk = base[:, ::2, 4:6, 1]
    k = kk.detach().requires_grad_()
    v = base[:, 1::2, 4:6, 2].detach().requires_grad_()
    assert not q.is_contiguous() and not k.is_contiguous()
    qv = base[:, 1::2, 0:4, 0]
    assert q.data_ptr() == qv.data_ptr()
    o = spat.attention(q, k, v, pat, layout="bshd")
    ro, _ = ref.attention(q, k, v, pat, layout="bshd")
    torch.testing.assert_close(o.double(), ro, atol=2e-5, rtol=1e-4)
    for a, b in zip(grads(o, (q, k, v)), grads(ro, (q, k, v))):
        torch.testing.assert_close(a.double(), b.double(), atol=1e-4, rtol=1e-3)
    # A transposed BHSD view and a negative-free permutation run too.
    qt = rand(1, 16, 2, 8).transpose(1, 2)  # [1, 2, 16, 8], stride (256, 8, 16, 1)
    o2 = spat.attention(qt, qt, qt, pat)
    torch.testing.assert_close(o2.double(), ref.attention(qt, qt, qt, pat)[0], atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("hkv", [1, 2])
def test_gqa(hkv):
    pat = spat.compile(PATTERNS["strided"])
    q, k, v = qkv(2, 4, hkv, 21, 21, 8)
    o = spat.attention(q, k, v, pat)
    ro, _ = ref.attention(q, k, v, pat)
    torch.testing.assert_close(o.double(), ro, atol=2e-5, rtol=1e-4)
    g = grads(o, (q, k, v))
    assert g[1].shape == k.shape
    for a, b in zip(g, grads(ro, (q, k, v))):
        torch.testing.assert_close(a.double(), b.double(), atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("layout", ["bhsd", "bshd"])
def test_varlen(layout):
    pat = spat.compile(PATTERNS["lastcols"])
    sq, sk = [13, 5], [20, 9]
    q, k, v = qkv(2, 2, 2, 13, 20, 8, layout)
    o = spat.attention(q, k, v, pat, layout=layout, seqlens_q=sq, seqlens_k=torch.tensor(sk))
    ro, _ = ref.attention(q, k, v, pat, layout=layout, seqlens_q=sq, seqlens_k=sk)
    torch.testing.assert_close(o.double(), ro, atol=2e-5, rtol=1e-4)
    rows = o[1, :, 5:] if layout == "bhsd" else o[1, 5:]
    assert (rows == 0).all()
    g = grads(o, (q, k, v))
    for a, b in zip(g, grads(ro, (q, k, v))):
        torch.testing.assert_close(a.double(), b.double(), atol=1e-4, rtol=1e-3)
    dk = g[1][1, :, 9:] if layout == "bhsd" else g[1][1, 9:]
    assert (dk == 0).all()


def test_q_offset_decode():
    pat = spat.compile("pattern dec { causal; window -6..+0; global 0; }")
    q, _, _ = qkv(1, 2, 2, 3, 20, 8)
    _, k, v = qkv(1, 2, 2, 20, 20, 8)
    o = spat.attention(q, k, v, pat, q_offset=17)
    ro, _ = ref.attention(q, k, v, pat, q_offset=17)
    torch.testing.assert_close(o.double(), ro, atol=2e-5, rtol=1e-4)
    for a, b in zip(grads(o, (q, k, v)), grads(ro, (q, k, v))):
        torch.testing.assert_close(a.double(), b.double(), atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_types_on_the_reference(dtype):
    pat = spat.compile(PATTERNS["bigbird"])
    q, k, v = qkv(1, 2, 2, 24, 24, 8, dtype=dtype)
    o = spat.attention(q, k, v, pat)
    assert o.dtype == dtype
    ro, _ = ref.attention(q, k, v, pat)
    tol = 1e-2 if dtype == torch.float16 else 3e-2
    torch.testing.assert_close(o.double(), ro, atol=tol, rtol=tol)
    dq, dk, dv = grads(o, (q, k, v))
    assert dq.dtype == dtype and torch.isfinite(dq.float()).all()


@pytest.mark.filterwarnings("ignore:Input #")
def test_gradcheck_reference_backend():
    pat = spat.compile(PATTERNS["longformer"])
    q, k, v = qkv(1, 2, 1, 6, 6, 8)

    def f(q, k, v):
        return spat.attention(q, k, v, pat, backend="reference", scale=0.7)

    # libspat stores float32, so the finite differences are float32's.
    assert torch.autograd.gradcheck(f, (q, k, v), eps=1e-3, atol=2e-3, rtol=2e-2, nondet_tol=0.0)


def test_deterministic_backward():
    pat = spat.compile(PATTERNS["bigbird"])
    q, k, v = qkv(2, 4, 2, 50, 50, 16)
    runs = []
    for threads in (1, 2, 1):
        torch.set_num_threads(threads)
        o = spat.attention(q, k, v, pat, deterministic=True)
        runs.append(grads(o, (q, k, v)))
    torch.set_num_threads(2)
    for g in runs[1:]:
        for a, b in zip(g, runs[0]):
            assert torch.equal(a, b)


# ---------------------------------------------------------------- torch.library

def _op_args():
    pat = spat.compile(PATTERNS["window"])
    q, k, v = qkv(1, 2, 1, 9, 9, 8)
    return pat, q, k, v


def test_opcheck_forward():
    pat, q, k, v = _op_args()
    for layout, (qq, kk, vv) in (("bhsd", (q, k, v)), ("bshd", qkv(1, 2, 1, 9, 9, 8, "bshd"))):
        args = (qq, kk, vv, pat.handle, 0.0, layout, None, None, 0, False, "auto")
        torch.library.opcheck(torch.ops.spat.attention_fwd.default, args)
    args = (q, k, v, pat.handle, 0.5, "bhsd", torch.tensor([6], dtype=torch.int32),
            torch.tensor([7], dtype=torch.int32), 0, True, "reference")
    torch.library.opcheck(torch.ops.spat.attention_fwd.default, args)


def test_opcheck_backward():
    pat, q, k, v = _op_args()
    o, lse = torch.ops.spat.attention_fwd(q, k, v, pat.handle, 0.0, "bhsd", None, None, 0, False, "auto")
    do = rand(*o.shape, seed=3)
    args = (do, q.detach(), k.detach(), v.detach(), o.detach(), lse.detach(), pat.handle, 0.0, "bhsd", None, None, 0,
            False, "auto")
    torch.library.opcheck(torch.ops.spat.attention_bwd.default, args)


def test_fake_strides_are_exact():
    from torch._subclasses.fake_tensor import FakeTensorMode

    pat, q, k, v = _op_args()
    for layout, (qq, kk, vv) in (("bhsd", (q, k, v)), ("bshd", qkv(1, 2, 1, 9, 9, 8, "bshd"))):
        real = torch.ops.spat.attention_fwd(qq, kk, vv, pat.handle, 0.0, layout, None, None, 0, False, "auto")
        plain = [t.detach() for t in (qq, kk, vv)]
        with FakeTensorMode() as mode:
            fq, fk, fv = (mode.from_tensor(t) for t in plain)
            fake = torch.ops.spat.attention_fwd(fq, fk, fv, pat.handle, 0.0, layout, None, None, 0, False, "auto")
        for r, f in zip(real, fake):
            assert r.shape == f.shape and r.stride() == f.stride() and r.dtype == f.dtype


class Block(torch.nn.Module):
    def __init__(self, pattern, dim=32, heads=4):
        super().__init__()
        self.heads = heads
        self.qkv = torch.nn.Linear(dim, 3 * dim)
        self.out = torch.nn.Linear(dim, dim)
        self.attn = spat.nn.SparseAttention(pattern)

    def forward(self, x):
        B, N, C = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        y = self.attn(q, k, v)  # in place of F.scaled_dot_product_attention(q, k, v)
        return x + self.out(y.transpose(1, 2).reshape(B, N, C))


def test_torch_compile_fullgraph():
    torch.manual_seed(0)
    block = Block(PATTERNS["longformer"])
    x = torch.randn(2, 24, 32)
    want = block(x)
    want.square().mean().backward()
    gw = [p.grad.clone() for p in block.parameters()]
    block.zero_grad()
    compiled = torch.compile(block, fullgraph=True)
    got = compiled(x)
    got.square().mean().backward()
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    for p, g in zip(block.parameters(), gw):
        torch.testing.assert_close(p.grad, g, atol=1e-5, rtol=1e-4)


def test_module_is_a_drop_in_for_sdpa():
    q, k, v = qkv(2, 4, 4, 30, 30, 16)
    dense = spat.nn.SparseAttention("pattern d { dense; }")
    torch.testing.assert_close(dense(q, k, v), F.scaled_dot_product_attention(q, k, v), atol=1e-5, rtol=1e-5)
    causal = spat.nn.SparseAttention("pattern c { causal; dense; }")
    torch.testing.assert_close(causal(q, k, v), F.scaled_dot_product_attention(q, k, v, is_causal=True),
                               atol=1e-5, rtol=1e-5)
    assert "pattern='c'" in repr(causal)
    assert list(causal.parameters()) == []


# ---------------------------------------------------------------- bad inputs

def test_bad_inputs():
    pat = spat.compile(PATTERNS["window"])
    q, k, v = qkv(1, 2, 2, 8, 8, 8, grad=False)
    with pytest.raises(ValueError, match="meta"):
        spat.attention(q.to("meta"), k.to("meta"), v.to("meta"), pat)
    with pytest.raises(TypeError, match="float64"):
        spat.attention(q.double(), k.double(), v.double(), pat)
    with pytest.raises(TypeError, match="share a dtype"):
        spat.attention(q, k.half(), v, pat)
    with pytest.raises(ValueError, match="4 dimensions"):
        spat.attention(q[0], k[0], v[0], pat)
    with pytest.raises(ValueError, match="multiple of the KV heads"):
        spat.attention(rand(1, 3, 8, 8), k, v, pat)
    with pytest.raises(ValueError, match="head dim"):
        spat.attention(rand(1, 2, 8, 16), k, v, pat)
    with pytest.raises(ValueError, match="one shape"):
        spat.attention(q, k, v[:, :, :4], pat)
    with pytest.raises(ValueError, match="layout"):
        spat.attention(q, k, v, pat, layout="sbhd")
    with pytest.raises(ValueError, match="backend"):
        spat.attention(q, k, v, pat, backend="tpu")
    # libspat's own refusals come back as SpatError with its message.
    with pytest.raises(spat.SpatError, match="built for"):
        spat.attention(q, k, v, spat.compile(PATTERNS["window"], head_dims=[16]))
    with pytest.raises(spat.SpatError, match="head_dim"):
        spat.attention(rand(1, 2, 8, 12), rand(1, 2, 8, 12), rand(1, 2, 8, 12), pat)
    with pytest.raises(spat.SpatError, match="heads"):
        spat.attention(q, k, v, spat.compile(PATTERNS["heads"]))  # a 4-head pattern on 2 heads
    with pytest.raises(spat.SpatError, match="seqlens"):
        spat.attention(q, k, v, pat, seqlens_q=[9])
    with pytest.raises(spat.SpatError, match="offset"):
        spat.attention(q, k, v, pat, q_offset=5)
    with pytest.raises(spat.SpatError) as e:
        spat.attention(q, k, v, pat, backend="cuda")
    assert e.value.status in (7, 11)  # SPAT_EDEVICE or SPAT_EBACKEND, by build
