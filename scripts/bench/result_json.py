#!/usr/bin/env python3
"""Writes a benchmark's machine-readable result: the medians of every numeric column of its
runs.csv (per target when the CSV has a `target` column), with where and how it was measured.
`cargo xtask capacity-model` reads these files (docs/bench/*.json) instead of figures typed in;
its tests (xtask/src/capacity/tests.rs, result_json_*) test this script too.

Usage: result_json.py --bench NAME --csv runs.csv --out FILE [--command "..."] [--meta KEY=VALUE]...
  --meta values that look like numbers are written as numbers. The file is written whole or not
  at all (a temporary file renamed into place).
"""

import argparse
import csv
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile


def number(text):
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return int(value) if value.is_integer() and "." not in str(text) else value


def medians(rows):
    """Median of each column whose every value in ROWS is a number."""
    out = {}
    for column in rows[0]:
        values = [number(r[column]) for r in rows]
        if values and all(v is not None for v in values):
            m = statistics.median(values)
            out[column] = round(m, 6) if isinstance(m, float) else m
    return out


def git_commit(repo):
    try:
        return subprocess.run(
            ["git", "-C", repo, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", required=True, help="benchmark name, e.g. stack")
    parser.add_argument("--csv", required=True, help="the benchmark's runs.csv")
    parser.add_argument("--out", required=True, help="the JSON file to write")
    parser.add_argument("--command", default="", help="the command that measured it")
    parser.add_argument("--meta", action="append", default=[], help="KEY=VALUE, repeatable")
    args = parser.parse_args()

    with open(args.csv, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit(f"result_json.py: error: {args.csv} has no rows")
    meta = {}
    for item in args.meta:
        key, sep, value = item.partition("=")
        if not sep or not key:
            sys.exit(f"result_json.py: error: --meta {item!r} is not KEY=VALUE")
        meta[key] = number(value) if number(value) is not None else value
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = {
        "bench": args.bench,
        "command": args.command,
        "measured_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git_commit": git_commit(repo),
        "machine": {"cores": os.cpu_count()},
        "rounds": len({r.get("round", r.get("run", i)) for i, r in enumerate(rows)}),
        "meta": meta,
    }
    if "target" in rows[0]:
        targets = {}
        for r in rows:
            targets.setdefault(r["target"], []).append(r)
        result["medians"] = {t: medians(rs) for t, rs in targets.items()}
    else:
        result["medians"] = medians(rows)

    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".result-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2, sort_keys=True)
        f.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
