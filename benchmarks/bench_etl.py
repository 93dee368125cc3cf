"""The Spark ETL against a plain pandas implementation of the same cleaning, standardization, split.

Both read the same generated sensor CSV (``kfp-edge datagen``, 2 % malformed rows), quarantine
the same defects and write the quarantine (Parquet), drop duplicate ids, profile the good rows
(distinct counts, min/max/mean and quantiles per feature, rows per device), compute train
mean/std, split stratified by a seeded hash (``split_by=row`` on the Spark side, as pandas does),
and write TFRecord shards (the same TF-free encoder, records framed with numpy on both sides) and
Parquet splits of the same columns (features, label, id, device, time). Each runs in its own
subprocess; the parent samples the resident memory of that process and all its children (for
Spark: the JVM and the Python workers) every 50 ms. Spark's session start-up is timed apart from
the ETL itself. Spark's event log gives the skew: per stage, the largest task's records over the
mean task's (``max_task_skew``: the worst stage).

``python benchmarks/bench_etl.py --rows N`` runs one size outside the runner.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve()
SEED = 42
BAD_FRACTION = 0.02


# --------------------------------------------------------------------------- the pandas baseline


def pandas_etl(csv_path: str, schema: dict, out_dir: str, seed: int = SEED) -> dict:
    """The same cleaning, standardization and stratified split with pandas, chunk by chunk."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from kfp_edge.dataset import SPLITS
    from kfp_edge.spark_etl.schema import BAD_ROW_REASONS
    from kfp_edge.tfrecord import ExampleEncoder, TFRecordWriter

    names = [c["name"] for c in schema["columns"]]
    features, label = schema["feature_columns"], schema["label_column"]
    ident, time_col, classes = schema["id_column"], schema["time_column"], schema["classes"]
    required = [*features, label, ident, time_col, schema["device_column"]]
    extra = ["_x1", "_x2"]  # room for extra fields (the generator adds at most one)
    counts = dict.fromkeys(BAD_ROW_REASONS, 0)
    kept, quarantined = [], []

    def chunks(size=500_000):
        """Raw line chunks: the field count needs the lines (pandas pads short rows)."""
        import io
        import itertools

        with open(csv_path, encoding="utf-8-sig") as f:
            next(f)  # header
            while lines := list(itertools.islice(f, size)):
                lines = [ln for ln in lines if ln.strip()]
                nfields = pd.Series(lines).str.count(",").to_numpy() + 1
                frame = pd.read_csv(
                    io.StringIO("".join(lines)),
                    header=None,
                    names=names + extra,
                    dtype=str,
                    keep_default_na=False,
                )
                yield frame, nfields, np.asarray(lines, dtype=object)

    for chunk, nfields, lines in chunks():
        n = len(chunk)
        wrong = pd.Series(nfields != len(names))
        missing = np.zeros(n, bool)
        for c in required:
            missing |= (chunk[c].fillna("").str.strip() == "").to_numpy()
        unparsable = np.zeros(n, bool)
        nonfinite = np.zeros(n, bool)
        values = {}
        for c in features:
            raw = chunk[c].fillna("").str.strip()
            v = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
            nan_text = raw.str.lower().isin(["nan", "+nan", "-nan"]).to_numpy()
            unparsable |= np.isnan(v) & ~nan_text & (raw != "").to_numpy()
            nonfinite |= nan_text | np.isinf(v)
            values[c] = v
        stamps = pd.to_datetime(chunk[time_col], errors="coerce", format="ISO8601")
        unparsable |= stamps.isna().to_numpy() & (chunk[time_col].fillna("") != "").to_numpy()
        unknown = ~chunk[label].isin(classes).to_numpy()
        reason = np.select(
            [wrong.to_numpy(), missing, unparsable, nonfinite, unknown],
            ["wrong_field_count", "missing_value", "unparsable", "non_finite", "unknown_label"],
            default="",
        )
        for r in counts:
            counts[r] += int(np.sum(reason == r))
        good = reason == ""
        quarantined.append(
            pd.DataFrame(
                {"raw_line": lines[~good], "source_file": csv_path, "reason": reason[~good]}
            )
        )
        part = pd.DataFrame({c: values[c][good] for c in features})
        part["_id"] = chunk[ident].to_numpy()[good]
        part["_device"] = chunk[schema["device_column"]].to_numpy()[good]
        part["_time"] = stamps.to_numpy()[good]
        part["_raw"] = lines[good]
        part["label_index"] = pd.Categorical(
            chunk[label].to_numpy()[good], categories=classes
        ).codes
        kept.append(part)
    frame = pd.concat(kept, ignore_index=True)
    dup = frame.sort_values("_id", kind="stable").duplicated("_id", keep="first")
    counts["duplicate_id"] = int(dup.sum())
    dup = dup.sort_index().to_numpy()
    quarantined.append(
        pd.DataFrame({"raw_line": frame["_raw"].to_numpy()[dup], "source_file": csv_path}).assign(
            reason="duplicate_id"
        )
    )
    frame = frame.loc[~dup].drop(columns="_raw")
    out = Path(out_dir)
    (out / "quarantine").mkdir(parents=True)
    bad = pa.Table.from_pandas(pd.concat(quarantined, ignore_index=True), preserve_index=False)
    pq.write_table(bad, out / "quarantine" / "part-00000.parquet")
    profile = {
        "distinct": {c: int(frame[c].nunique()) for c in [*features, "_id", "_device"]},
        "features": {
            c: {
                "min": float(frame[c].min()),
                "max": float(frame[c].max()),
                "mean": float(frame[c].mean()),
                "quantiles": frame[c].quantile([0.01, 0.25, 0.5, 0.75, 0.99]).tolist(),
            }
            for c in features
        },
        "rows_per_device": frame["_device"].value_counts().to_dict(),
    }
    key = f"{seed:016d}"[-16:]
    frame["_h"] = pd.util.hash_pandas_object(frame["_id"], index=False, hash_key=key).to_numpy()
    frame = frame.sort_values(["label_index", "_h"], kind="stable")
    frame["_rank"] = frame.groupby("label_index").cumcount().to_numpy()
    sizes = frame.groupby("label_index").size()
    n_val = (sizes * 0.2).round().astype(int)
    n_test = (sizes * 0.2).round().astype(int)
    n_train = sizes - n_val - n_test
    r = frame["_rank"].to_numpy()
    li = frame["label_index"].to_numpy()
    t_end = n_train.reindex(li).to_numpy()
    v_end = (n_train + n_val).reindex(li).to_numpy()
    split = np.where(r < t_end, 0, np.where(r < v_end, 1, 2))
    x_all = frame[features].to_numpy(dtype=np.float64)
    y_all = li.astype(np.int64)
    train = x_all[split == 0]
    mean, std = train.mean(axis=0), train.std(axis=0)
    encoder = ExampleEncoder(len(features))
    rows = {}
    for k, s in enumerate(SPLITS):
        x, y = x_all[split == k], y_all[split == k]
        rows[s] = len(y)
        shards = max(2, -(-len(y) // 100_000))
        for i in range(shards):
            with TFRecordWriter(out / s / f"part-{i:05d}-of-{shards:05d}.tfrecord") as w:
                w.write_framed(encoder.framed(x[i::shards], y[i::shards]), len(y[i::shards]))
        (out / "parquet" / s).mkdir(parents=True)
        # the columns the Spark ETL's Parquet splits hold: features, label, id, device, time
        kept_columns = {
            ident: frame["_id"].to_numpy()[split == k],
            schema["device_column"]: frame["_device"].to_numpy()[split == k],
            time_col: pa.array(frame["_time"].to_numpy()[split == k], pa.timestamp("us", "UTC")),
        }
        table = pa.table(
            {**{c: x[:, j] for j, c in enumerate(features)}, "label_index": y, **kept_columns}
        )
        pq.write_table(table, out / "parquet" / s / "part-00000.parquet")
    (out / "preprocessing.json").write_text(
        json.dumps({"mean": mean.tolist(), "std": std.tolist(), "feature_columns": features})
    )
    return {
        "rows_good": int(len(frame)),
        "bad_by_reason": counts,
        "rows_per_split": rows,
        "devices": len(profile["rows_per_device"]),
    }


# --------------------------------------------------------------------------- subprocess workers


def task_skew(events_dir: Path) -> dict:
    """Per stage with 2+ tasks: the largest task's records (input or shuffle read) / the mean.

    Returns:
        ``{"max_task_skew": worst ratio, "stage": its stage id, "stages": count}``.
    """
    tasks: dict[int, list[int]] = {}
    for log in (p for p in Path(events_dir).rglob("events_*") if p.is_file()):
        with open(log) as f:
            for line in f:
                if '"SparkListenerTaskEnd"' not in line:
                    continue
                event = json.loads(line)
                m = event.get("Task Metrics") or {}
                records = (m.get("Input Metrics") or {}).get("Records Read", 0) + (
                    m.get("Shuffle Read Metrics") or {}
                ).get("Total Records Read", 0)
                tasks.setdefault(event["Stage ID"], []).append(records)
    worst, stage = 1.0, None
    for sid, records in tasks.items():
        mean = sum(records) / len(records)
        if len(records) > 1 and mean > 1000 and max(records) / mean > worst:
            worst, stage = max(records) / mean, sid
    return {"max_task_skew": round(worst, 2), "stage": stage, "stages": len(tasks)}


def _worker(impl: str, csv_path: str, schema_path: str, out_dir: str) -> dict:
    schema = json.loads(Path(schema_path).read_text())
    result = {"impl": impl}
    if impl == "spark":
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        from kfp_edge.spark_etl.etl import create_session, run_etl

        started = time.perf_counter()
        events = Path(out_dir).parent / f"events-{Path(out_dir).name}"
        events.mkdir()
        conf = {
            "spark.eventLog.enabled": "true",
            "spark.eventLog.dir": str(events),
            "spark.eventLog.compress": "false",
        }
        session = create_session("local[*]", driver_memory="2g", conf=conf)
        session.range(1).count()  # the JVM and a first job are up
        result["startup_s"] = time.perf_counter() - started
        started = time.perf_counter()
        summary = run_etl(
            out_dir,
            input_path=csv_path,
            schema_path=schema_path,
            window_seconds=0,
            max_bad_fraction=0.1,
            spark=session,
            seed=SEED,
            split_by="row",
        )
        result["etl_s"] = time.perf_counter() - started
        session.stop()
        result["skew"] = task_skew(events)
    else:
        started = time.perf_counter()
        summary = pandas_etl(csv_path, schema, out_dir)
        result["startup_s"] = 0.0
        result["etl_s"] = time.perf_counter() - started
    result["phases"] = summary.get("phase_seconds")
    result["devices"] = summary.get("devices")
    result["rows_good"] = summary["rows_good"]
    result["bad_by_reason"] = {k: v for k, v in summary["bad_by_reason"].items() if v}
    result["rows_per_split"] = summary["rows_per_split"]
    return result


def _measure(impl: str, csv_path: Path, schema_path: Path, out_dir: Path) -> dict:
    """Runs one implementation in a subprocess; returns its figures and peak tree RSS."""
    import psutil

    cmd = [
        sys.executable,
        str(HERE),
        "--worker",
        impl,
        str(csv_path),
        str(schema_path),
        str(out_dir),
    ]
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    # the child's stderr (Spark's log) goes to a file, shown only when the child fails
    err_path = out_dir.with_name(out_dir.name + ".stderr")
    err_file = open(err_path, "w")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err_file, env=env, text=True)
    peak = {"rss": 0, "pss": 0}
    done = threading.Event()

    def sample():
        parent = psutil.Process(proc.pid)
        tick = 0
        while not done.is_set():
            # RSS every 50 ms; PSS (reading every mapping of the JVM) every second, so that
            # sampling does not take the cores it measures
            kinds = ("rss", "pss") if tick % 20 == 0 else ("rss",)
            tick += 1
            try:
                procs = [parent, *parent.children(recursive=True)]
                total = dict.fromkeys(kinds, 0)
                for p in procs:
                    try:
                        if "pss" in kinds:
                            memory = p.memory_full_info()
                            total["pss"] += memory.pss
                        else:
                            memory = p.memory_info()
                        total["rss"] += memory.rss
                    except psutil.Error:
                        pass
                peak.update({k: max(peak[k], v) for k, v in total.items()})
            except psutil.Error:
                pass
            time.sleep(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out, _ = proc.communicate()
    done.set()
    thread.join()
    err_file.close()
    if proc.returncode != 0:
        tail = err_path.read_text(errors="replace").splitlines()[-40:]
        raise RuntimeError(
            f"{impl} ETL failed (exit {proc.returncode}); the last lines of its stderr:\n"
            + "\n".join(tail)
        )
    result = json.loads(out.strip().splitlines()[-1])
    # RSS summed over the tree counts the pages forked Python workers share with their daemon
    # once per process; PSS splits each shared page among its sharers: the tree's footprint.
    result["peak_rss_gib"] = peak["rss"] / 1024**3
    result["peak_pss_gib"] = peak["pss"] / 1024**3
    return result


def _one_size(rows: int, work: Path) -> list[dict]:
    from kfp_edge.spark_etl.datagen import generate_sensor_data

    csv_path = work / f"sensor_{rows}.csv"
    info = generate_sensor_data(csv_path, rows, seed=1, bad_fraction=BAD_FRACTION)
    schema_path = work / "schema.json"
    schema_path.write_text(json.dumps(info["schema"]))
    results = []
    for impl in ("spark", "pandas"):
        load = os.getloadavg()[0]  # the machine's load when this side starts (shared machines)
        r = _measure(impl, csv_path, schema_path, work / f"out_{impl}_{rows}")
        results.append(
            {
                "rows": rows,
                "impl": impl,
                "etl_s": round(r["etl_s"], 2),
                "rows_per_s": rows / r["etl_s"],
                "spark_startup_s": round(r["startup_s"], 2) if impl == "spark" else None,
                "peak_rss_gib": round(r["peak_rss_gib"], 3),
                "peak_pss_gib": round(r["peak_pss_gib"], 3),
                "rows_good": r["rows_good"],
                "max_task_skew": r.get("skew", {}).get("max_task_skew"),
                "spark_phase_s": " ".join(f"{k}={v:.1f}" for k, v in r["phases"].items())
                if r.get("phases")
                else None,
                "load_avg_1m": round(load, 2),
                "agrees_with_generator": r["bad_by_reason"]
                == {k: v for k, v in info["bad_by_reason"].items() if v},
            }
        )
    return results


def run(quick: bool = False) -> dict:
    """Spark vs pandas ETL at 10k rows (quick) or 1M and 10M rows (full)."""
    sizes = [10_000] if quick else [1_000_000, 10_000_000]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-etl-") as tmp:
        for n in sizes:
            rows += _one_size(n, Path(tmp))
    ratios = {}
    for n in sizes:
        spark, pandas = (
            next(r for r in rows if r["rows"] == n and r["impl"] == i) for i in ("spark", "pandas")
        )
        ratios[f"spark_over_pandas_rows_per_s_{n}"] = spark["rows_per_s"] / pandas["rows_per_s"]
        ratios[f"spark_peak_gib_{n}"] = spark["peak_pss_gib"]
        ratios[f"pandas_peak_gib_{n}"] = pandas["peak_pss_gib"]
        ratios[f"spark_max_task_skew_{n}"] = spark["max_task_skew"]
    return {
        "name": "etl: Spark local[*] vs plain pandas (clean, standardize, split, TFRecord+Parquet)",
        "rows": rows,
        "ratios": ratios,
        "notes": (
            f"{os.cpu_count()} cores; CSV from kfp-edge datagen with {BAD_FRACTION:.0%} malformed "
            "rows, CSV generation not timed; etl_s excludes Spark's session start-up (reported "
            "apart); peak_pss_gib = the process tree's peak proportional set size (Spark: "
            "driver JVM + Python workers); peak_rss_gib sums their RSS, counting pages shared "
            "by forked workers once per process; "
            "ratio > 1 means Spark is faster. Target: ratio >= 1, Spark peak < 4 GiB and max task "
            "skew <= 2 at 10M."
        ),
    }


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", nargs=4, metavar=("IMPL", "CSV", "SCHEMA", "OUT"))
    parser.add_argument("--rows", type=int, default=0)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(*args.worker)))
    else:
        with tempfile.TemporaryDirectory(prefix="bench-etl-") as tmp:
            for row in _one_size(args.rows or 100_000, Path(tmp)):
                print(json.dumps(row))
