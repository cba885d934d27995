#!/usr/bin/python3
"""gen_eval_fixture.py: writes the verification-protocol fixtures that tests/unit/test_eval.c reads.

Needs numpy and h5py only (no sklearn, no torch); CI never runs it and reads the committed files:

    /usr/bin/python3 tests/ref/gen_eval_fixture.py [OUTDIR]     # default: tests/ref/fixtures

The expected values come from a plain numpy re-implementation of the protocol in
include/lfs/eval.h (insightface's arcface_torch eval/verification.py for the ten folds;
lfsearch's own definitions for TAR@FAR, AUC and EER), written the slow, obvious way:
a [thresholds, pairs] matrix of decisions, fold sizes as sklearn's KFold, argmax over the
nine training folds; AUC from the full genuine x impostor comparison matrix. The C code
uses histograms and one sort instead, so agreement is a real check.

Fixtures (deterministic: numpy's PCG64 with fixed seeds):
  eval_600.h5    600 pairs in LFW's layout (each of the ten folds: 30 genuine, then 30
                 impostor pairs); "plain" and "flipped" float32 [1200, 8] raw embeddings
                 (norms ~ 20, as a network's), "emb" float32 [1200, 8] = normalize(plain +
                 flipped) computed in float64 and rounded, "dist" float64 [600] from "emb".
  eval_6000.h5   6000 pairs in LFW's layout (300 + 300 per fold), LFW-like (about 99 %, so
                 that several thresholds tie on training accuracy);
                 "dist" float32 [6000] (the reference works on these values in float64).
  eval_ties.h5   12003 pairs (uneven folds), 2003 genuine and 10000 impostor in random
                 order, distances rounded to multiples of 1/64: many ties, some exactly on
                 thresholds (0.25 = 25 * 0.01), TAR@FAR=1e-4 available.
Every file: "issame" uint8 [N]; expected "fold_acc", "fold_threshold", "fold_size" [10],
"tar", "tar_available", "tar_threshold", "far_achieved" [2] (NaN where not available);
root attributes acc_mean, acc_std, best_threshold_mean, auc, eer, eer_threshold, n_genuine,
n_impostor, format, format_version.
"""
import os
import sys

import h5py
import numpy as np

FORMAT = "lfsearch-eval-fixture"
FORMAT_VERSION = 1
FOLDS = 10
THRESHOLDS = np.arange(0, 4, 0.01)
FARS = [(1e-3, 1000), (1e-4, 10000)]


# ---- the reference protocol -------------------------------------------------------------

def fold_slices(n):
    """Contiguous folds; the first n % 10 get one pair more (sklearn's KFold sizing)."""
    sizes = [n // FOLDS + (1 if f < n % FOLDS else 0) for f in range(FOLDS)]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return [slice(int(s), int(s + c)) for s, c in zip(starts, sizes)]


def ten_folds(dist, issame):
    same = issame.astype(bool)
    # right[k, i]: pair i is classified correctly at threshold k ("same" iff d < t).
    right = (dist[None, :] < THRESHOLDS[:, None]) == same[None, :]
    n = len(dist)
    acc, thr, size = [], [], []
    for sl in fold_slices(n):
        train = np.ones(n, dtype=bool)
        train[sl] = False
        train_acc = right[:, train].sum(axis=1) / float(train.sum())
        best = int(np.argmax(train_acc))  # first maximum: the lowest threshold
        acc.append(right[best, sl].sum() / float(sl.stop - sl.start))
        thr.append(THRESHOLDS[best])
        size.append(sl.stop - sl.start)
    acc = np.array(acc)
    return acc, np.array(thr), np.array(size, dtype=np.float64)


def tar_at_far(dist, issame):
    gen = np.sort(dist[issame == 1])
    imp = np.sort(dist[issame == 0])
    tar, avail, thr, far_ach = [], [], [], []
    for _, denom in FARS:
        k = len(imp) // denom
        if k < 1:
            tar.append(np.nan), avail.append(0), thr.append(np.nan), far_ach.append(np.nan)
            continue
        s = imp[k]
        tar.append(np.count_nonzero(gen < s) / len(gen))
        far_ach.append(np.count_nonzero(imp < s) / len(imp))
        avail.append(1)
        thr.append(s)
    return np.array(tar), np.array(avail, dtype=np.float64), np.array(thr), np.array(far_ach)


def auc(dist, issame):
    gen = dist[issame == 1]
    imp = dist[issame == 0]
    wins = np.count_nonzero(gen[:, None] < imp[None, :])
    ties = np.count_nonzero(gen[:, None] == imp[None, :])
    return (wins + 0.5 * ties) / (len(gen) * len(imp))


def eer(dist, issame):
    """Operating points "accept d <= u" for each distinct u, preceded by "accept nothing";
    the EER is where the segment across the first sign change of FAR - FRR meets FAR = FRR."""
    gen = np.sort(dist[issame == 1])
    imp = np.sort(dist[issame == 0])
    u = np.unique(dist)
    far = np.concatenate([[0.0], np.searchsorted(imp, u, side="right") / len(imp)])
    frr = np.concatenate([[1.0], (len(gen) - np.searchsorted(gen, u, side="right")) / len(gen)])
    uu = np.concatenate([[0.0], u])
    diff = far - frr
    j = int(np.nonzero(diff >= 0)[0][0])
    a = -diff[j - 1] / (diff[j] - diff[j - 1])
    return far[j - 1] + a * (far[j] - far[j - 1]), uu[j - 1] + a * (uu[j] - uu[j - 1])


def expected(dist, issame):
    acc, thr, size = ten_folds(dist, issame)
    tar, avail, tthr, far_ach = tar_at_far(dist, issame)
    e, ethr = eer(dist, issame)
    return {
        "datasets": {"fold_acc": acc, "fold_threshold": thr, "fold_size": size, "tar": tar,
                     "tar_available": avail, "tar_threshold": tthr, "far_achieved": far_ach},
        "attrs": {"acc_mean": np.mean(acc), "acc_std": np.std(acc),
                  "best_threshold_mean": np.mean(thr), "auc": auc(dist, issame), "eer": e,
                  "eer_threshold": ethr, "n_genuine": int(issame.sum()),
                  "n_impostor": int(len(issame) - issame.sum())},
    }


# ---- synthetic embeddings ---------------------------------------------------------------

def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def lfw_layout(n_per_half):
    """issame for ten folds of n_per_half genuine pairs followed by n_per_half impostors."""
    fold = np.concatenate([np.ones(n_per_half), np.zeros(n_per_half)])
    return np.tile(fold, FOLDS).astype(np.uint8)


def pair_embeddings(rng, issame, dim, noise):
    """Unit identity vectors, one image = identity + noise; impostor pairs use two identities."""
    n = len(issame)
    id1 = unit(rng.standard_normal((n, dim)))
    other = unit(rng.standard_normal((n, dim)))
    id2 = np.where(issame[:, None] == 1, id1, other)
    img1 = unit(id1 + noise * rng.standard_normal((n, dim)))
    img2 = unit(id2 + noise * rng.standard_normal((n, dim)))
    return img1, img2


def sq_dist(a, b):
    return np.sum(np.square(a.astype(np.float64) - b.astype(np.float64)), axis=1)


def make_600(rng):
    issame = lfw_layout(30)
    dim = 8
    img1, img2 = pair_embeddings(rng, issame, dim, 0.2)
    imgs = np.empty((1200, dim))
    imgs[0::2], imgs[1::2] = img1, img2
    # A network's raw outputs: norms around 20; the flip's embedding is close to the image's.
    scale = rng.uniform(15.0, 25.0, size=(1200, 1))
    plain = (scale * imgs).astype(np.float32)
    flipped = (scale * unit(imgs + 0.1 * rng.standard_normal(imgs.shape))).astype(np.float32)
    s = plain.astype(np.float64) + flipped.astype(np.float64)
    emb = (s / np.linalg.norm(s, axis=1, keepdims=True)).astype(np.float32)
    dist = sq_dist(emb[0::2], emb[1::2])
    data = {"plain": plain, "flipped": flipped, "emb": emb, "dist": dist, "issame": issame}
    return data, dist, issame


def make_6000(rng):
    issame = lfw_layout(300)
    img1, img2 = pair_embeddings(rng, issame, 32, 0.13)
    dist = sq_dist(img1, img2).astype(np.float32)
    return {"dist": dist, "issame": issame}, dist.astype(np.float64), issame


def make_ties(rng):
    n, n_gen = 12003, 2003
    issame = np.zeros(n, dtype=np.uint8)
    issame[:n_gen] = 1
    issame = issame[rng.permutation(n)]
    img1, img2 = pair_embeddings(rng, issame, 16, 0.2)
    dist = (np.round(sq_dist(img1, img2) * 64.0) / 64.0).astype(np.float32)
    return {"dist": dist, "issame": issame}, dist.astype(np.float64), issame


# ---- writing ----------------------------------------------------------------------------

def write(path, data, exp):
    tmp = path + ".tmp"
    with h5py.File(tmp, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        for name, arr in data.items():
            f.create_dataset(name, data=arr)
        for name, arr in exp["datasets"].items():
            f.create_dataset(name, data=np.asarray(arr, dtype=np.float64))
        for name, v in exp["attrs"].items():
            f.attrs[name] = v
    os.replace(tmp, path)
    a = exp["attrs"]
    print("%s: %d pairs, accuracy %.4f +- %.4f, threshold %.3f, AUC %.5f, EER %.4f, TAR %s"
          % (path, len(data["issame"]), a["acc_mean"], a["acc_std"], a["best_threshold_mean"],
             a["auc"], a["eer"], exp["datasets"]["tar"]))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "fixtures")
    os.makedirs(outdir, exist_ok=True)
    for name, make, seed in [("eval_600.h5", make_600, 600), ("eval_6000.h5", make_6000, 6000),
                             ("eval_ties.h5", make_ties, 12003)]:
        data, dist, issame = make(np.random.default_rng(seed))
        write(os.path.join(outdir, name), data, expected(dist, issame))


if __name__ == "__main__":
    main()
