"""The drift check of a published model version: state in, observations through, decision out.

For a published model version (``<workspace>/models/<name>/<version>/`` with ``model.tflite``,
``preprocessing.json`` and ``dataset_manifest.json``) :func:`monitor_drift` runs these steps,
each a function of its own:

1. :func:`load_model` reads the version's columns, classes and training statistics;
2. :func:`restore` loads the committed state (:mod:`.state`) and rebuilds the monitor, or
   starts a fresh one for a new version or new parameters (primed on reference data if given);
3. :func:`read_observations` feeds the input files not read before through the monitor
   (:mod:`.stream`: window detectors, model signals, errors, late labels, reservoir);
4. :func:`decide` resolves alarms answered by a newer published version, opens alarms for new
   detections (:mod:`.alarms`) and runs the distribution tests (:mod:`.distribution`);
5. :func:`commit` saves the state of the whole update at once.

``drifted`` is true while any alarm is open. A drift position is the 0-based index of the
observation (in this call's input) that completed the window, or gave the error, on which ADWIN
signalled; ``stream_position`` counts from the first observation this version's detectors saw.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import IO

from kfp_edge.drift_monitor import alarms as alarm_book
from kfp_edge.drift_monitor.distribution import compare_samples
from kfp_edge.drift_monitor.observations import STDIN, input_files, iter_chunks
from kfp_edge.drift_monitor.reservoir import BiasedReservoir
from kfp_edge.drift_monitor.state import (
    commit_state,
    load_state,
    monitor_from_data,
    monitor_to_data,
)
from kfp_edge.drift_monitor.stream import DriftMonitor
from kfp_edge.model_versions import DATASET_MANIFEST_FILE, MODEL_FILE, PREPROCESSING_FILE
from kfp_edge.workspace import write_json_atomic

DRIFT_DIR = "drift"
DECISION_FILE = "decision.json"
DEFAULT_BIAS_RATE = 0.001
DEFAULT_DELTA = 0.002
DEFAULT_WINDOW = 200
PARAMETERS = ("delta", "window", "clock", "model_in_loop")  # a change starts fresh detectors


def drift_dir(workspace: str | os.PathLike, name: str) -> Path:
    """Returns the monitor's directory for a model on the workspace."""
    from kfp_edge.model_versions import validate_name

    return Path(workspace) / DRIFT_DIR / validate_name(name)


def resolve_model(workspace: str | os.PathLike, name: str, version: int | str = "latest") -> Path:
    """Returns the directory of a published model version and checks the files the monitor needs.

    Raises:
        FileNotFoundError: If the model, the version or one of its files is missing.
    """
    from kfp_edge.model_versions import PublishedModels, models_root

    directory = PublishedModels(models_root(workspace)).get(name, version)
    for file in (MODEL_FILE, DATASET_MANIFEST_FILE):
        if not (directory / file).is_file():
            raise FileNotFoundError(f"{directory / file}: the published version has no {file}")
    return directory


def load_model(workspace, name: str, version, label_column=None, id_column=None) -> dict:
    """Returns what the monitor needs of a published version: columns, classes, statistics."""
    directory = resolve_model(workspace, name, version)
    dataset = json.loads((directory / DATASET_MANIFEST_FILE).read_text())
    preprocessing = {}
    if (directory / PREPROCESSING_FILE).is_file():
        preprocessing = json.loads((directory / PREPROCESSING_FILE).read_text())
    return {
        "name": name,
        "version": int(directory.name),
        "path": directory,
        "feature_columns": list(dataset["feature_columns"]),
        "label_column": label_column or dataset.get("label_column") or "label",
        "id_column": id_column or dataset.get("id_column") or None,
        "classes": [str(c) for c in dataset.get("classes", [])],
        "mean": preprocessing.get("mean"),
        "std": preprocessing.get("std"),
        # a windowed model's window definition: raw readings become its rows (model_rows)
        "window": dataset.get("window"),
    }


def published_versions(workspace, name: str) -> dict[int, str]:
    """Returns ``{version: created_at}`` of a model's published versions."""
    from kfp_edge.model_versions import PublishedModels, models_root

    store = PublishedModels(models_root(workspace))
    return {
        v: str(store.read_manifest(name, v).get("created_at", "")) for v in store.versions(name)
    }


def _fresh_monitor(model: dict, options: dict) -> DriftMonitor:
    return DriftMonitor(
        model["feature_columns"],
        model["label_column"],
        model["classes"],
        model["mean"],
        model["std"],
        model_path=model["path"] / MODEL_FILE if options["model_in_loop"] else None,
        delta=options["delta"],
        window=options["window"],
        clock=options["clock"],
        id_column=model["id_column"],
    )


def _reservoir(loaded: dict | None, model: dict, options: dict) -> BiasedReservoir:
    reservoir = None if loaded is None else loaded["reservoir"]
    columns = (model["feature_columns"], model["label_column"])
    if reservoir is None:
        rate = options["bias_rate"] or DEFAULT_BIAS_RATE
        return BiasedReservoir(*columns, rate, options["capacity"], options["seed"])
    where = loaded["path"]
    if (reservoir.feature_columns, reservoir.label_column) != columns:
        raise ValueError(
            f"{where}: the saved reservoir holds columns {reservoir.feature_columns} + "
            f"{reservoir.label_column!r}, but model {model['name']!r} version {model['version']} "
            f"uses {columns[0]} + {columns[1]!r}; move {where.parent} away to start afresh"
        )
    if options["bias_rate"] and reservoir.bias_rate != float(options["bias_rate"]):
        raise ValueError(
            f"{where}: the saved reservoir has bias rate {reservoir.bias_rate}, not "
            f"{options['bias_rate']}; a reservoir keeps its bias rate"
        )
    return reservoir


def _prime(monitor: DriftMonitor, reference, chunk_rows: int, window: dict | None) -> None:
    """Feeds reference data through the windowed detectors; counts and positions restart."""
    chunks = iter_chunks(reference, chunk_rows)
    for origin, first_row, frame in model_rows(chunks, window, monitor.label_column):
        frame = frame.drop(columns=[monitor.label_column, monitor.id_column], errors="ignore")
        monitor.process(frame, origin, first_row)
    monitor.partial = monitor.partial[:0]
    monitor.stream_position = 0
    monitor.detections.clear()
    monitor.recent = monitor.recent[:0]


def restore(workspace, model: dict, options: dict) -> tuple[dict | None, DriftMonitor, dict]:
    """Loads the committed state and returns ``(loaded, monitor, book)``.

    The monitor is rebuilt when the state watches the same version with the same parameters,
    else started afresh (and primed on ``options["reference"]``). ``book`` holds the open
    alarms, the resolved history and the input files already read, which outlive a version.

    Raises:
        StateError: If the state is corrupt or foreign.
    """
    loaded = load_state(drift_dir(workspace, model["name"]))
    saved = {} if loaded is None else loaded["state"]
    book = {k: saved.get(k, [] if k != "processed" else {}) for k in ("alarms", "history")}
    book["processed"] = saved.get("processed", {})
    parameters = {k: options[k] for k in PARAMETERS}
    monitor = None
    if saved.get("model_version") == model["version"] and saved.get("parameters") == parameters:
        monitor = monitor_from_data(saved["monitor"], loaded["arrays"], model["path"] / MODEL_FILE)
        if monitor.feature_columns != model["feature_columns"]:
            monitor = None
    if monitor is None:
        monitor = _fresh_monitor(model, options)
        if options["reference"] is not None:
            _prime(monitor, options["reference"], options["chunk_rows"], model["window"])
    monitor.reservoir = _reservoir(loaded, model, options)
    return loaded, monitor, book


def _file_key(path: Path) -> dict:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def new_sources(source, processed: dict) -> tuple[list, list[str]]:
    """Returns the inputs not read before, and the skipped ones (a file is read once)."""
    if str(source) == STDIN:
        return [STDIN], []
    files = input_files(source)
    fresh = [
        f
        for f in files
        if {k: (processed.get(str(f.resolve())) or {}).get(k) for k in ("size", "mtime_ns")}
        != _file_key(f)
    ]
    return fresh, [str(f) for f in files if f not in fresh]


def read_observations(monitor, sources, processed: dict, model: dict, options) -> int:
    """Feeds the sources through the monitor, noting every file read; returns the row count.

    Raw readings of a windowed model become its window rows first (:func:`model_rows`).
    """
    observations = 0
    for item in sources:
        before = observations
        chunks = iter_chunks(item, options["chunk_rows"], stdin=options["stdin"])
        for origin, first_row, frame in model_rows(chunks, model["window"], monitor.label_column):
            monitor.process(frame, origin, first_row, offset=observations)
            observations += len(frame)
        if item != STDIN:
            processed[str(item.resolve())] = {
                **_file_key(item),
                "rows": observations - before,
                "model_version": model["version"],
            }
    return observations


def _feature_summary(monitor: DriftMonitor, open_by_detector: dict) -> dict:
    features = {}
    for column in monitor.feature_columns:
        names = (f"{column}.mean", f"{column}.std")
        events = [e for e in monitor.detections if e["detector"] in names]
        alarm = next((open_by_detector[n] for n in names if n in open_by_detector), None)
        first = events[0] if events else (alarm or {})
        features[column] = {
            "detected": alarm is not None,
            "position": first.get("position") if events else None,
            "stream_position": first.get("stream_position"),
            "statistic": first.get("statistic"),
            "signal": first.get("detector", "").rsplit(".", 1)[-1] or None,
            "detections": len(events),
            "positions": [e["position"] for e in events[:50]],
            "window_means": monitor.detectors[names[0]].updates,
        }
    return features


def _error_summary(monitor: DriftMonitor, open_by_detector: dict) -> dict:
    counts = monitor.counts
    events = [e for e in monitor.detections if e["detector"] == "error"]
    rises = [e for e in events if e["statistic"] > 0]
    first = rises[0] if rises else {}
    error = monitor.detectors.get("error")
    confidence = monitor.detectors.get("confidence")
    return {
        "monitored": monitor.model_path is not None,
        "detected": "error" in open_by_detector,
        "position": first.get("position"),
        "stream_position": first.get("stream_position"),
        "statistic": first.get("statistic"),
        "detections": len(events),
        "increases": len(rises),
        "labelled_rows": counts["labelled"],
        "errors": counts["errors"],
        "error_rate": counts["errors"] / counts["labelled"] if counts["labelled"] else None,
        "recent_error_rate": error.estimation if error else None,
        "estimated_accuracy": confidence.estimation if confidence else None,
        "unknown_labels": counts["unknown_labels"],
        "late_labels": counts["late_labels"],
        "unmatched_labels": counts["unmatched_labels"],
    }


def decide(monitor, book: dict, model: dict, published: dict[int, str], now: str) -> dict:
    """Resolves and opens alarms and returns the decision (see :func:`monitor_drift`)."""
    resolved = alarm_book.resolve_alarms(book["alarms"], published, now)
    book["history"] = (book["history"] + resolved)[-alarm_book.MAX_HISTORY :]
    opened = alarm_book.open_alarms(book["alarms"], monitor.detections, model["version"], now)
    open_by_detector = {a["detector"]: a for a in book["alarms"]}
    features = _feature_summary(monitor, open_by_detector)
    classes = monitor.classes if monitor.model_path is not None else []
    return {
        "drifted": bool(book["alarms"]),
        "alarms": list(book["alarms"]),
        "opened_alarms": opened,
        "resolved_alarms": resolved,
        "drifted_features": sorted(c for c, f in features.items() if f["detected"]),
        "features": features,
        "error": _error_summary(monitor, open_by_detector),
        "detections": list(monitor.detections[:200]),
        "distribution": compare_samples(
            monitor.reference, monitor.recent, monitor.feature_columns, classes
        ),
    }


def commit(workspace, model: dict, loaded, monitor: DriftMonitor, book: dict, decision) -> None:
    """Saves the monitor, alarms, files read and reservoir as one generation, then the decision."""
    state_dir = drift_dir(workspace, model["name"])
    data, arrays = monitor_to_data(monitor)
    parameters = {k: decision["parameters"][k] for k in PARAMETERS}
    state = {"model_version": model["version"], "parameters": parameters, "monitor": data, **book}
    previous = None if loaded is None else loaded["generation"]
    commit_state(state_dir, state, arrays, monitor.reservoir, previous)
    write_json_atomic(state_dir / DECISION_FILE, decision)


def model_rows(chunks, window: dict | None, label_column: str):
    """Chunks of raw readings of a windowed model as its window rows (``kfp_edge.features``).

    Chunks that already hold the model's columns, and every chunk of an unwindowed model, pass
    unchanged; the row numbers of converted chunks are those of their first reading.
    """
    import pandas as pd

    from kfp_edge.features import WindowSpec, WindowStream

    spec = WindowSpec.from_dict(window) if window else None
    stream, last = None, None
    for origin, first_row, frame in chunks:
        if spec is None or set(spec.output_columns) <= set(frame.columns):
            yield origin, first_row, frame
            continue
        if stream is None:
            stream = WindowStream(spec, label_column if label_column in frame.columns else "")
        rows, last = stream.feed(frame), (origin, first_row)
        if rows:
            yield origin, first_row, pd.DataFrame(rows)
    if stream is not None and (rows := stream.flush()):
        yield *last, pd.DataFrame(rows)


def monitor_drift(
    workspace: str | os.PathLike,
    name: str,
    source: str | os.PathLike,
    version: int | str = "latest",
    *,
    delta: float = DEFAULT_DELTA,
    window: int = DEFAULT_WINDOW,
    clock: int = 1,
    bias_rate: float | None = None,
    capacity: int | None = None,
    label_column: str | None = None,
    id_column: str | None = None,
    model_in_loop: bool = True,
    reference: str | os.PathLike | None = None,
    seed: int = 0,
    save_state: bool = True,
    chunk_rows: int = 4096,
    stdin: IO[str] | None = None,
) -> dict:
    """Watches new observations for drift against a published model version.

    Steps: :func:`load_model`, :func:`restore`, :func:`new_sources` and
    :func:`read_observations`, :func:`decide`, :func:`commit` (see the module docstring).

    Args:
        workspace: Root of the workspace volume (holds ``models/`` and ``drift/``).
        name: Model name in the model store.
        source: A CSV or Parquet file, a directory of them (taken in name order), or ``-``
            for CSV lines with a header on standard input.
        version: Model version to watch, or ``latest``.
        delta: Family-wise ADWIN confidence, split over all detectors (Bonferroni).
        window: Observations per window of the windowed detectors.
        clock: ADWIN checks for a change every ``clock`` updates.
        bias_rate: Bias rate (lambda) of the reservoir, whose capacity is at most 1/lambda;
            None (or 0) keeps a saved reservoir's rate, or takes :data:`DEFAULT_BIAS_RATE`.
        capacity: Rows the reservoir holds (default 1/lambda); fixed once the reservoir exists.
        label_column: Label column of the observations (default: the model's).
        id_column: Row id column for late labels (default: the model's, if any).
        model_in_loop: Run the model on every row (prediction, confidence and error signals).
        reference: Optional CSV or Parquet of data like the training data, fed through the
            windowed detectors first when they start fresh, and the reference sample of the
            distribution tests.
        seed: Seed of a new reservoir's random generator.
        save_state: Save the state and the decision on the workspace.
        chunk_rows: Rows read at a time.
        stdin: Stream read when ``source`` is ``-`` (default ``sys.stdin``).

    Returns:
        The decision: ``drifted`` (an alarm is open), ``alarms`` (open, with their start),
        ``opened_alarms``, ``resolved_alarms``, ``features`` and ``error`` summaries,
        ``distribution`` (the tests), ``observations``, ``reservoir``, ``model``,
        ``parameters``.

    Raises:
        FileNotFoundError: If the model version or the input is missing.
        ValueError: On bad input or a corrupt state, naming the file, row and column;
            nothing saved is changed.
    """
    options = dict(locals())
    model = load_model(workspace, name, version, label_column, id_column)
    loaded, monitor, book = restore(workspace, model, options)
    sources, skipped = new_sources(source, book["processed"])
    monitor.detections.clear()
    observations = read_observations(monitor, sources, book["processed"], model, options)
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")
    decision = decide(monitor, book, model, published_versions(workspace, name), now)
    decision.update(
        observations=observations,
        stream_observations=monitor.stream_position,
        inputs={"read": [str(x) for x in sources], "skipped_already_processed": skipped},
        model={"name": name, "version": model["version"], "path": str(model["path"])},
        parameters={
            "delta": delta,
            "detector_delta": monitor.detector_delta,
            "detectors": len(monitor.detectors),
            "window": window,
            "clock": clock,
            "bias_rate": monitor.reservoir.bias_rate,
            "model_in_loop": bool(model_in_loop),
            "id_column": model["id_column"],
            "reference": None if reference is None else str(reference),
        },
        reservoir={**monitor.reservoir.summary(), "label_column": model["label_column"]},
        checked_at=now,
    )
    if save_state:
        commit(workspace, model, loaded, monitor, book, decision)
    return decision


def run_drift_check(
    workspace: str | os.PathLike, run_id: str, name: str, source, **options
) -> dict:
    """Runs :func:`monitor_drift` as a pipeline step of run ``run_id`` and records it.

    Writes the ``drift`` section of the run's report, ``drift_decision.json`` and the drift
    report (``drift_report.json``, ``drift_report.html``) in the run directory.

    Args:
        workspace: Root of the workspace volume.
        run_id: The run id (its directory is created if needed).
        name: Model name in the model store.
        source: The new observations (see :func:`monitor_drift`).
        **options: Other :func:`monitor_drift` arguments.

    Returns:
        The decision.

    Raises:
        FileExistsError: If the run already holds a drift check (it is never overwritten).
    """
    from kfp_edge.drift_monitor.report import write_report
    from kfp_edge.workspace import read_report, run_dir, update_report

    directory = run_dir(workspace, run_id)
    if "drift" in read_report(directory):
        raise FileExistsError(
            f"{directory / 'report.json'}: run {run_id!r} already holds a drift check; "
            "choose another run id"
        )
    decision = monitor_drift(workspace, name, source, **options)
    directory.mkdir(parents=True, exist_ok=True)
    write_json_atomic(directory / "drift_decision.json", decision)
    write_report(decision, directory)
    update_report(directory, "drift", decision)
    return decision


def decision_metrics(decision: dict) -> dict[str, float]:
    """Returns the flat figures of a decision logged as kfp Metrics.

    ``drifted``, ``open_alarms``, ``observations``, ``drifted_share`` (distribution tests),
    per feature ``<name>.detected`` (0/1) and, when detected this run, ``<name>.position`` and
    ``<name>.statistic``; ``error.*`` when the model is in the loop; ``reservoir.size``.
    """
    metrics: dict[str, float] = {
        "drifted": int(decision["drifted"]),
        "open_alarms": len(decision["alarms"]),
        "observations": decision["observations"],
    }
    if decision["distribution"]["drifted_share"] is not None:
        metrics["drifted_share"] = round(decision["distribution"]["drifted_share"], 6)
    for feature, figures in decision["features"].items():
        metrics[f"{feature}.detected"] = int(figures["detected"])
        if figures["position"] is not None:
            metrics[f"{feature}.position"] = figures["position"]
            metrics[f"{feature}.statistic"] = round(figures["statistic"], 6)
    error = decision["error"]
    if error["monitored"]:
        metrics["error.detected"] = int(error["detected"])
        for key in ("error_rate", "estimated_accuracy"):
            if error[key] is not None:
                metrics[f"error.{key}"] = round(error[key], 6)
        if error["position"] is not None:
            metrics["error.position"] = error["position"]
            metrics["error.statistic"] = round(error["statistic"], 6)
    metrics["reservoir.size"] = decision["reservoir"]["size"]
    return metrics
