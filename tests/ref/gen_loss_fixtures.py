#!/usr/bin/python3
"""gen_loss_fixtures.py: PyTorch reference fixtures for the cosine head and every loss
(DESIGN §1.1-1.5), read by tests/ref/test_torch_losses.c.

Run on a developer machine that has torch, numpy and h5py (CI never runs this; it reads
the committed files):

    /usr/bin/python3 tests/ref/gen_loss_fixtures.py [OUTDIR]   # default: tests/ref/fixtures

Each loss is written here from the DESIGN formulas with torch autograd in float64, at
float32 inputs: cosine head on F.normalize'd features and class weights (eps 1e-12),
clamped cosines, the margin family psi = (-1)^k cos(m1 theta + m2) - 2k - m3 with
k = floor(phi / pi) and SphereFace's (lambda c + psi) / (1 + lambda), `straight` as
c + detach(psi - c), MV-Softmax negatives, Search-Softmax's -log p_y + log1p(|a| q)
and AM-LFS's piecewise-linear target and tau, in log space (log_softmax, q from a
logsumexp of the other classes).

One file per case, loss_<case>.h5:
  x [B, D], w [K, D] float32, labels [B] int32; amlfs_alpha/beta, tau_alpha/beta
  [N] float64 for AM-LFS; references loss [1] float64 and dx [B, D], dw [K, D]
  (gradients of the batch-mean loss), mean_p_y [1], rounded to float32 (6e-8 relative,
  far below the test's 1e-4);
  root attributes: format, format_version, loss (name), kind (lfs_loss_kind), s, m1,
  m2, m3, margin_grad (0 exact, 1 straight), lambda_base, lambda_gamma, lambda_power,
  lambda_min, iteration, mv_mode (0 adaptive, 1 fixed), mv_t, a, amlfs_n, amlfs_tau.

It also checks the conventions against insightface's arcface_torch, re-expressed here
(written anew, not copied) from what its code does: its ArcFace/CombinedMarginLoss
rewrites the target logit to cos(theta + m2) under torch.no_grad(), so its gradient is
what lfsearch calls `straight`; its CosFace is ours exactly; with m3 > 0 its combined
loss keeps only m3 (m1 and m2 are dropped); and it has no monotone extension past
theta + m2 > pi. The
older ArcFace class (sqrt form with autograd) equals our `exact` where theta + m2 <= pi
and uses c - m2 sin(m2) beyond (harder than our extension there). The script prints
the comparison and fails if a convention that should agree does not.
"""
import math
import os
import sys

import h5py
import numpy as np
import torch
import torch.nn.functional as F

FORMAT = "lfsearch-ref-fixture"
FORMAT_VERSION = 1
KINDS = ["softmax", "sphereface", "cosface", "arcface", "combined", "mv_softmax",
         "search_softmax", "amlfs"]
EPS = 1e-12
TAU_FLOOR = 1e-30

# ---- configuration -----------------------------------------------------------------------


def config(loss, **over):
    """The DESIGN §1.2 defaults of lfs_head_cfg_init, then overrides."""
    c = dict(loss=loss, s=32.0, m1=1.0, m2=0.0, m3=0.0, margin_grad=0, lambda_base=1000.0,
             lambda_gamma=1e-4, lambda_power=2.0, lambda_min=5.0, iteration=0, mv_mode=0,
             mv_t=1.2, a=0.0, amlfs_n=6, amlfs_tau=0)
    c.update({"sphereface": dict(m1=4.0), "cosface": dict(m3=0.35), "arcface": dict(m2=0.5),
              "combined": dict(m2=0.3, m3=0.2), "mv_softmax": dict(m3=0.35)}.get(loss, {}))
    n = over.get("amlfs_n", c["amlfs_n"])
    c.update(amlfs_alpha=np.ones(n), amlfs_beta=np.zeros(n), tau_alpha=np.ones(n),
             tau_beta=np.zeros(n))
    c.update(over)
    return c


def sphereface_lambda(c):
    if c["loss"] != "sphereface":
        return 0.0
    decayed = c["lambda_base"] * (1.0 + c["lambda_gamma"] * c["iteration"]) ** -c["lambda_power"]
    return max(c["lambda_min"], decayed)


# ---- the losses, from the formulas ---------------------------------------------------------


def interval(v, lo, width, n):
    """Interval index of v among n equal parts of [lo, lo + width] (top end: the last)."""
    return torch.clamp(torch.floor((v - lo) / width * n), 0, n - 1).long()


def target(c, cy):
    """t(c_y) and the distance of c_y to an AM-LFS interval edge."""
    if c["loss"] == "amlfs":
        n = c["amlfs_n"]
        j = interval(cy.detach(), -1.0, 2.0, n)
        edges = torch.tensor([-1.0 + 2.0 * e / n for e in range(1, n)], dtype=torch.float64)
        kink = (cy.detach()[:, None] - edges[None, :]).abs().min().item() if n > 1 else 1.0
        alpha = torch.tensor(c["amlfs_alpha"], dtype=torch.float64)[j]
        beta = torch.tensor(c["amlfs_beta"], dtype=torch.float64)[j]
        return alpha * cy + beta, kink
    if c["loss"] == "softmax":
        return cy, math.inf
    if c["m1"] == 1.0 and c["m2"] == 0.0:
        psi = cy - c["m3"]
    else:
        phi = c["m1"] * torch.acos(cy) + c["m2"]
        k = torch.floor(phi.detach() / math.pi)
        psi = (1.0 - 2.0 * torch.remainder(k, 2.0)) * torch.cos(phi) - 2.0 * k - c["m3"]
    lam = sphereface_lambda(c)
    t = (lam * cy + psi) / (1.0 + lam)
    if c["margin_grad"] == 1:
        t = cy + (t - cy).detach()
    return t, math.inf


def head_loss(c, x, w, labels):
    """Mean loss (float64 autograd), mean p_y, the distance of the data to a kink and the
    number of negatives MV raised."""
    rows = torch.arange(x.shape[0])
    cos = (F.normalize(x, dim=1, eps=EPS) @ F.normalize(w, dim=1, eps=EPS).T).clamp(-1.0, 1.0)
    onehot = F.one_hot(labels, w.shape[0]).bool()
    t, kink = target(c, cos[rows, labels])
    neg, hits = cos, 0
    if c["loss"] == "mv_softmax":
        hard = (cos > t.detach()[:, None]) & ~onehot
        off = (cos - t.detach()[:, None]).abs()[~onehot]
        kink = min(kink, off.min().item() if off.numel() else math.inf)
        hits = int(hard.sum())
        raised = cos + c["mv_t"] if c["mv_mode"] == 1 else c["mv_t"] * cos + c["mv_t"] - 1.0
        neg = torch.where(hard, raised, cos)
    z = c["s"] * torch.where(onehot, t[:, None].expand_as(cos), neg)
    logp = torch.log_softmax(z, dim=1)
    nlp = -logp[rows, labels]
    # q = sum of the other classes' probabilities, in log space
    lse = torch.logsumexp(z, dim=1)
    others = torch.logsumexp(z.masked_fill(onehot, -math.inf), dim=1) if z.shape[1] > 1 else None
    q = torch.exp(others - lse) if others is not None else torch.zeros_like(nlp)
    if c["loss"] == "search_softmax":
        per_row = nlp + torch.log1p(abs(c["a"]) * q)
    elif c["loss"] == "amlfs" and c["amlfs_tau"]:
        p = torch.exp(-nlp)
        n = c["amlfs_n"]
        j = interval(p.detach(), 0.0, 1.0, n)
        edges = torch.tensor([e / n for e in range(1, n)], dtype=torch.float64)
        if n > 1:
            kink = min(kink, (p.detach()[:, None] - edges[None, :]).abs().min().item())
        alpha = torch.tensor(c["tau_alpha"], dtype=torch.float64)[j]
        beta = torch.tensor(c["tau_beta"], dtype=torch.float64)[j]
        tau = torch.where(p.detach() >= 0.5, alpha + beta - alpha * q, alpha * p + beta)
        assert bool((tau > 0).all()), "fixture data must keep tau > 0"
        per_row = -torch.log(tau)
    else:
        per_row = nlp
    return per_row.mean(), torch.exp(-nlp).mean().item(), kink, hits


# ---- arcface_torch's conventions, re-expressed ------------------------------------------------


def arcface_torch_combined(s, m1, m2, m3, cos, labels):
    """Logits as arcface_torch's CombinedMarginLoss forms them: with m1 = 1 and m3 = 0 the
    target is replaced by cos(acos(c) + m2) inside no_grad (the backward sees only s * c);
    with m3 > 0 the target is c - m3 and m1, m2 play no part."""
    rows = torch.arange(cos.shape[0])
    logits = cos.clone()
    if m1 == 1.0 and m3 == 0.0:
        with torch.no_grad():
            cy = logits[rows, labels]
            logits[rows, labels] = torch.cos(torch.acos(cy) + m2)
        return logits * s
    if m3 > 0:
        return s * torch.where(F.one_hot(labels, cos.shape[1]).bool(), cos - m3, cos)
    raise ValueError("arcface_torch rejects m1 != 1 without m3")


def arcface_torch_old(s, m, cos, labels):
    """The older arcface_torch ArcFace class: autograd through c cos m - sin(theta) sin m
    where c > cos(pi - m), else c - m sin(pi - m)."""
    rows = torch.arange(cos.shape[0])
    cy = cos[rows, labels]
    cm = cy * math.cos(m) - torch.sqrt(1.0 - cy * cy) * math.sin(m)
    final = torch.where(cy > math.cos(math.pi - m), cm, cy - math.sin(math.pi - m) * m)
    onehot = F.one_hot(labels, cos.shape[1]).bool()
    return s * torch.where(onehot, final[:, None].expand_as(cos), cos)


def grads(fn, x32, w32, labels):
    x = torch.tensor(x32, dtype=torch.float64, requires_grad=True)
    w = torch.tensor(w32, dtype=torch.float64, requires_grad=True)
    loss = fn(x, w, labels)
    loss.backward()
    return loss.item(), x.grad.numpy(), w.grad.numpy()


def rel(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / max(np.abs(b).max(), 1e-300))


def conventions(x32, w32, labels):
    """Prints how our losses relate to arcface_torch's; asserts where they must agree."""
    def cosines(x, w):
        return (F.normalize(x, dim=1, eps=EPS) @ F.normalize(w, dim=1, eps=EPS).T).clamp(-1, 1)

    def ours(c):
        return lambda x, w, l: head_loss(c, x, w, l)[0]

    def theirs(s, m1, m2, m3):
        return lambda x, w, l: F.cross_entropy(
            arcface_torch_combined(s, m1, m2, m3, cosines(x, w), l), l)

    def theirs_old(s, m):
        return lambda x, w, l: F.cross_entropy(arcface_torch_old(s, m, cosines(x, w), l), l)

    print("conventions vs arcface_torch (relative differences; value, dx, dw):")
    rows = []

    def compare(name, a, b, must_agree, grads_must_agree=True):
        la, xa, wa = grads(a, x32, w32, labels)
        lb, xb, wb = grads(b, x32, w32, labels)
        d = (abs(la - lb) / abs(lb), rel(xa, xb), rel(wa, wb))
        rows.append(name)
        print("  %-66s %9.2e %9.2e %9.2e" % (name, *d))
        if must_agree:
            assert d[0] < 1e-12, name
            if grads_must_agree:
                assert d[1] < 1e-10 and d[2] < 1e-10, name
        return d

    arc = config("arcface", s=64.0)
    compare("arcface straight vs CombinedMarginLoss(1, .5, 0)",
            ours(dict(arc, margin_grad=1)), theirs(64.0, 1.0, 0.5, 0.0), True)
    d = compare("arcface exact vs CombinedMarginLoss(1, .5, 0) [same value]", ours(arc),
                theirs(64.0, 1.0, 0.5, 0.0), True, grads_must_agree=False)
    assert d[1] > 1e-3, "exact and straight gradients should differ"
    compare("arcface exact vs older ArcFace class (autograd)", ours(arc), theirs_old(64.0, 0.5),
            True)
    cos = config("cosface", s=64.0, m3=0.4)
    compare("cosface vs CombinedMarginLoss(1, 0, .4)", ours(cos), theirs(64.0, 1.0, 0.0, 0.4), True)
    comb = config("combined", s=64.0)
    d = compare("combined(1,.3,.2) vs CombinedMarginLoss(1,.3,.2) [drops m2]", ours(comb),
                theirs(64.0, 1.0, 0.3, 0.2), False)
    assert d[0] > 1e-3
    compare("combined(1,0,.2) vs CombinedMarginLoss(1,.3,.2) [what it computes]",
            ours(config("combined", s=64.0, m2=0.0)), theirs(64.0, 1.0, 0.3, 0.2), True)
    # past theta + m2 > pi: our monotone extension, theirs is not monotone
    x_obtuse = x32.copy()
    wy = w32[labels[0]] / np.linalg.norm(w32[labels[0]])
    perp = x_obtuse[0] - np.dot(x_obtuse[0], wy) * wy
    perp /= np.linalg.norm(perp)
    x_obtuse[0] = (math.cos(2.9) * wy + math.sin(2.9) * perp).astype(np.float32)
    la = grads(ours(arc), x_obtuse, w32, labels)[0]
    lb = grads(theirs(64.0, 1.0, 0.5, 0.0), x_obtuse, w32, labels)[0]
    lc = grads(theirs_old(64.0, 0.5), x_obtuse, w32, labels)[0]
    print("  one row at theta = 2.9 (theta + m2 > pi): loss ours %.6f, CombinedMarginLoss %.6f, "
          "older ArcFace %.6f" % (la, lb, lc))
    # cos(theta + m2) turns back up past pi; the extension keeps decreasing
    assert la > lb, "the monotone extension must be harder than cos(theta + m2) there"


# ---- data and files -------------------------------------------------------------------------


def set_angle(x, w, labels, i, theta, length=1.0):
    """Row i of x at angle theta from its label's weight (orthogonal part from the row)."""
    wy = w[labels[i]].astype(np.float64)
    wy /= np.linalg.norm(wy)
    perp = x[i].astype(np.float64) - np.dot(x[i], wy) * wy
    perp /= np.linalg.norm(perp)
    x[i] = (length * (math.cos(theta) * wy + math.sin(theta) * perp)).astype(np.float32)


def make_data(rng, B, D, K):
    x = (rng.standard_normal((B, D)) * rng.uniform(0.3, 5.0, (B, 1))).astype(np.float32)
    w = (rng.standard_normal((K, D)) * rng.uniform(0.5, 2.0, (K, 1))).astype(np.float32)
    labels = rng.integers(0, K, B).astype(np.int32)
    return x, w, labels


def create_file(path):
    """HDF5 readable by 1.10 (format bounds v110), byte-identical across runs."""
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_V110, h5py.h5f.LIBVER_V110)
    fcpl = h5py.h5p.create(h5py.h5p.FILE_CREATE)
    fcpl.set_obj_track_times(False)
    return h5py.File(h5py.h5f.create(path.encode(), h5py.h5f.ACC_TRUNC, fcpl=fcpl, fapl=fapl))


def put(f, name, value, dtype):
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_layout(h5py.h5d.COMPACT)  # inside the object header: no block per dataset
    dcpl.set_obj_track_times(False)
    f.create_dataset(name, data=np.atleast_1d(np.asarray(value, dtype=dtype)), dcpl=dcpl)


def fixture(path, c, x32, w32, labels, min_kink=1e-3):
    """Writes one case; the data must keep min_kink from MV's edge and AM-LFS's intervals
    (the C side's float cosines must take the same branches)."""
    x = torch.tensor(x32, dtype=torch.float64, requires_grad=True)
    w = torch.tensor(w32, dtype=torch.float64, requires_grad=True)
    lab = torch.tensor(labels, dtype=torch.long)
    loss, mean_py, kink, hits = head_loss(c, x, w, lab)
    assert kink >= min_kink, "%s: data %.2g from a kink" % (path, kink)
    assert hits > 0 or c["loss"] != "mv_softmax", "%s: no MV hits" % path
    loss.backward()
    with create_file(path) as f:
        f.attrs["format"] = np.bytes_(FORMAT)
        f.attrs["format_version"] = np.int64(FORMAT_VERSION)
        f.attrs["loss"] = np.bytes_(c["loss"])
        f.attrs["kind"] = np.int64(KINDS.index(c["loss"]))
        for k in ("s", "m1", "m2", "m3", "lambda_base", "lambda_gamma", "lambda_power",
                  "lambda_min", "mv_t", "a"):
            f.attrs[k] = np.float64(c[k])
        for k in ("margin_grad", "iteration", "mv_mode", "amlfs_n", "amlfs_tau"):
            f.attrs[k] = np.int64(c[k])
        put(f, "x", x32, np.float32)
        put(f, "w", w32, np.float32)
        put(f, "labels", labels, np.int32)
        if c["loss"] == "amlfs":
            for k in ("amlfs_alpha", "amlfs_beta", "tau_alpha", "tau_beta"):
                put(f, k, c[k], np.float64)
        put(f, "loss", loss.item(), np.float64)
        put(f, "mean_p_y", mean_py, np.float64)
        put(f, "dx", x.grad.numpy(), np.float32)
        put(f, "dw", w.grad.numpy(), np.float32)
    return loss.item()


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "fixtures")
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(20240612)
    B, D, K = 6, 16, 20
    p = lambda name: os.path.join(out, "loss_%s.h5" % name)

    x, w, labels = make_data(rng, B, D, K)
    conventions(x, w, torch.tensor(labels, dtype=torch.long))

    cases = []

    def case(name, c, prepare=None, seed_data=None):
        x, w, labels = seed_data or make_data(rng, B, D, K)
        if prepare:
            prepare(x, w, labels)
        cases.append((name, fixture(p(name), c, x, w, labels)))
        return x, w, labels

    def hard_rows(x, w, labels):
        set_angle(x, w, labels, 0, 0.01, 2.0)   # theta near 0
        set_angle(x, w, labels, 1, 2.9, 1.0)    # theta + m2 > pi
        set_angle(x, w, labels, 2, 0.4, 0.5)

    def spread(x, w, labels):  # sphereface: k = 0..3
        for i, th in enumerate((0.2, 0.9, 1.7, 2.5, 3.0, 0.5)):
            set_angle(x, w, labels, i, th, 1.0 + i)

    case("softmax", config("softmax"))
    case("sphereface", config("sphereface", iteration=20000), spread)
    case("sphereface_m135", config("sphereface", m1=1.35, lambda_base=0.0, lambda_min=0.0,
                                   s=16.0), spread)
    case("cosface", config("cosface", s=64.0))
    case("arcface", config("arcface", s=64.0), hard_rows)
    case("arcface_straight", config("arcface", s=64.0, margin_grad=1), hard_rows)
    case("combined", config("combined"), hard_rows)
    case("combined_straight", config("combined", margin_grad=1), hard_rows)
    case("mv_adaptive_cosface", config("mv_softmax"))
    case("mv_fixed_arcface", config("mv_softmax", m2=0.5, m3=0.0, mv_mode=1, mv_t=0.2))
    case("search_softmax", config("search_softmax", a=-1000.0))

    def confident(x, w, labels):  # p_y ~ 1 - 1e-12 with |a| = 1e5
        w[:] = np.eye(w.shape[0], D, dtype=np.float32) + 0.05 * w
        for i in range(B):
            set_angle(x, w, labels, i, 0.1, 1.0)

    case("search_softmax_py1", config("search_softmax", a=-1e5, s=32.0), confident,
         seed_data=make_data(rng, B, D, D))
    n = 6
    case("amlfs", config("amlfs", amlfs_n=n, amlfs_alpha=rng.uniform(0.5, 1.5, n),
                         amlfs_beta=rng.uniform(-0.3, 0.1, n)))
    n = 4
    case("amlfs_tau", config("amlfs", amlfs_n=n, amlfs_tau=1, s=8.0,
                             amlfs_alpha=rng.uniform(0.7, 1.3, n),
                             amlfs_beta=rng.uniform(-0.1, 0.1, n),
                             tau_alpha=rng.uniform(0.5, 1.5, n), tau_beta=rng.uniform(0.0, 0.2, n)))

    total = 0
    for name, loss in cases:
        size = os.path.getsize(p(name))
        total += size
        print("%-34s loss %12.6g %7d bytes" % ("loss_%s.h5" % name, loss, size))
    print("%-34s %27d bytes" % ("total", total))


if __name__ == "__main__":
    torch.set_grad_enabled(True)
    main()
