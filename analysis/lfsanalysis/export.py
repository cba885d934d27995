"""--csv: every per-epoch series of a run as one CSV file (a row per epoch,
1-based epochs as lfsearch prints them), and the comparison table of several
runs. Values are run.h5's at full precision."""
import csv
import os


def _row_values(run, e):
    values = [int(run.epoch[e]) + 1, int(run.chosen[e]), repr(float(run.lr[e])),
              repr(float(run.wall_seconds[e])), repr(float(run.images_per_second[e]))]
    values += [repr(float(x)) for x in run.mu[e]] + [repr(float(x)) for x in run.sigma[e]]
    values += [repr(float(run.metrics[name][e])) for name in sorted(run.metrics)]
    for i in range(run.M):
        values += [repr(float(run.reward[e, i])), repr(float(run.train_loss[e, i]))]
        if run.is_search:
            values.append(repr(float(run.a[e, i])))
            values += [repr(float(x)) for x in run.u[e, i]]
    return values


def _header(run):
    dims = ["" if run.d == 1 else "_%d" % k for k in range(run.d)]
    head = ["epoch", "chosen", "lr", "wall_seconds", "images_per_second"]
    head += ["mu%s" % k for k in dims] + ["sigma%s" % k for k in dims]
    head += sorted(run.metrics)
    for i in range(run.M):
        head += ["reward_%d" % i, "train_loss_%d" % i]
        if run.is_search:
            head.append("a_%d" % i)
            head += ["u_%d%s" % (i, k) for k in dims]
    return head


def write_run(run, path):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(_header(run))
        for e in range(run.epochs_logged):
            w.writerow(_row_values(run, e))
    return path


def write_comparison(groups, path, final_reward, final_test):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "experiment", "seed", "epochs_logged", "final_reward", "final_test"])
        for label, members in groups:
            for r in members:
                fr, ft = final_reward(r), final_test(r)
                w.writerow([r.name, label, r.seed, r.epochs_logged, "" if fr is None else repr(fr),
                            "" if ft is None else repr(ft)])
    return path
