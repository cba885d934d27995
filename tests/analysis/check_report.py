#!/usr/bin/python3
"""check_report.py OUT RUN_DIR...: checks what analysis/report wrote into OUT
against the run logs themselves (read here with h5py, independently of the
report's code): every figure the report links is a valid, non-blank PNG of a
readable size; every number of every per-epoch table and of the comparison
table equals run.h5's value to the digits printed; every epochs.csv row equals
run.h5 exactly. Prints what it checked; exits 1 on the first mismatch."""
import csv
import math
import os
import re
import struct
import sys

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.image  # noqa: E402
import numpy as np  # noqa: E402


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def check_png(path):
    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        fail("%s is not a PNG" % path)
    width, height = struct.unpack(">II", head[16:24])
    if width < 400 or height < 250:
        fail("%s is only %dx%d pixels" % (path, width, height))
    pixels = matplotlib.image.imread(path)
    if pixels.std() < 0.01:
        fail("%s is blank" % path)
    return width, height


def close(printed, value, what):
    """printed (a table cell) equals value to the digits printed."""
    printed = printed.strip()
    if printed in ("-inf", "inf"):
        if not (math.isinf(value) and (value < 0) == (printed == "-inf")):
            fail("%s: printed %s, run.h5 has %r" % (what, printed, value))
        return
    mantissa = printed.split("e")[0]
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    exponent = int(printed.split("e")[1]) if "e" in printed else 0
    tol = 0.5 * 10 ** (exponent - decimals) * 1.0001 + 1e-12
    if not abs(float(printed) - value) <= tol:
        fail("%s: printed %s, run.h5 has %r" % (what, printed, value))


def tables(text):
    """[(heading, header, rows)] of the Markdown tables in text, heading being the
    "## " section (a run's name) they are in."""
    out, lines, i = [], text.split("\n"), 0
    heading = None
    while i < len(lines):
        if lines[i].startswith("## "):
            heading = lines[i]
        if lines[i].startswith("| ") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            header = [c.strip() for c in lines[i].strip("|").split("|")]
            rows, i = [], i + 2
            while i < len(lines) and lines[i].startswith("| "):
                rows.append([c.strip() for c in lines[i].strip("|").split("|")])
                i += 1
            out.append((heading, header, rows))
            continue
        i += 1
    return out


def load(run_dir):
    with h5py.File(os.path.join(run_dir, "run.h5"), "r") as f:
        log = {k: np.asarray(f[k][...]) for k in f if isinstance(f[k], h5py.Dataset)}
        for k in f.get("metrics", {}):
            log["metrics/" + k] = np.asarray(f["metrics"][k][...])
        log["M"], log["d"] = int(f.attrs["M"]), int(f.attrs["d"])
        text = f.attrs["config"]
        log["config"] = text.decode() if isinstance(text, bytes) else text
    scale = re.search(r"^\[head\][^\[]*?^scale = (\S+)", log["config"], re.M | re.S)
    log["scale"] = float(scale.group(1)) if scale else 32.0
    log["E"] = len(log["epoch"])
    return log


def check_epoch_table(name, header, rows, log):
    E, M = log["E"], log["M"]
    if len(rows) != E:
        fail("%s: %d table rows, run.h5 has %d epochs" % (name, len(rows), E))
    col = {h: i for i, h in enumerate(header)}
    checked = 0
    for e, row in enumerate(rows):
        c = int(log["chosen"][e])
        what = "%s epoch %d" % (name, e + 1)
        if int(row[col["epoch"]]) != e + 1 or int(row[col["chosen"]]) != c:
            fail("%s: epoch or chosen differs" % what)
        close(row[col["winner reward %"]], 100 * log["reward"][e, c], what + " winner reward")
        cands = row[col["candidates' rewards %"]].split(" / ")
        if len(cands) != M:
            fail("%s: %d candidate rewards, M = %d" % (what, len(cands), M))
        for i, p in enumerate(cands):
            close(p, 100 * log["reward"][e, i], what + " reward of candidate %d" % i)
        close(row[col["train loss (winner)"]], log["train_loss"][e, c], what + " train loss")
        if "test %" in col:
            close(row[col["test %"]], 100 * log["metrics/test_acc"][e], what + " test")
        if "mu" in col:
            for k, p in enumerate(row[col["mu"]].split(" / ")):
                close(p, log["mu"][e, k], what + " mu")
            for k, p in enumerate(row[col["sigma"]].split(" / ")):
                close(p, log["sigma"][e, k], what + " sigma")
        if "a at mu" in col:
            a = -abs(log["mu"][e, 0]) * math.exp(log["scale"] / 3)
            close(row[col["a at mu"]], a, what + " a at mu")
            close(row[col["CosFace m at mu"]], math.log1p(-a) / log["scale"], what + " m at mu")
        close(row[col["lr"]], log["lr"][e], what + " lr")
        close(row[col["wall s"]], log["wall_seconds"][e], what + " wall s")
        close(row[col["images/s"]], log["images_per_second"][e], what + " images/s")
        checked += len(row)
    return checked


def check_csv(path, log):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    if len(rows) != log["E"]:
        fail("%s: %d rows, run.h5 has %d epochs" % (path, len(rows), log["E"]))
    for e, row in enumerate(rows):
        for i in range(log["M"]):
            for key, arr in (("reward_%d" % i, log["reward"]), ("train_loss_%d" % i, log["train_loss"])):
                if float(row[key]) != arr[e, i]:
                    fail("%s epoch %d: %s %s, run.h5 has %r" % (path, e + 1, key, row[key], arr[e, i]))
        if float(row["lr"]) != log["lr"][e] or int(row["chosen"]) != log["chosen"][e]:
            fail("%s epoch %d: lr or chosen differs" % (path, e + 1))


def main(out, run_dirs):
    text = open(os.path.join(out, "report.md")).read()
    pngs = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    if not pngs:
        fail("report.md links no figure")
    for p in pngs:
        w, h = check_png(os.path.join(out, p))
    print("%d figures: valid PNGs, not blank" % len(pngs))
    logs = {os.path.basename(os.path.normpath(d)): load(d) for d in run_dirs}
    numbers = 0
    per_run_final = {}
    for heading, header, rows in tables(text):
        name = heading.split(" ", 1)[1] if heading else ""
        if "winner reward %" in header:
            numbers += check_epoch_table(name, header, rows, logs[name])
        elif header[:2] == ["run", "experiment"]:
            for row in rows:
                log = logs[row[0]]
                if int(row[3]) != log["E"]:
                    fail("comparison: %s epochs %s, run.h5 has %d" % (row[0], row[3], log["E"]))
                per_run_final[row[0]] = (row[1], None, None)
                if log["E"]:
                    c = int(log["chosen"][-1])
                    close(row[4], 100 * log["reward"][-1, c], "comparison: %s final reward" % row[0])
                    close(row[5], 100 * log["metrics/test_acc"][-1], "comparison: %s final test" % row[0])
                    per_run_final[row[0]] = (row[1], 100 * log["reward"][-1, c], 100 * log["metrics/test_acc"][-1])
                elif row[4] != "–" or row[5] != "–":
                    fail("comparison: %s logged no epoch but shows %s / %s" % (row[0], row[4], row[5]))
                numbers += len(row)
    for heading, header, rows in tables(text):
        if header[:2] == ["experiment", "runs"]:
            for row in rows:
                members = [v for v in per_run_final.values() if v[0] == row[0]]
                if len(members) != int(row[1]):
                    fail("comparison: %s has %s runs, the per-run table %d" % (row[0], row[1], len(members)))
                for k, cell in ((1, row[4]), (2, row[5])):
                    vals = np.array([m[k] for m in members if m[k] is not None])
                    if len(vals) == 0:
                        continue
                    parts = cell.split(" ± ")
                    close(parts[0], vals.mean(), "comparison: %s mean" % row[0])
                    if len(parts) == 2:
                        close(parts[1], vals.std(ddof=1), "comparison: %s std" % row[0])
                numbers += len(row)
    print("%d table cells equal run.h5" % numbers)
    csvs = 0
    for name, log in logs.items():
        path = os.path.join(out, name, "epochs.csv")
        if os.path.exists(path):
            check_csv(path, log)
            csvs += 1
    print("%d epochs.csv files equal run.h5" % csvs)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
