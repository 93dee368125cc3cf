"""The search on one machine: trials in parallel, Katib's algorithms and median stopping rule.

The same search space as the Katib Experiment (:mod:`.katib`). Each trial is one training job
of a single replica (:func:`.training_step.train_local`, as Katib runs each trial as its own
job), ``parallel_trials`` at a time. Every trial validates after each epoch (the trainer's
``--report-metrics``); a monitor applies Katib's median stopping rule (``medianstop``): once at
least ``min_trials_required`` trials have completed, a running trial whose best objective at
epoch ``s >= start_step`` is below the median of the completed trials' running means at ``s``
is asked to stop (the trainer's ``--stop-file``: it finishes the epoch and saves what it has),
and is marked ``early_stopped``.

The objective is the validation accuracy, minus ``size_penalty`` per million parameters when a
smaller model should win a near tie. The best trial (highest objective, then fewer
parameters, then the earlier trial) goes on to compression.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kfp_edge.tfjob_training.search_space import as_trainer_options, suggest
from kfp_edge.workspace import write_json_atomic

SEARCH_DIR = "search"  # <run dir>/search/trial-<n>/
SEARCH_FILE = "search.json"
STOP_FILE = "STOP"


def objective(report: dict, size_penalty: float = 0.0) -> float:
    """Validation accuracy minus ``size_penalty`` per million model parameters."""
    accuracy = float((report.get("validation") or {}).get("accuracy", 0.0))
    return accuracy - size_penalty * float(report.get("num_params", 0)) / 1e6


def running_means(history: dict[int, float]) -> dict[int, float]:
    """Returns epoch -> mean of the objective over epochs 1..epoch (Katib's running average)."""
    means, total = {}, 0.0
    for count, epoch in enumerate(sorted(history), start=1):
        total += history[epoch]
        means[epoch] = total / count
    return means


def should_stop(
    history: dict[int, float],
    completed: list[dict[int, float]],
    min_trials_required: int = 3,
    start_step: int = 4,
) -> bool:
    """Katib's median stopping rule for one running trial.

    Args:
        history: The running trial's epoch -> validation accuracy (epochs from 1).
        completed: The same for every completed trial.
        min_trials_required: Completed trials needed before any trial is stopped.
        start_step: First epoch at which a trial may be stopped.

    Returns:
        True when the trial's best value so far is below the median, at its latest epoch, of
        the completed trials' running means.
    """
    if not history or len(completed) < min_trials_required:
        return False
    step = max(history)
    if step < start_step:
        return False
    means = [running_means(h)[step] for h in completed if step in h]
    if len(means) < min_trials_required:
        return False
    return max(history.values()) < statistics.median(means)


class _Monitor:
    """Polls running trials' progress and writes their stop files when the rule says so."""

    def __init__(self, rule: dict, poll_seconds: float):
        self.rule, self.poll_seconds = rule, poll_seconds
        self.running: dict[str, Path] = {}
        self.completed: list[dict[int, float]] = []
        self.stopped: set[str] = set()
        self.lock = threading.Lock()
        self.done = threading.Event()

    def watch(self) -> None:
        while not self.done.wait(self.poll_seconds):
            with self.lock:
                running, completed = dict(self.running), list(self.completed)
            for name, trial_dir in running.items():
                history = read_history(trial_dir)
                if name not in self.stopped and should_stop(history, completed, **self.rule):
                    (trial_dir / STOP_FILE).write_text(f"median stopping rule at {max(history)}\n")
                    with self.lock:
                        self.stopped.add(name)


def read_history(trial_dir: Path) -> dict[int, float]:
    """Returns epoch -> validation accuracy of a trial from its trainer's progress files."""
    history = {}
    for path in trial_dir.glob("jobs/*/epochs.jsonl"):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if "val_accuracy" in record:
                history[int(record["epoch"])] = float(record["val_accuracy"])
    return history


def run_search(
    data_dir: str | Path,
    search_dir: str | Path,
    space: dict,
    *,
    algorithm: str = "random",
    max_trials: int = 4,
    parallel_trials: int = 2,
    seed: int = 42,
    size_penalty: float = 0.0,
    early_stopping: bool = True,
    min_trials_required: int = 3,
    start_step: int = 4,
    poll_seconds: float = 0.5,
    train=None,
    **fixed,
) -> dict:
    """Runs the search and returns the trials table and the best trial.

    Steps: draw the assignments; start ``parallel_trials`` trials at a time, each a
    single-replica training job in ``<search_dir>/trial-<n>/``; stop poor trials by the median
    rule; score every finished trial; write ``search.json``; return it.

    Args:
        data_dir: The ETL output.
        search_dir: Directory of the trials.
        space: The search space (see :mod:`.search_space`).
        algorithm: ``random`` or ``grid``.
        max_trials: Trials at most.
        parallel_trials: Trials running at the same time.
        seed: Seed of the suggestions (and of training).
        size_penalty: Objective penalty per million parameters.
        early_stopping: Apply the median stopping rule.
        min_trials_required: The rule's completed-trials threshold.
        start_step: The rule's first epoch.
        poll_seconds: How often the monitor reads the trials' progress.
        train: The trial runner ``train(data_dir, trial_dir, **options) -> report``; the local
            TFJob engine (:func:`.training_step.train_local`) when None.
        **fixed: Trainer options common to every trial (model, epochs, batch_size, ...).

    Returns:
        ``{"algorithm", "space", "objective", "trials": [{"name", "assignment", "status",
        "objective", "validation_accuracy", "num_params", "epochs_run", "saved_model_dir",
        "seconds"}], "best": <trial name>}``.

    Raises:
        RuntimeError: If no trial succeeded (the trials table names each failure).
    """
    if train is None:
        from kfp_edge.tfjob_training.training_step import train_local as train
    search_dir = Path(search_dir)
    search_dir.mkdir(parents=True, exist_ok=True)
    assignments = suggest(space, algorithm, max_trials, seed=seed)
    rule = {"min_trials_required": min_trials_required, "start_step": start_step}
    monitor = _Monitor(rule, poll_seconds)
    watcher = threading.Thread(target=monitor.watch, daemon=True)
    if early_stopping:
        watcher.start()

    def run_trial(index: int, assignment: dict) -> dict:
        name = f"trial-{index:03d}"
        trial_dir = search_dir / name
        with monitor.lock:
            monitor.running[name] = trial_dir
        started = time.perf_counter()
        options = {**fixed, **as_trainer_options(assignment), "workers": 1, "seed": seed}
        row = {"name": name, "assignment": assignment}
        try:
            report = train(
                data_dir,
                trial_dir,
                report_metrics=True,
                stop_file=str(trial_dir / STOP_FILE),
                **options,
            )
        except Exception as exc:  # noqa: BLE001 - one failed trial must not end the search
            row.update(status="failed", error=str(exc).splitlines()[0][:300])
        else:
            row.update(_scored(report, size_penalty, name in monitor.stopped))
        row["seconds"] = round(time.perf_counter() - started, 2)
        with monitor.lock:
            monitor.running.pop(name, None)
            if row["status"] == "succeeded":
                monitor.completed.append(read_history(trial_dir))
        return row

    try:
        with ThreadPoolExecutor(max_workers=max(1, parallel_trials)) as pool:
            rows = list(pool.map(run_trial, range(len(assignments)), assignments))
    finally:
        monitor.done.set()
    return _summarise(search_dir, rows, algorithm, space, size_penalty)


def _scored(report: dict, size_penalty: float, stopped: bool) -> dict:
    return {
        "status": "early_stopped" if stopped else "succeeded",
        "objective": round(objective(report, size_penalty), 6),
        "validation_accuracy": (report.get("validation") or {}).get("accuracy"),
        "num_params": report.get("num_params"),
        "epochs_run": report.get("epochs_done", report.get("epochs")),
        "saved_model_dir": report.get("saved_model_dir"),
    }


def _summarise(search_dir: Path, rows: list[dict], algorithm, space, size_penalty) -> dict:
    finished = [r for r in rows if r["status"] in ("succeeded", "early_stopped")]
    summary = {
        "algorithm": algorithm,
        "space": space,
        "objective": {"metric": "validation_accuracy", "size_penalty_per_million": size_penalty},
        "trials": rows,
        "best": None,
    }
    if finished:
        best = max(
            finished, key=lambda r: (r["objective"], -(r["num_params"] or 0), -rows.index(r))
        )
        summary["best"] = best["name"]
    write_json_atomic(search_dir / SEARCH_FILE, summary)
    if not finished:
        failures = "; ".join(f"{r['name']}: {r.get('error')}" for r in rows)
        raise RuntimeError(f"{search_dir}: every trial failed: {failures}")
    return summary
