#!/usr/bin/python3
"""gen_optim_fixture.py: writes tests/ref/fixtures/sgd.h5, the torch.optim.SGD reference that
tests/unit/test_optim.c reads.

Run on a developer machine that has torch, numpy and h5py (CI never runs this; it reads the
committed file):

    /usr/bin/python3 tests/ref/gen_optim_fixture.py [OUTFILE]   # default: tests/ref/fixtures/sgd.h5

A small "model" of trainable tensors (a conv weight, BN weight and bias, a PReLU slope, a
linear weight and bias, in lfsearch's declaration order) and a separate head tensor takes
three steps of torch.optim.SGD (momentum 0.9, dampening 0, no Nesterov, weight decay 5e-4)
from given gradients, in two scenarios:

  all    weight decay on every tensor (insightface); lr from torch's MultiStepLR stepped
         once per optimizer step: base 0.1, milestones [2], gamma 0.1, steps 0, 1, 2;
  wonly  two param groups: weight decay on tensors of 2+ dimensions only, 0 on the
         one-dimensional ones (lfsearch's lfs_decay_weights_only); lr from the polynomial
         schedule with linear warm-up, base 0.1, warm-up 2, total 5, power 2 (arcface_torch's
         PolyScheduler formula, written out below), at steps 1, 2, 3 as after a resume.

Every step first clips the model's gradients (not the head's, as arcface_torch clips only
the backbone) with torch.nn.utils.clip_grad_norm_(max_norm 2); the gradients are scaled so
that the clip is active at the second step only (asserted). The head (its own optimizer,
weight decay on) takes the same lr.

Everything runs in float64 from float32 starting values and gradients, so the references
are exact to double rounding. Datasets (names contain dots, never slashes):
  init.<name>                  starting value, float32
  grad.<k>.<name>              gradient given at step k (before clipping), float32,
                               the same in both scenarios
  <sc>.<k>.param.<name>        value after step k, float64
  <sc>.<k>.momentum.<name>     momentum buffer after step k, float64
  <sc>.step, <sc>.lr           the schedule's step index and lr of each of the 3 steps
  <sc>.norm, <sc>.clipped      the norm clip_grad_norm_ returned, and 1 where it scaled
Root attributes: format, format_version, momentum, weight_decay, max_norm.
"""
import sys

import h5py
import numpy as np
import torch

FORMAT = "lfsearch-ref-fixture"
FORMAT_VERSION = 1
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4
MAX_NORM = 2.0
BASE_LR = 0.1
STEPS = 3

# Trainable model tensors in declaration order; their offsets follow in lfs_params.
MODEL = [("conv.weight", (4, 3, 3, 3)), ("bn.weight", (4,)), ("bn.bias", (4,)),
         ("prelu.weight", (4,)), ("fc.weight", (5, 8)), ("fc.bias", (5,))]
HEAD = ("head.weight", (6, 5))
# Gradient scale per step: small, large (clipped), small.
GRAD_SCALE = [0.1, 1.0, 0.2]


def multistep_lrs(steps):
    """torch's MultiStepLR(milestones [2], gamma 0.1) stepped once per optimizer step: the
    lr used by optimizer step s is the one after s scheduler steps."""
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.SGD([p], lr=BASE_LR)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[2], gamma=0.1)
    lrs = []
    for s in range(max(steps) + 1):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return [lrs[s] for s in steps]


def poly_lr(step, warmup=2, total=5, power=2.0):
    """Linear warm-up from 0, then base * (1 - (s - w) / (t - w)) ** power, 0 from t on."""
    if step < warmup:
        return BASE_LR * step / warmup
    s = min(step, total)
    return BASE_LR * (1.0 - (s - warmup) / (total - warmup)) ** power


def make_data(rng):
    init = {n: rng.uniform(-1, 1, size=shape).astype(np.float32) for n, shape in MODEL + [HEAD]}
    grads = []
    for k in range(STEPS):
        grads.append({n: (GRAD_SCALE[k] * rng.uniform(-1, 1, size=shape)).astype(np.float32)
                      for n, shape in MODEL + [HEAD]})
    return init, grads


def run(scenario, init, grads, steps, lrs):
    params = {n: torch.nn.Parameter(torch.tensor(init[n], dtype=torch.float64))
              for n, _ in MODEL + [HEAD]}
    model = [params[n] for n, _ in MODEL]
    if scenario == "all":
        groups = [{"params": model}]
    else:
        groups = [{"params": [params[n] for n, s in MODEL if len(s) >= 2]},
                  {"params": [params[n] for n, s in MODEL if len(s) < 2], "weight_decay": 0.0}]
    opt = torch.optim.SGD(groups, lr=BASE_LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    head_opt = torch.optim.SGD([params[HEAD[0]]], lr=BASE_LR, momentum=MOMENTUM,
                               weight_decay=WEIGHT_DECAY)
    out = {"norm": [], "clipped": []}
    for k in range(STEPS):
        for n, _ in MODEL + [HEAD]:
            params[n].grad = torch.tensor(grads[k][n], dtype=torch.float64)
        norm = float(torch.nn.utils.clip_grad_norm_(model, MAX_NORM))
        out["norm"].append(norm)
        out["clipped"].append(1 if MAX_NORM / (norm + 1e-6) < 1 else 0)
        for o in (opt, head_opt):
            for g in o.param_groups:
                g["lr"] = lrs[k]
            o.step()
        for n, _ in MODEL + [HEAD]:
            st = (head_opt if n == HEAD[0] else opt).state[params[n]]
            out["%d.param.%s" % (k, n)] = params[n].detach().numpy().copy()
            out["%d.momentum.%s" % (k, n)] = st["momentum_buffer"].numpy().copy()
    assert out["clipped"] == [0, 1, 0], "clip pattern %s (norms %s)" % (out["clipped"], out["norm"])
    return out


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "tests/ref/fixtures/sgd.h5"
    torch.set_num_threads(1)
    init, grads = make_data(np.random.RandomState(20240607))
    scenarios = {"all": ([0, 1, 2], multistep_lrs([0, 1, 2])),
                 "wonly": ([1, 2, 3], [poly_lr(s) for s in [1, 2, 3]])}
    with h5py.File(path, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["momentum"] = MOMENTUM
        f.attrs["weight_decay"] = WEIGHT_DECAY
        f.attrs["max_norm"] = MAX_NORM
        for n, _ in MODEL + [HEAD]:
            f["init." + n] = init[n]
            for k in range(STEPS):
                f["grad.%d.%s" % (k, n)] = grads[k][n]
        for sc, (steps, lrs) in scenarios.items():
            out = run(sc, init, grads, steps, lrs)
            f[sc + ".step"] = np.array(steps, dtype=np.float64)
            f[sc + ".lr"] = np.array(lrs, dtype=np.float64)
            f[sc + ".norm"] = np.array(out.pop("norm"), dtype=np.float64)
            f[sc + ".clipped"] = np.array(out.pop("clipped"), dtype=np.float64)
            for key, val in out.items():
                f[sc + "." + key] = val.astype(np.float64)
    print("wrote", path)


if __name__ == "__main__":
    main()
