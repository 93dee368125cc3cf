"""Champion and challenger: the published model scored on the same rows as every new variant.

The champion is the latest published version of the model
(:class:`kfp_edge.model_versions.PublishedModels`); its ``model.tflite`` is what the devices
run. :func:`score_champion` scores it with LiteRT on the rows the challengers were scored on;
:func:`compare` says whether a challenger is worse beyond ``max_regression`` overall or beyond
``max_class_recall_drop`` in any class. The retraining pipeline scores both on recent labelled
data the same way: pass that data as the gate's ``data_dir``.
"""

from __future__ import annotations

import json
import os

import numpy as np

from kfp_edge.classification import classification_report


def score_champion(
    workspace: str | os.PathLike,
    model_name: str,
    x: np.ndarray,
    y: np.ndarray,
    classes: list[str],
    num_threads: int = 1,
) -> dict | None:
    """Scores the latest published version of ``model_name`` on ``(x, y)``.

    Args:
        workspace: Root of the workspace volume (the store is ``<workspace>/models``).
        model_name: The model's name in the store.
        x: Raw features of the rows the challengers were scored on.
        y: Their class ids.
        classes: Class names, index = class id.
        num_threads: Interpreter threads.

    Returns:
        None when nothing is published yet; else ``{"model_name", "version", "path",
        "comparable": bool, "reason"}`` and, when comparable, ``"accuracy",
        "accuracy_interval", "per_class", "confusion_matrix", "rows"``. A champion whose model
        takes other features or knows other classes is not comparable (``reason`` says why):
        the challenger is then judged without it.

    Raises:
        FileNotFoundError: If the latest version has no model file (named).
    """
    from kfp_edge.litert import TFLiteModel
    from kfp_edge.model_versions import (
        DATASET_MANIFEST_FILE,
        MODEL_FILE,
        PublishedModels,
        models_root,
    )

    store = PublishedModels(models_root(workspace))
    version = store.latest(model_name)
    if version is None:
        return None
    directory = store.get(model_name, version)
    path = directory / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the published version {version} has no {MODEL_FILE}")
    found = {"model_name": model_name, "version": version, "path": str(path)}
    model = TFLiteModel(path, num_threads=num_threads)
    manifest_path = directory / DATASET_MANIFEST_FILE
    champion_classes = (
        [str(c) for c in json.loads(manifest_path.read_text())["classes"]]
        if manifest_path.exists()
        else None
    )
    reason = ""
    if model.num_features != x.shape[1]:
        reason = f"it takes {model.num_features} features, the data has {x.shape[1]}"
    elif model.num_classes != len(classes) or champion_classes not in (None, classes):
        reason = f"its classes {champion_classes or model.num_classes} are not {classes}"
    if reason:
        return {**found, "comparable": False, "reason": f"version {version}: {reason}"}
    report = classification_report(y, model.predict(x), classes)
    return {**found, "comparable": True, "reason": "", **report, "rows": int(len(y))}


def compare(
    variant: dict, champion: dict, max_regression: float, max_class_recall_drop: float
) -> tuple[dict, list[str]]:
    """Compares one challenger with the champion on the same rows.

    Args:
        variant: The challenger's figures (``accuracy``, ``per_class``).
        champion: A comparable champion of :func:`score_champion`.
        max_regression: Largest accuracy the challenger may lose against the champion.
        max_class_recall_drop: Largest recall any class may lose against the champion.

    Returns:
        ``(comparison, reasons)``: ``{"accuracy_delta", "class_recall_deltas": {class:
        delta}}`` (challenger minus champion) and why the challenger is refused, if it is.
    """
    delta = float(variant["accuracy"]) - float(champion["accuracy"])
    reasons = []
    if -delta > max_regression + 1e-12:
        reasons.append(
            f"accuracy {float(variant['accuracy']):.4f} regresses {-delta:.4f} against the "
            f"champion v{champion['version']} ({float(champion['accuracy']):.4f}) > "
            f"max_regression {max_regression:.4f}"
        )
    deltas = class_recall_deltas(variant, champion)
    for name, d in deltas.items():
        if -d > max_class_recall_drop + 1e-12:
            reasons.append(
                f"class {name!r} recall drops {-d:.4f} against the champion "
                f"v{champion['version']} > max_class_recall_drop {max_class_recall_drop:.4f}"
            )
    return {"accuracy_delta": delta, "class_recall_deltas": deltas}, reasons


def class_recall_deltas(variant: dict, reference: dict) -> dict[str, float]:
    """Recall of each class of ``reference`` with support: variant's minus reference's."""
    out = {}
    for name, figures in (reference.get("per_class") or {}).items():
        if figures.get("support", 0) and name in (variant.get("per_class") or {}):
            out[name] = float(variant["per_class"][name]["recall"]) - float(figures["recall"])
    return out
