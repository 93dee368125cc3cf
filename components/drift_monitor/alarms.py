"""Alarms with a lifecycle: opened by a detection, open until a model published after them.

river's ADWIN resets after a detection and then reports nothing, so the alarm is kept here: an
open alarm is reported on every run (the CLI exits 1) until a model version published after the
alarm opened resolves it. A failed or refused retraining publishes nothing, so the alarm stays
open and the next run alerts again. One alarm is open per detector at a time; later detections
of that detector count on it.

Only detections that mean trouble open an alarm: any change of a feature's location or spread
or of the predicted class shares, a drop of the model's confidence (its estimated accuracy) and
a rise of its error rate.
"""

from __future__ import annotations

MAX_HISTORY = 100  # resolved alarms kept in the state


def is_alarming(event: dict) -> bool:
    """Whether a detection opens an alarm (see the module docstring)."""
    if event["detector"] == "error":
        return event["statistic"] > 0
    if event["detector"] == "confidence":
        return event["statistic"] < 0
    return True


def _kind(detector: str) -> str:
    if detector in ("error", "confidence"):
        return detector
    if detector.startswith("prediction."):
        return "prediction"
    return "feature_" + detector.rsplit(".", 1)[1]


def open_alarms(alarms: list[dict], detections: list[dict], model_version: int, now: str) -> list:
    """Opens alarms for new alarming detections; returns the alarms opened now.

    Args:
        alarms: The open alarms (updated in place).
        detections: This run's detections (``detector``, ``position``, ``stream_position``,
            ``statistic``).
        model_version: The watched model version.
        now: The time of this run (ISO 8601, UTC).
    """
    by_detector = {a["detector"]: a for a in alarms}
    opened = []
    for event in filter(is_alarming, detections):
        alarm = by_detector.get(event["detector"])
        if alarm is not None:
            alarm["detections"] += 1
            alarm["last_seen_at"] = now
            continue
        alarm = {
            "detector": event["detector"],
            "kind": _kind(event["detector"]),
            "opened_at": now,
            "last_seen_at": now,
            "model_version": int(model_version),
            "position": event["position"],
            "stream_position": event["stream_position"],
            "statistic": event["statistic"],
            "detections": 1,
        }
        by_detector[event["detector"]] = alarm
        alarms.append(alarm)
        opened.append(alarm)
    return opened


def resolve_alarms(alarms: list[dict], published: dict[int, str], now: str) -> list[dict]:
    """Resolves the alarms that a model version published after them answers.

    Args:
        alarms: The open alarms (resolved ones are removed in place).
        published: ``{version: created_at}`` of the model's published versions (ISO 8601).
        now: The time of this run.

    Returns:
        The alarms resolved now, each with ``resolved_by`` (the version) and ``resolved_at``.
    """
    resolved = []
    for alarm in list(alarms):
        newer = sorted(
            v
            for v, created in published.items()
            if v > alarm["model_version"] and created >= alarm["opened_at"]
        )
        if newer:
            alarms.remove(alarm)
            resolved.append({**alarm, "resolved_by": newer[0], "resolved_at": now})
    return resolved
