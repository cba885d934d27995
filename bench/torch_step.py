#!/usr/bin/python3
"""torch_step.py: the PyTorch side of bench/compare_pytorch.sh. Times the training
step lfsearch's `bench --train` times: the model (iresnet tiny/r18, MobileFaceNet
mbf, built here from DESIGN §4 as lfsearch builds them), a cosine head with the
ArcFace margin over K classes, backward, SGD (momentum 0.9, weight decay 5e-4).
Input NCHW float32 [B, 3, S, S]. Prints one line: `images/s <rate>`, the best of
`--repeats` timed runs of `--steps` steps each, after `--warmup` steps.
Usage: torch_step.py --model tiny --size 32 --batch 64 --threads 1 [--classes 1000]
                     [--device cuda] [--no-tf32] [--profile]
On CUDA the timed runs end with a synchronisation, and TF32 is on unless --no-tf32
(as lfsearch's CUDA backend). --profile then runs --steps more steps under
torch.profiler and prints the GPU kernels' time per step, largest first, and
the share of the convolutions' kernels: what `LFS_PROFILE=1 lfsearch bench
--train` prints for lfsearch.
"""
import argparse
import math
import re
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

EPS = 1e-5


class IBasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride, downsample):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=EPS)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=EPS)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=EPS)
        self.downsample = None
        if downsample:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes, eps=EPS))

    def forward(self, x):
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (self.downsample(x) if self.downsample is not None else x)


class IResNet(nn.Module):
    def __init__(self, widths, depths, size, embedding):
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0], eps=EPS)
        self.prelu = nn.PReLU(widths[0])
        blocks, inplanes = [], widths[0]
        for w, d in zip(widths, depths):
            for b in range(d):
                blocks.append(IBasicBlock(inplanes, w, 2 if b == 0 else 1, b == 0))
                inplanes = w
        self.blocks = nn.Sequential(*blocks)
        self.bn2 = nn.BatchNorm2d(inplanes, eps=EPS)
        self.fc = nn.Linear(inplanes * (size // 16) ** 2, embedding)
        self.features = nn.BatchNorm1d(embedding, eps=EPS)
        self.features.weight.requires_grad = False

    def forward(self, x):
        x = self.blocks(self.prelu(self.bn1(self.conv1(x))))
        return self.features(self.fc(torch.flatten(self.bn2(x), 1)))


def conv_block(cin, cout, k, stride, pad, groups, act=True):
    layers = [nn.Conv2d(cin, cout, k, stride, pad, groups=groups, bias=False),
              nn.BatchNorm2d(cout, eps=EPS)]
    if act:
        layers.append(nn.PReLU(cout))
    return nn.Sequential(*layers)


class DepthWise(nn.Module):
    def __init__(self, cin, cout, stride, groups, residual):
        super().__init__()
        self.residual = residual
        self.layers = nn.Sequential(conv_block(cin, groups, 1, 1, 0, 1),
                                    conv_block(groups, groups, 3, stride, 1, groups),
                                    conv_block(groups, cout, 1, 1, 0, 1, act=False))

    def forward(self, x):
        y = self.layers(x)
        return y + x if self.residual else y


def residual(c, count, groups):
    return nn.Sequential(*[DepthWise(c, c, 1, groups, True) for _ in range(count)])


class MobileFaceNet(nn.Module):
    def __init__(self, blocks, scale, embedding):
        super().__init__()
        c1, c2 = 64 * scale, 128 * scale
        self.layers = nn.Sequential(
            conv_block(3, c1, 3, 2, 1, 1),
            conv_block(c1, c1, 3, 1, 1, 64) if blocks[0] == 1 else residual(c1, blocks[0], 128),
            DepthWise(c1, c1, 2, 128, False), residual(c1, blocks[1], 128),
            DepthWise(c1, c2, 2, 256, False), residual(c2, blocks[2], 256),
            DepthWise(c2, c2, 2, 512, False), residual(c2, blocks[3], 256))
        self.conv_sep = conv_block(c2, 512, 1, 1, 0, 1)
        self.gdc = conv_block(512, 512, 7, 1, 0, 512, act=False)
        self.fc = nn.Linear(512, embedding, bias=False)
        self.features = nn.BatchNorm1d(embedding, eps=EPS)

    def forward(self, x):
        x = self.gdc(self.conv_sep(self.layers(x)))
        return self.features(self.fc(torch.flatten(x, 1)))


def build(model, size, embedding):
    if model == "tiny":
        return IResNet((16, 32, 64, 128), (1, 1, 1, 1), size, embedding)
    if model == "r18":
        return IResNet((64, 128, 256, 512), (2, 2, 2, 2), size, embedding)
    if model == "r50":
        return IResNet((64, 128, 256, 512), (3, 4, 14, 3), size, embedding)
    if model == "r100":
        return IResNet((64, 128, 256, 512), (3, 13, 30, 3), size, embedding)
    if model == "mbf":
        return MobileFaceNet((1, 4, 6, 2), 2, embedding)
    raise SystemExit(f"torch_step.py: unknown model '{model}' (tiny, r18, r50, r100, mbf)")


def arcface_loss(emb, weight, labels, s=64.0, m=0.5):
    cos = F.linear(F.normalize(emb), F.normalize(weight)).clamp(-1.0, 1.0)
    target = cos.gather(1, labels[:, None])
    with_margin = torch.cos(torch.acos(target) + m)
    logits = cos.scatter(1, labels[:, None], with_margin) * s
    return F.cross_entropy(logits, labels)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--embedding", type=int, default=512)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-tf32", action="store_true")
    ap.add_argument("--profile", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    dev = torch.device(a.device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = not a.no_tf32
        torch.backends.cudnn.allow_tf32 = not a.no_tf32
        torch.backends.cudnn.benchmark = True
    net = build(a.model, a.size, a.embedding).train().to(dev)
    weight = nn.Parameter((torch.randn(a.classes, a.embedding) * 0.01).to(dev))
    opt = torch.optim.SGD(list(net.parameters()) + [weight], lr=0.1, momentum=0.9,
                          weight_decay=5e-4)
    x = (torch.rand(a.batch, 3, a.size, a.size) * 2 - 1).to(dev)
    labels = torch.randint(0, a.classes, (a.batch,)).to(dev)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def step():
        opt.zero_grad(set_to_none=False)
        arcface_loss(net(x), weight, labels).backward()
        opt.step()

    for _ in range(a.warmup):
        step()
    sync()
    best = math.inf
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        for _ in range(a.steps):
            step()
        sync()
        best = min(best, time.perf_counter() - t0)
    print(f"images/s {a.batch * a.steps / best:.1f}")
    if a.profile:
        profile(step, sync, a.steps, dev.type == "cuda")


# cuDNN's and cuBLAS's convolution kernels and the layout transforms around them
CONV_KERNEL = re.compile(r"conv|cudnn|xmma|implicit|dgrad|wgrad|fprop|nchwToNhwc|nhwcToNchw",
                         re.IGNORECASE)


def profile(step, sync, steps, cuda):
    """Kernel time per step on CUDA (on the CPU: operators' self time)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile
    activity = ProfilerActivity.CUDA if cuda else ProfilerActivity.CPU
    with torch_profile(activities=[activity]) as prof:
        for _ in range(steps):
            step()
        sync()
    want = DeviceType.CUDA if cuda else DeviceType.CPU
    rows = {}
    for e in prof.events():
        if e.device_type != want:
            continue
        us = e.time_range.elapsed_us() if cuda else e.self_cpu_time_total
        row = rows.setdefault(e.name, [0, 0.0])
        row[0] += 1
        row[1] += us
    total = sum(r[1] for r in rows.values())
    conv = sum(r[1] for name, r in rows.items() if CONV_KERNEL.search(name))
    print(f"profile: {'GPU kernels' if cuda else 'CPU operators'} {total / steps / 1000:.2f} "
          f"ms/step, convolutions "
          f"{conv / steps / 1000:.2f} ms ({100 * conv / max(total, 1e-9):.1f} %)")
    print(f"{'ms/step':>9} {'calls/step':>10}  kernel")
    for name, (calls, us) in sorted(rows.items(), key=lambda kv: -kv[1][1])[:30]:
        print(f"{us / steps / 1000:9.3f} {calls / steps:10.1f}  {name[:110]}")


if __name__ == "__main__":
    main()
