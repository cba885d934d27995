"""The figures of a run report (PNG, matplotlib's Agg backend: no display needed).

Each function draws one figure of one Run (or of several, for the comparison),
saves it under the given path and returns the path, or None when the run has
nothing to show in it (no epochs yet; no policy for a fixed-loss run).
"""
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import numpy as np  # noqa: E402

WIDTH, HEIGHT, DPI = 9.0, 5.0, 110


def _finish(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _percent(x):
    return 100.0 * np.asarray(x, dtype=np.float64)


def _epochs(run):
    """Epoch numbers as printed by lfsearch (1-based)."""
    return run.epoch + 1


def _integer_epochs(ax):
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("epoch")


def rewards(run, path):
    """Every candidate's reward per epoch (points), the winner's (line), the test accuracy."""
    if run.epochs_logged == 0:
        return None
    fig, ax = plt.subplots(figsize=(WIDTH, HEIGHT))
    ep = _epochs(run)
    finite = np.isfinite(run.reward)
    if run.M > 1:
        xs = np.repeat(ep[:, None], run.M, axis=1)
        ax.scatter(xs[finite], _percent(run.reward[finite]), s=18, color="tab:blue", alpha=0.45,
                   label="candidates (M = %d)" % run.M)
        diverged = ~finite
        if diverged.any():
            low = np.nanmin(_percent(run.reward[finite])) if finite.any() else 0.0
            ax.scatter(xs[diverged], np.full(diverged.sum(), low), marker="x", color="tab:red",
                       label="diverged (reward -inf)")
    label = "winner's reward" if run.is_search else "validation accuracy (the reward)"
    ax.plot(ep, _percent(run.winner_reward()), "-o", color="tab:blue", ms=4, label=label)
    name, test = run.test_metric()
    if test is not None:
        ax.plot(ep, _percent(test), "-s", color="tab:orange", ms=4, label="test accuracy (%s)" % name)
    ax.set_ylabel("verification accuracy (%)")
    _integer_epochs(ax)
    what = "rewards" if run.is_search else "validation and test accuracy"
    ax.set_title("%s: %s per epoch (%s)" % (run.name, what, run.kind))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return _finish(fig, path)


def policy(run, path):
    """The policy mean +- sigma per epoch on the space's own axis; for the
    Search-Softmax space also as the modulation a (log scale) and the CosFace margin."""
    if not run.is_search or run.epochs_logged == 0:
        return None
    ep = _epochs(run)
    if run.modulation_axis():
        return _policy_search_softmax(run, ep, path)
    d = run.d
    cols = min(d, 4)
    rows = int(math.ceil(d / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(WIDTH, HEIGHT if d == 1 else max(3.0, 2.6 * rows)), squeeze=False)
    names = run.dimension_names()
    for k in range(rows * cols):
        ax = axes[k // cols][k % cols]
        if k >= d:
            ax.axis("off")
            continue
        mu, sd = run.mu[:, k], run.sigma[:, k]
        _shade_warmup(ax, run)
        ax.fill_between(ep, mu - sd, mu + sd, color="tab:green", alpha=0.2, label=r"$\mu \pm \sigma$")
        ax.plot(ep, mu, "-o", color="tab:green", ms=3, label=r"$\mu$")
        ax.set_title(names[k], fontsize=10)
        _integer_epochs(ax)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle("%s: the policy per epoch (%s space, d = %d)" % (run.name, run.space, d))
    return _finish(fig, path)


def _folded_quantile(mu, sigma, q):
    """The q-quantile of |u| for u ~ N(mu, sigma^2) (bisection on its CDF)."""
    if sigma <= 0:
        return abs(mu)
    def cdf(x):
        return 0.5 * (math.erf((x - mu) / (sigma * math.sqrt(2))) - math.erf((-x - mu) / (sigma * math.sqrt(2))))
    lo, hi = 0.0, abs(mu) + 10 * sigma
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if cdf(mid) < q:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _shade_warmup(ax, run):
    w = min(run.warmup_epochs, run.epochs_logged)
    if w > 0:
        ax.axvspan(0.5, w + 0.5, color="0.85", alpha=0.6, lw=0, label="warm-up (fixed point, not sampled)")


def _policy_search_softmax(run, ep, path):
    """Search-Softmax: a = -|u| e^{s/3} folds u at 0, so the policy's a is shown by
    the median and the 16-84 % range of |u| under N(mu, sigma^2), with the sampled
    a of every candidate as points."""
    fig, (ax_u, ax_a, ax_m) = plt.subplots(1, 3, figsize=(WIDTH * 1.4, HEIGHT))
    mu, sd = run.mu[:, 0], run.sigma[:, 0]
    _shade_warmup(ax_u, run)
    ax_u.fill_between(ep, mu - sd, mu + sd, color="tab:green", alpha=0.2, label=r"$\mu \pm \sigma$")
    ax_u.plot(ep, mu, "-o", color="tab:green", ms=4, label=r"$\mu$")
    ax_u.set_ylabel(r"$u$   (the sample's $a = -|u|\,e^{s/3}$)")
    ax_u.set_title("policy on its own axis $u$")
    ax_u.legend(fontsize=8)
    grow = math.exp(run.scale / 3.0)
    median = np.array([_folded_quantile(m, s_, 0.5) for m, s_ in zip(mu, sd)]) * grow
    low = np.array([_folded_quantile(m, s_, 0.16) for m, s_ in zip(mu, sd)]) * grow
    high = np.array([_folded_quantile(m, s_, 0.84) for m, s_ in zip(mu, sd)]) * grow
    floor = 1.0
    xs = np.repeat(ep[:, None], run.M, axis=1)
    for ax, transform, ylabel, title in (
            (ax_a, lambda v: np.maximum(v, floor), r"$-a$ (log scale)", "modulation $a$ of the policy"),
            (ax_m, lambda v: run.cosface_margin_of_a(-v), r"CosFace margin $m = \ln(1 - a)\,/\,s$",
             "equivalent CosFace margin ($s$ = %g)" % run.scale)):
        _shade_warmup(ax, run)
        ax.fill_between(ep, transform(low), transform(high), color="tab:purple", alpha=0.18,
                        label="policy: 16-84 % of samples")
        ax.plot(ep, transform(median), "-o", color="tab:purple", ms=4, label="policy: median")
        ax.scatter(xs.ravel(), transform(-run.a.ravel()), s=12, color="black", alpha=0.5,
                   label="trained with (each candidate)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend(fontsize=7, loc="best")
    ax_a.set_yscale("log")
    for ax in (ax_u, ax_a, ax_m):
        _integer_epochs(ax)
        ax.grid(alpha=0.3)
    fig.suptitle("%s: the policy per epoch (%s, M = %d)" % (run.name, run.space, run.M))
    return _finish(fig, path)


def samples(run, path):
    """Every sampled point against its reward, coloured by epoch."""
    if not run.is_search or run.epochs_logged == 0:
        return None
    # warm-up epochs train at a fixed point, not at samples of the policy
    sampled = np.repeat((run.epoch >= run.warmup_epochs)[:, None], run.M, axis=1)
    finite = np.isfinite(run.reward) & sampled
    if not finite.any():
        return None
    ep = np.repeat(_epochs(run)[:, None], run.M, axis=1)
    if run.modulation_axis():
        x = np.maximum(-run.a, 1e-1)
        xlabel = "-a of the sample (log scale)"
        panels = [(x, xlabel, True)]
    else:
        names = run.dimension_names()
        panels = [(run.u[:, :, k], names[k], False) for k in range(min(run.d, 4))]
    fig, axes = plt.subplots(1, len(panels), figsize=(WIDTH, HEIGHT), squeeze=False)
    for ax, (x, xlabel, logx) in zip(axes[0], panels):
        sc = ax.scatter(x[finite], _percent(run.reward[finite]), c=ep[finite], cmap="viridis", s=24,
                        vmin=ep[finite].min(), vmax=ep[finite].max())
        if logx:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("reward: verification accuracy (%)")
        ax.grid(alpha=0.3)
    bar = fig.colorbar(sc, ax=axes[0].tolist(), label="epoch")
    bar.locator = matplotlib.ticker.MaxNLocator(integer=True)
    bar.update_ticks()
    title = "%s: sampled points against their reward" % run.name
    if run.warmup_epochs:
        title += " (after the %d warm-up epoch%s)" % (run.warmup_epochs, "" if run.warmup_epochs == 1 else "s")
    if run.d > 4:
        title += " (first 4 of %d dimensions)" % run.d
    fig.suptitle(title)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def training(run, path):
    """Training loss per candidate, and which candidate won each epoch."""
    if run.epochs_logged == 0:
        return None
    ep = _epochs(run)
    if run.M == 1:
        fig, ax = plt.subplots(figsize=(WIDTH, HEIGHT))
        ax.plot(ep, run.train_loss[:, 0], "-o", ms=4)
        ax.set_ylabel("mean training loss over the epoch")
        _integer_epochs(ax)
        ax.grid(alpha=0.3)
        ax.set_title("%s: training loss (%s)" % (run.name, run.kind))
        return _finish(fig, path)
    fig, (ax_l, ax_w) = plt.subplots(1, 2, figsize=(WIDTH * 1.2, HEIGHT), gridspec_kw={"width_ratios": [3, 2]})
    colors = plt.get_cmap("tab10")
    for i in range(run.M):
        ax_l.plot(ep, run.train_loss[:, i], "-o", ms=3, color=colors(i % 10), label="candidate %d" % i)
    ax_l.set_ylabel("mean training loss over the epoch")
    ax_l.set_title("training loss per candidate (each its own loss: a larger -a raises it)", fontsize=10)
    ax_l.legend(fontsize=8, ncol=2 if run.M > 4 else 1)
    ax_w.scatter(ep, run.chosen, c=[colors(int(c) % 10) for c in run.chosen], s=60)
    ax_w.set_yticks(range(run.M))
    ax_w.set_ylim(-0.5, run.M - 0.5)
    ax_w.set_ylabel("candidate")
    ax_w.set_title("winner of each epoch")
    for ax in (ax_l, ax_w):
        _integer_epochs(ax)
        ax.grid(alpha=0.3)
    fig.suptitle("%s: training (%s)" % (run.name, run.kind))
    return _finish(fig, path)


def comparison(groups, path):
    """Several runs: the winner's reward and the test accuracy per epoch,
    one colour per experiment (the seeds of one experiment share it)."""
    runs = [r for _, members in groups for r in members if r.epochs_logged]
    if not runs:
        return None
    fig, (ax_r, ax_t) = plt.subplots(1, 2, figsize=(WIDTH * 1.35, HEIGHT), sharex=True)
    colors = plt.get_cmap("tab10")
    for g, (label, members) in enumerate(groups):
        for j, run in enumerate([r for r in members if r.epochs_logged]):
            kw = dict(color=colors(g % 10), ms=3, alpha=0.85, label=label if j == 0 else None)
            ax_r.plot(_epochs(run), _percent(run.winner_reward()), "-o", **kw)
            _, test = run.test_metric()
            if test is not None:
                ax_t.plot(_epochs(run), _percent(test), "-o", **kw)
    ax_r.set_title("reward (winner; validation accuracy for training runs)")
    ax_t.set_title("test accuracy")
    for ax in (ax_r, ax_t):
        ax.set_ylabel("verification accuracy (%)")
        _integer_epochs(ax)
        ax.grid(alpha=0.3)
    ax_t.legend(fontsize=8, loc="best")
    fig.suptitle("%d runs in %d experiments (one colour per experiment, one line per seed)" % (len(runs), len(groups)))
    return _finish(fig, path)
