"""Run every ``benchmarks/bench_*.py``, print a table per benchmark and write JSON results.

Usage: ``python -m benchmarks [--quick] [--only NAME ...] [--out DIR]``. Each module defines
``run(quick: bool = False) -> dict`` returning ``{"name", "rows": [dict], "ratios": {}, "notes"}``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def discover() -> list[str]:
    """Returns the benchmark module names (``bench_*``), sorted."""
    return sorted(p.stem for p in HERE.glob("bench_*.py"))


def format_rows(rows: list[dict]) -> str:
    """Formats a list of dicts as a plain-text table (union of keys, in first-seen order)."""
    if not rows:
        return "(no rows)"
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]

    def cell(value) -> str:
        if isinstance(value, float):
            return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
        return "" if value is None else str(value)

    table = [keys] + [[cell(row.get(k)) for k in keys] for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(keys))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run_benchmarks(names: list[str], quick: bool, out_dir: Path) -> dict:
    """Runs the named benchmarks and writes ``<out_dir>/<name>.json``; returns all results."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}")
        started = time.perf_counter()
        result = module.run(quick=quick)
        result["wall_s"] = round(time.perf_counter() - started, 2)
        result["quick"] = quick
        results[name] = result
        (out_dir / f"{name}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(f"\n== {result.get('name', name)} ({result['wall_s']} s)")
        print(format_rows(result.get("rows", [])))
        for ratio, value in (result.get("ratios") or {}).items():
            shown = f"{value:.3g}" if isinstance(value, (int, float)) else value
            print(f"  {ratio}: {shown}")
        if result.get("notes"):
            print(f"  note: {result['notes']}")
    return results


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m benchmarks``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute each")
    parser.add_argument("--only", nargs="*", default=None, help="benchmark names (bench_*)")
    parser.add_argument("--out", default=str(HERE / "results"), help="directory for JSON")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    names = discover()
    if args.only:
        wanted = {n if n.startswith("bench_") else f"bench_{n}" for n in args.only}
        unknown = wanted - set(names)
        if unknown:
            parser.error(f"unknown benchmarks: {sorted(unknown)}; have {names}")
        names = [n for n in names if n in wanted]
    run_benchmarks(names, args.quick, Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
