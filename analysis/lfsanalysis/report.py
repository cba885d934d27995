"""The Markdown report: per run a summary, the figures and the per-epoch table;
for several runs a comparison table grouped by experiment (the configuration
apart from seed and paths) with mean +- std over seeds, and overlaid curves."""
import math
import os

import numpy as np

from . import figures

NO_VALUE = "–"


def pct(x):
    """A fraction as a percentage with 2 decimals; -inf (a diverged candidate) and NaN as words."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return NO_VALUE
    if math.isinf(x):
        return "-inf" if x < 0 else "inf"
    return "%.2f" % (100.0 * x)


def num(x, fmt):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return NO_VALUE
    return fmt % x


def mean_std(values):
    """"96.09 ± 0.25" over the finite values (sample std), or one value alone."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if len(v) == 0:
        return NO_VALUE
    if len(v) == 1:
        return "%.2f" % (100.0 * v[0])
    return "%.2f ± %.2f" % (100.0 * v.mean(), 100.0 * v.std(ddof=1))


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def final_reward(run):
    return float(run.winner_reward()[-1]) if run.epochs_logged else None


def final_test(run):
    _, test = run.test_metric()
    return float(test[-1]) if test is not None and run.epochs_logged else None


def progress(run):
    planned = run.epochs_planned
    if run.epochs_logged == 0:
        return "no epoch logged yet (the run has not finished its first epoch, or stopped before)"
    if planned and run.epochs_logged < planned:
        return "%d of %d epochs logged: the run is still going, or stopped or crashed early" % (run.epochs_logged, planned)
    return "all %d epochs logged" % run.epochs_logged


def epoch_table(run):
    """One row per logged epoch; every number is run.h5's, formatted."""
    header = ["epoch", "chosen", "winner reward %", "candidates' rewards %", "train loss (winner)"]
    name, test = run.test_metric()
    if test is not None:
        header.append("test %")
    if run.is_search:
        header += ["mu", "sigma"]
        if run.modulation_axis():
            header += ["a at mu", "CosFace m at mu"]
    header += ["lr", "wall s", "images/s"]
    rows = []
    for e in range(run.epochs_logged):
        c = int(run.chosen[e])
        row = [int(run.epoch[e]) + 1, c, pct(run.reward[e, c]),
               " / ".join(pct(r) for r in run.reward[e]), num(run.train_loss[e, c], "%.4f")]
        if test is not None:
            row.append(pct(test[e]))
        if run.is_search:
            row.append(" / ".join("%.4f" % m for m in run.mu[e]))
            row.append(" / ".join("%.4f" % s for s in run.sigma[e]))
            if run.modulation_axis():
                a_mu = float(run.a_of_u(run.mu[e, 0])) + 0.0  # no "-0"
                row += ["%.4g" % a_mu, "%.4f" % float(run.cosface_margin_of_a(a_mu))]
        row += ["%.4g" % run.lr[e], "%.1f" % run.wall_seconds[e], "%.1f" % run.images_per_second[e]]
        rows.append(row)
    return _table(header, rows)


def _figure_links(run, files):
    captions = {
        "rewards": "Rewards per epoch: every candidate (points), the winner (line), the test accuracy.",
        "policy": "The policy mean ± σ per epoch" + (", as u, as the modulation a and as the "
                                                     "equivalent CosFace margin." if run.modulation_axis() else "."),
        "samples": "Every sampled point against its reward, coloured by epoch.",
        "training": "Training loss per candidate and the winner of each epoch." if run.M > 1 else "Training loss per epoch.",
    }
    out = []
    for key in ("rewards", "policy", "samples", "training"):
        if files.get(key):
            out.append("![%s](%s)\n\n*%s*" % (key, files[key], captions[key]))
    return "\n\n".join(out)


def run_section(run, files):
    lines = ["## %s" % run.name, ""]
    lines.append("- run log: `%s`" % run.path)
    lines.append("- what: %s; model %s; seed %s" % (run.kind, run.setting("model", "arch", "?"), run.seed))
    lines.append("- progress: %s" % progress(run))
    if run.epochs_logged:
        last = run.epochs_logged - 1
        summary = "- last epoch (%d): winner %d, reward %s %%" % (last + 1, int(run.chosen[last]), pct(final_reward(run)))
        if final_test(run) is not None:
            summary += ", test %s %%" % pct(final_test(run))
        if run.is_search:
            summary += "; policy mu %s, sigma %s" % (" / ".join("%.4f" % m for m in run.mu[last]),
                                                     " / ".join("%.4f" % s for s in run.sigma[last]))
        lines.append(summary)
        diverged = int(np.sum(~np.isfinite(run.reward)))
        if diverged:
            lines.append("- diverged candidates (reward -inf): %d over the run" % diverged)
    lines.append("")
    figs = _figure_links(run, files)
    if figs:
        lines += [figs, ""]
    if run.epochs_logged:
        lines += ["### Per epoch", "", epoch_table(run), ""]
    return "\n".join(lines)


def group_runs(runs):
    """[(label, [runs])] in first-seen order; runs with equal experiment keys share a group."""
    groups, order = {}, []
    for run in runs:
        key = run.experiment_key()
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(run)
    labels = {k: "%s, %s" % (groups[k][0].kind, groups[k][0].setting("model", "arch", "?")) for k in order}
    # experiments with one label: add the settings that tell them apart
    for label in set(labels.values()):
        same = [k for k in order if labels[k] == label]
        if len(same) < 2:
            continue
        dicts = [dict(k) for k in same]
        keys = sorted(set().union(*dicts))
        differing = [k for k in keys if len({d.get(k) for d in dicts}) > 1]
        for k, d in zip(same, dicts):
            extra = ", ".join("%s.%s = %s" % (s, n, d.get((s, n), "")) for s, n in differing[:3])
            labels[k] = "%s (%s)" % (label, extra)
    return [(labels[k], groups[k]) for k in order]


def comparison_section(groups, figure):
    lines = ["## Comparison", ""]
    rows = []
    for label, members in groups:
        rows.append([label, len(members), ", ".join(r.seed for r in members),
                     " / ".join(str(r.epochs_logged) for r in members),
                     mean_std([final_reward(r) for r in members]), mean_std([final_test(r) for r in members])])
    lines += ["Final epoch of each run; mean ± sample standard deviation over the runs (seeds) of an experiment.", ""]
    lines += [_table(["experiment", "runs", "seeds", "epochs logged", "final reward %", "final test %"], rows), ""]
    per_run = [[r.name, label, r.seed, r.epochs_logged, pct(final_reward(r)), pct(final_test(r))]
               for label, members in groups for r in members]
    lines += ["Per run:", "", _table(["run", "experiment", "seed", "epochs", "final reward %", "final test %"], per_run), ""]
    if figure:
        lines += ["![comparison](%s)" % figure, "",
                  "*The winner's reward and the test accuracy per epoch, one colour per experiment.*", ""]
    return "\n".join(lines)


def unique_names(runs):
    """Gives runs with the same directory name distinct names (name, name-2, ...)."""
    seen = {}
    for run in runs:
        base = run.name
        n = seen.get(base, 0) + 1
        seen[base] = n
        if n > 1:
            run.label = "%s-%d" % (base, n)
    return runs


def write(runs, out):
    """Draws every figure and writes out/report.md; returns its path."""
    os.makedirs(out, exist_ok=True)
    sections = []
    for run in runs:
        d = os.path.join(out, run.name)
        os.makedirs(d, exist_ok=True)
        files = {}
        for key, draw in (("rewards", figures.rewards), ("policy", figures.policy),
                          ("samples", figures.samples), ("training", figures.training)):
            path = draw(run, os.path.join(d, key + ".png"))
            if path:
                files[key] = os.path.relpath(path, out)
        sections.append(run_section(run, files))
    head = ["# lfsearch report", "",
            "%d run log%s: %s." % (len(runs), "" if len(runs) == 1 else "s",
                                   ", ".join("`%s`" % r.path for r in runs)), ""]
    if len(runs) > 1:
        groups = group_runs(runs)
        fig = figures.comparison(groups, os.path.join(out, "comparison.png"))
        head.append(comparison_section(groups, os.path.relpath(fig, out) if fig else None))
    path = os.path.join(out, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(head + sections))
    return path
