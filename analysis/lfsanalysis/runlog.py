"""Reading lfsearch run logs (run.h5, layout in include/lfs/runlog.h).

A Run holds every per-epoch series of one `lfsearch search` or `lfsearch train`
run as numpy arrays with E rows (E = epochs logged so far: a run that is still
going, was stopped or crashed simply has fewer rows than its schedule), plus
its resolved configuration. run.h5 is replaced atomically after every epoch,
so it can be read while the run goes on.
"""
import configparser
import math
import os

import h5py
import numpy as np

FORMAT = "lfsearch-run"
FORMAT_VERSION = 1

# keys that differ between the seeds or copies of one experiment without
# changing it: runs that differ only in these belong to one group
_NOT_THE_EXPERIMENT = {
    ("run", "seed"), ("run", "name"), ("run", "out_dir"), ("run", "log_every"),
    ("run", "threads"), ("checkpoint", "dir"), ("checkpoint", "keep"),
}


class RunLogError(Exception):
    """A run log that cannot be read: the message names the file and the problem."""


def _text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def _parse_config(text, path):
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",))
    try:
        parser.read_string(text)
    except configparser.Error as e:
        raise RunLogError("%s: its stored configuration does not parse: %s" % (path, e))
    return {(s, k): v.strip() for s in parser.sections() for k, v in parser.items(s)}


def resolve_path(target):
    """run.h5 of a run directory, or the file itself."""
    if os.path.isdir(target):
        path = os.path.join(target, "run.h5")
        if not os.path.exists(path):
            raise RunLogError("%s: no run.h5 in this directory (not an lfsearch run, or it has "
                              "not finished its first epoch)" % target)
        return path
    if not os.path.exists(target):
        raise RunLogError("%s: no such file or directory" % target)
    return target


class Run:
    """One run log. Series (numpy, E rows):
    epoch [E]; u [E, M, d]; a, reward, train_loss [E, M]; chosen [E] (int);
    mu, sigma [E, d]; lr, wall_seconds, images_per_second [E];
    metrics: name -> [E] (e.g. test_acc, val_acc).
    For a fixed-loss run (`lfsearch train`) d = 0, M = 1 and u, a, mu, sigma
    have no columns."""

    def __init__(self, target):
        self.path = resolve_path(target)
        self.directory = os.path.dirname(os.path.abspath(self.path))
        self.label = None  # set when two runs share a directory name
        try:
            with h5py.File(self.path, "r") as f:
                self._read(f)
        except OSError as e:
            raise RunLogError("%s: not a readable HDF5 file (%s)" % (self.path, e))
        except KeyError as e:
            raise RunLogError("%s: missing %s" % (self.path, e))

    def _read(self, f):
        fmt = _text(f.attrs.get("format", ""))
        if fmt != FORMAT:
            raise RunLogError("%s: format is \"%s\", not an lfsearch run log (%s)" % (self.path, fmt, FORMAT))
        version = int(f.attrs.get("format_version", -1))
        if version != FORMAT_VERSION:
            raise RunLogError("%s: format_version %d, this script reads %d" % (self.path, version, FORMAT_VERSION))
        self.M = int(f.attrs["M"])
        self.d = int(f.attrs["d"])
        self.config_text = _text(f.attrs.get("config", ""))
        self.config = _parse_config(self.config_text, self.path)
        self.epoch = np.asarray(f["epoch"][...], dtype=np.int64)
        E = len(self.epoch)
        self.reward = self._matrix(f, "reward", E)
        self.train_loss = self._matrix(f, "train_loss", E)
        self.chosen = np.asarray(f["chosen"][...], dtype=np.int64)
        if self.d > 0:
            u = np.asarray(f["u"][...], dtype=np.float64)
            self.u = u.reshape(E, self.M, self.d)
            self.a = self._matrix(f, "a", E)
            self.mu = np.asarray(f["mu"][...], dtype=np.float64).reshape(E, self.d)
            self.sigma = np.asarray(f["sigma"][...], dtype=np.float64).reshape(E, self.d)
        else:
            self.u = np.zeros((E, self.M, 0))
            self.a = np.full((E, self.M), np.nan)
            self.mu = np.zeros((E, 0))
            self.sigma = np.zeros((E, 0))
        self.lr = np.asarray(f["lr"][...], dtype=np.float64)
        self.wall_seconds = np.asarray(f["wall_seconds"][...], dtype=np.float64)
        self.images_per_second = np.asarray(f["images_per_second"][...], dtype=np.float64)
        self.metrics = {}
        if "metrics" in f:
            for name in sorted(f["metrics"].keys()):
                self.metrics[name] = np.asarray(f["metrics"][name][...], dtype=np.float64)

    def _matrix(self, f, name, E):
        return np.asarray(f[name][...], dtype=np.float64).reshape(E, self.M)

    # ---- what the run is ----

    def setting(self, section, key, default=""):
        return self.config.get((section, key), default)

    def number(self, section, key, default, kind=int):
        """A numeric setting; default when absent or malformed."""
        try:
            return kind(self.setting(section, key, str(default)))
        except ValueError:
            return default

    @property
    def epochs_logged(self):
        return len(self.epoch)

    @property
    def epochs_planned(self):
        return self.number("optim", "epochs", 0)

    @property
    def warmup_epochs(self):
        return self.number("search", "warmup_epochs", 0) if self.is_search else 0

    @property
    def is_search(self):
        return self.d > 0

    @property
    def space(self):
        return self.setting("search", "space") if self.is_search else ""

    @property
    def loss(self):
        return self.setting("head", "loss")

    @property
    def scale(self):
        return self.number("head", "scale", 32.0, float)

    @property
    def name(self):
        """A short name: the run directory's name (made unique among the runs of a report)."""
        return self.label or os.path.basename(self.directory) or self.path

    @property
    def seed(self):
        return self.setting("run", "seed", "?")

    @property
    def kind(self):
        """"search_softmax search, M = 4" or "arcface training"."""
        if self.is_search:
            return "%s search, M = %d" % (self.space, self.M)
        return "%s training" % self.loss

    def experiment_key(self):
        """Runs with equal keys are seeds of one experiment (configuration apart from seed and paths)."""
        return tuple(sorted((k, v) for k, v in self.config.items() if k not in _NOT_THE_EXPERIMENT))

    # ---- derived series ----

    def winner_reward(self):
        """[E] the reward of the candidate every candidate continued from."""
        E = self.epochs_logged
        return self.reward[np.arange(E), self.chosen] if E else np.zeros(0)

    def test_metric(self):
        """(name, [E]) of the test accuracy the run logged, or (None, None)."""
        for name in ("test_acc",):
            if name in self.metrics:
                return name, self.metrics[name]
        return None, None

    def dimension_names(self):
        """A name per policy dimension: AM-LFS's slopes and intercepts per interval
        (DESIGN 1.5), else u or u[k]."""
        if self.space == "amlfs":
            n = self.number("search", "intervals", 6)
            if n > 0 and self.d in (2 * n, 4 * n):
                parts = [r"$\alpha_{%d}$", r"$\beta_{%d}$", r"$\tau\ \alpha'_{%d}$", r"$\tau\ \beta'_{%d}$"]
                return [(parts[k // n] % (k % n)) + " (interval %d)" % (k % n) for k in range(self.d)]
        if self.space == "cosface_m":
            return [r"u: the CosFace margin $m_3 = \max(u, 0)$"]
        if self.space == "arcface_m":
            return [r"u: the ArcFace margin $m_2 = $ clamp$(u, 0, 1)$"]
        return ["u"] if self.d == 1 else ["u[%d]" % k for k in range(self.d)]

    def modulation_axis(self):
        """search_softmax: the sampled policy's u maps to a = -|u| e^{s/3}."""
        return self.space in ("search_softmax", "random_softmax")

    def a_of_u(self, u):
        return -np.abs(u) * math.exp(self.scale / 3.0)

    def cosface_margin_of_a(self, a):
        """The CosFace margin m with the same modulation: m = ln(1 - a) / s (DESIGN 1.4)."""
        return np.log1p(-np.asarray(a, dtype=np.float64)) / self.scale


def load_runs(targets):
    """Runs of run directories or run.h5 files, in the order given."""
    return [Run(t) for t in targets]
