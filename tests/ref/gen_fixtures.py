#!/usr/bin/python3
"""gen_fixtures.py: writes the PyTorch reference fixtures that tests/ref/test_torch_ref.c reads.

Run on a developer machine that has torch, numpy and h5py (CI never runs this; it reads
the committed files):

    /usr/bin/python3 tests/ref/gen_fixtures.py [OUTDIR]     # default: tests/ref/fixtures

Every fixture is one small HDF5 file holding one layer (or one insightface IBasicBlock):
  - inputs and parameters as float32, under insightface's state-dict names ("weight",
    "bias", "running_mean", "running_var"; "bn1.weight", "downsample.0.weight", ... for
    the block);
  - "x" (the input) and "dy" (a random upstream gradient; the loss is sum(y * dy));
  - references computed by torch in float64 from exactly those float32 values: "y", "dx",
    "grad.<name>" for every trainable parameter and, for BatchNorm, the running
    statistics after the pass as "after.<name>" (torch semantics: momentum 0.1, unbiased
    batch variance in the update). They are stored rounded to float32 to keep the files
    small: that rounding (6e-8 relative) is far below the tests' 1e-4 tolerance;
  - root attributes: format, format_version, layer, training and the hyperparameters.

Dropout cannot use torch's generator, so its mask is lfsearch's own Philox4x32-10
stream, re-implemented here in numpy (the C library's definition in src/core/philox.c).
"""
import os
import sys

import h5py
import numpy as np
import torch
import torch.nn.functional as F

FORMAT = "lfsearch-ref-fixture"
FORMAT_VERSION = 1

# ---- lfsearch's Philox4x32-10 stream, in numpy -------------------------------------------

PHILOX_M0, PHILOX_M1 = 0xD2511F53, 0xCD9E8D57
PHILOX_W0, PHILOX_W1 = 0x9E3779B9, 0xBB67AE85
MASK32 = np.uint64(0xFFFFFFFF)
RNG_DROPOUT = 4  # lfs_rng_purpose LFS_RNG_DROPOUT


def _mulhilo(m, x):
    """High and low 32-bit halves of the 64-bit product m * x (x: uint64 array of u32)."""
    p = np.uint64(m) * x  # < 2^64: no overflow
    return p >> np.uint64(32), p & MASK32


def philox4x32_10(ctr, key):
    """ctr: 4 uint64 arrays of 32-bit words; key: 2 python ints. Returns 4 arrays."""
    x0, x1, x2, x3 = (np.asarray(c, dtype=np.uint64) & MASK32 for c in ctr)
    k0, k1 = key[0] & 0xFFFFFFFF, key[1] & 0xFFFFFFFF
    for rnd in range(10):
        if rnd > 0:  # the key is bumped between rounds, not before the first
            k0 = (k0 + PHILOX_W0) & 0xFFFFFFFF
            k1 = (k1 + PHILOX_W1) & 0xFFFFFFFF
        hi0, lo0 = _mulhilo(PHILOX_M0, x0)
        hi1, lo1 = _mulhilo(PHILOX_M1, x2)
        x0, x1, x2, x3 = hi1 ^ x1 ^ np.uint64(k0), lo1, hi0 ^ x3 ^ np.uint64(k1), lo0
    return x0, x1, x2, x3


def philox_self_test():
    """Random123's known answer for counter 0 and key 0."""
    z = np.zeros(1, dtype=np.uint64)
    out = [int(w[0]) for w in philox4x32_10((z, z, z, z), (0, 0))]
    want = [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]
    assert out == want, "philox known answer: got %s" % [hex(w) for w in out]


def rng_uniform(seed, purpose, a, b, count):
    """Elements [0, count) of lfs_rng_make(seed, purpose, a, b) as lfs_rng_uniform returns
    them: element i is word i%4 of block i//4; block i has counter
    {i lo, (i hi) | purpose << 24, a, b} and key {seed lo, seed hi}."""
    nblocks = (count + 3) // 4
    i = np.arange(nblocks, dtype=np.uint64)
    ctr = (i & MASK32, (i >> np.uint64(32)) | np.uint64(purpose << 24),
           np.full(nblocks, a & 0xFFFFFFFF, dtype=np.uint64),
           np.full(nblocks, b & 0xFFFFFFFF, dtype=np.uint64))
    words = np.stack(philox4x32_10(ctr, (seed & 0xFFFFFFFF, seed >> 32)), axis=1).reshape(-1)
    u32 = words[:count]
    # The top 23 bits, centred in their cell: the open interval (0, 1). The C library
    # keeps 23, not 24, bits so that every value is exact in float (see philox.c).
    return ((u32 >> np.uint64(9)).astype(np.float64) + 0.5) * 2.0 ** -23


# ---- helpers ----------------------------------------------------------------------------


def f32(t):
    """A float32 numpy copy of a tensor (what the fixture stores)."""
    return t.detach().to(torch.float32).cpu().numpy()


def as64(a):
    """A float64 leaf tensor holding exactly the float32 values of a."""
    return torch.tensor(np.asarray(a, dtype=np.float32).astype(np.float64), dtype=torch.float64)


def randn32(*shape, scale=1.0, shift=0.0):
    """Float32 random values (rounded to float32 before any reference is computed)."""
    return (torch.randn(*shape, dtype=torch.float64) * scale + shift).to(torch.float32).numpy()


def create_file(path):
    """A new HDF5 file that HDF5 1.10 reads (format bounds v110) and that is the same
    byte for byte on every run (no object timestamps), so regenerating causes no churn."""
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_V110, h5py.h5f.LIBVER_V110)
    fcpl = h5py.h5p.create(h5py.h5p.FILE_CREATE)
    fcpl.set_obj_track_times(False)
    return h5py.File(h5py.h5f.create(path.encode(), h5py.h5f.ACC_TRUNC, fcpl=fcpl, fapl=fapl))


def write(path, attrs, data):
    """One fixture file. Fixed-length strings and compact datasets: variable-length
    strings would cost a 4 KB global heap and contiguous datasets a block each, several
    times the data of a small fixture."""
    with create_file(path) as f:
        f.attrs["format"] = np.bytes_(FORMAT)
        f.attrs["format_version"] = np.int64(FORMAT_VERSION)
        for k, v in attrs.items():
            if isinstance(v, str):
                f.attrs[k] = np.bytes_(v)
            elif isinstance(v, float):
                f.attrs[k] = np.float64(v)
            else:
                f.attrs[k] = np.int64(v)
        for k, v in data.items():
            dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            dcpl.set_layout(h5py.h5d.COMPACT)  # data inside the object header (< 64 KB)
            dcpl.set_obj_track_times(False)
            f.create_dataset(k, data=np.asarray(v, dtype=np.float32), dcpl=dcpl)


def run_module(mod, params32, buffers32, x32, dy32, frozen=()):
    """Loads float32 values into a float64 copy of mod, runs forward + backward of
    sum(y * dy) and returns the datasets of a fixture (without attributes)."""
    mod = mod.double()
    with torch.no_grad():
        for name, v in params32.items():
            mod.get_parameter(name).copy_(as64(v))
        for name, v in buffers32.items():
            mod.get_buffer(name).copy_(as64(v))
    for name, p in mod.named_parameters():
        p.requires_grad_(name not in frozen)
        p.grad = None
    x = as64(x32).requires_grad_(True)
    y = mod(x)
    (y * as64(dy32)).sum().backward()
    out = {"x": x32, "dy": dy32, "y": f32(y), "dx": f32(x.grad)}
    out.update(params32)
    out.update(buffers32)
    for name, p in mod.named_parameters():
        if name in frozen:
            assert p.grad is None
            continue
        assert name in params32, "parameter %s not stored" % name
        out["grad." + name] = f32(p.grad)
    for name in buffers32:
        out["after." + name] = f32(mod.get_buffer(name))
    return out


def bn_values(c):
    """Random BN parameters and running statistics, away from the defaults so that a
    library ignoring one of them fails."""
    params = {"weight": randn32(c, scale=0.3, shift=1.0), "bias": randn32(c, scale=0.3)}
    buffers = {"running_mean": randn32(c, scale=0.5),
               "running_var": (torch.rand(c, dtype=torch.float64) + 0.5).float().numpy()}
    return params, buffers


# ---- fixtures ---------------------------------------------------------------------------


def conv_fixture(path, n, in_c, out_c, h, w, k, stride, pad, groups, bias):
    conv = torch.nn.Conv2d(in_c, out_c, k, stride=stride, padding=pad, groups=groups, bias=bias)
    fan_in = in_c // groups * k * k
    params = {"weight": randn32(out_c, in_c // groups, k, k, scale=(2.0 / fan_in) ** 0.5)}
    if bias:
        params["bias"] = randn32(out_c, scale=0.1)
    x = randn32(n, in_c, h, w)
    oh = (h + 2 * pad - k) // stride + 1
    ow = (w + 2 * pad - k) // stride + 1
    dy = randn32(n, out_c, oh, ow)
    data = run_module(conv, params, {}, x, dy)
    write(path, dict(layer="conv2d", training=1, in_c=in_c, out_c=out_c, k=k, stride=stride,
                     pad=pad, groups=groups, bias=int(bias)), data)


def bn_fixture(path, shape, training, fixed_gamma=False):
    c = shape[1]
    bn = (torch.nn.BatchNorm2d if len(shape) == 4 else torch.nn.BatchNorm1d)(
        c, eps=1e-5, momentum=0.1)
    params, buffers = bn_values(c)
    if fixed_gamma:  # insightface's `features`: weight constant 1, requires_grad False
        params["weight"] = np.ones(c, dtype=np.float32)
    x = randn32(*shape, scale=2.0, shift=0.5)
    dy = randn32(*shape)
    bn.train(training)
    data = run_module(bn, params, buffers, x, dy, frozen=("weight",) if fixed_gamma else ())
    write(path, dict(layer="batchnorm", training=int(training), eps=1e-5, momentum=0.1,
                     fixed_gamma=int(fixed_gamma), dims=len(shape)), data)


def prelu_fixture(path, n, c, h, w):
    prelu = torch.nn.PReLU(c)
    params = {"weight": (torch.rand(c, dtype=torch.float64) * 0.5).float().numpy()}
    x = randn32(n, c, h, w, shift=-0.5)  # mostly negative: the alpha branch matters
    dy = randn32(n, c, h, w)
    write(path, dict(layer="prelu", training=1), run_module(prelu, params, {}, x, dy))


def linear_fixture(path, n, fin, fout):
    lin = torch.nn.Linear(fin, fout, bias=True)
    params = {"weight": randn32(fout, fin, scale=fin ** -0.5), "bias": randn32(fout, scale=0.1)}
    x = randn32(n, fin)
    dy = randn32(n, fout)
    write(path, dict(layer="linear", training=1, in_features=fin, out_features=fout, bias=1),
          run_module(lin, params, {}, x, dy))


class L2Norm(torch.nn.Module):
    def __init__(self, eps):
        super().__init__()
        self.eps = eps

    def forward(self, x):
        return F.normalize(x, p=2.0, dim=1, eps=self.eps)  # x / max(|x|, eps)


def l2norm_fixture(path, rows, cols):
    eps = 1e-12
    # Rows of very different norms (the per-row scale must not leak between rows).
    scale = torch.tensor([0.01, 0.3, 1.0, 5.0, 40.0, 1.0], dtype=torch.float64)[:rows, None]
    x = (torch.randn(rows, cols, dtype=torch.float64) * scale).float().numpy()
    dy = randn32(rows, cols)
    write(path, dict(layer="l2norm", training=1, eps=eps),
          run_module(L2Norm(eps), {}, {}, x, dy))


def dropout_fixture(path, shape, p, seed, step, ident):
    count = int(np.prod(shape))
    p32 = float(np.float32(p))  # the library compares against a float p
    keep = rng_uniform(seed, RNG_DROPOUT, step, ident, count) >= p32
    mask = torch.tensor(keep.reshape(shape), dtype=torch.float64)
    x32 = randn32(*shape)
    dy32 = randn32(*shape)
    x = as64(x32).requires_grad_(True)
    y = x * mask / (1.0 - p32)
    (y * as64(dy32)).sum().backward()
    data = {"x": x32, "dy": dy32, "y": f32(y), "dx": f32(x.grad)}
    write(path, dict(layer="dropout", training=1, p=p32, seed=seed, step=step, id=ident,
                     kept=int(keep.sum())), data)


class IBasicBlock(torch.nn.Module):
    """insightface's iresnet block with a downsample shortcut (written from DESIGN §4)."""

    def __init__(self, inplanes, planes, stride):
        super().__init__()
        self.bn1 = torch.nn.BatchNorm2d(inplanes, eps=1e-5)
        self.conv1 = torch.nn.Conv2d(inplanes, planes, 3, 1, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(planes, eps=1e-5)
        self.prelu = torch.nn.PReLU(planes)
        self.conv2 = torch.nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = torch.nn.BatchNorm2d(planes, eps=1e-5)
        self.downsample = torch.nn.Sequential(
            torch.nn.Conv2d(inplanes, planes, 1, stride, 0, bias=False),
            torch.nn.BatchNorm2d(planes, eps=1e-5))

    def forward(self, x):
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + self.downsample(x)  # no activation after the add


def iresnet_block_fixture(path, n, inplanes, planes, hw, stride):
    block = IBasicBlock(inplanes, planes, stride).train()
    params, buffers = {}, {}
    for bn_name, c in (("bn1", inplanes), ("bn2", planes), ("bn3", planes),
                       ("downsample.1", planes)):
        p, b = bn_values(c)
        params.update({bn_name + "." + k: v for k, v in p.items()})
        buffers.update({bn_name + "." + k: v for k, v in b.items()})
    params["conv1.weight"] = randn32(planes, inplanes, 3, 3, scale=(2.0 / (inplanes * 9)) ** 0.5)
    params["conv2.weight"] = randn32(planes, planes, 3, 3, scale=(2.0 / (planes * 9)) ** 0.5)
    params["downsample.0.weight"] = randn32(planes, inplanes, 1, 1, scale=(2.0 / inplanes) ** 0.5)
    params["prelu.weight"] = (torch.rand(planes, dtype=torch.float64) * 0.5).float().numpy()
    x = randn32(n, inplanes, hw, hw)
    ohw = (hw + 2 - 3) // stride + 1
    dy = randn32(n, planes, ohw, ohw)
    data = run_module(block, params, buffers, x, dy)
    write(path, dict(layer="iresnet_block", training=1, inplanes=inplanes, planes=planes,
                     stride=stride, eps=1e-5, momentum=0.1), data)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "fixtures")
    os.makedirs(out, exist_ok=True)
    philox_self_test()
    torch.manual_seed(20240611)
    torch.set_grad_enabled(True)
    p = lambda name: os.path.join(out, name)
    conv_fixture(p("conv.h5"), 2, 3, 4, 6, 5, 3, 1, 1, 1, True)
    conv_fixture(p("conv_s2.h5"), 2, 3, 4, 7, 9, 3, 2, 1, 1, False)  # odd sizes
    conv_fixture(p("conv_groups.h5"), 2, 4, 6, 6, 5, 3, 1, 0, 2, True)
    conv_fixture(p("conv_depthwise.h5"), 2, 4, 4, 6, 6, 3, 1, 1, 4, False)
    bn_fixture(p("bn2d_train.h5"), (4, 3, 5, 4), True)
    bn_fixture(p("bn2d_eval.h5"), (4, 3, 5, 4), False)
    bn_fixture(p("bn1d_train.h5"), (8, 6), True)
    bn_fixture(p("bn1d_fixed_gamma.h5"), (8, 6), True, fixed_gamma=True)
    prelu_fixture(p("prelu.h5"), 2, 3, 4, 5)
    linear_fixture(p("linear.h5"), 4, 10, 6)
    l2norm_fixture(p("l2norm.h5"), 6, 8)
    # seed > 2^32 so the high key word is exercised, yet < 2^53 so the attribute is exact
    # as a double.
    dropout_fixture(p("dropout.h5"), (2, 3, 4, 5), 0.4, 0x0012345678ABCDEF, 777, 3)
    iresnet_block_fixture(p("iresnet_block.h5"), 4, 4, 8, 7, 2)  # odd size, 7 -> 4
    total = 0
    for name in sorted(os.listdir(out)):
        size = os.path.getsize(os.path.join(out, name))
        total += size
        print("%-24s %7d bytes" % (name, size))
    print("%-24s %7d bytes" % ("total", total))


if __name__ == "__main__":
    main()
