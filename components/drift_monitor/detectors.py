"""ADWIN detectors whose saved state is plain data: parameters and the values since the reset.

river's ADWIN (a Rust core) exposes no buckets, but it clears its whole window on the update
after a detection, so its state is a pure function of its parameters and the values it was fed
since then: replaying them into a fresh ADWIN rebuilds the same detector. A saved detector is
therefore ``{"delta", "clock", "values", "updates", "last"}``, nothing executable.

A statistic is the mean of the last :data:`RECENT` values a detector saw minus the mean of the
part ADWIN dropped from its window: for a feature's window mean a shift in training standard
deviations, for a window standard deviation a change of spread, for an indicator a rate change.
"""

from __future__ import annotations

from collections import deque

RECENT = 16  # values behind a statistic's recent mean
MAX_REPLAY = 100_000  # values kept for the rebuild; older ones are forgotten


class Detector:
    """One ADWIN detector, rebuilt from data.

    Args:
        delta: ADWIN's confidence parameter for this detector.
        clock: ADWIN checks for a change every ``clock`` updates.
        values: Values fed since the last reset (replayed into a fresh ADWIN).
        updates: Values fed in all (for the report).
    """

    def __init__(self, delta: float, clock: int = 1, values=(), updates: int = 0):
        from river.drift import ADWIN

        self.delta = float(delta)
        self.clock = int(clock)
        self.adwin = ADWIN(delta=self.delta, clock=self.clock)
        self.values: deque = deque(maxlen=MAX_REPLAY)
        for value in values:  # a replay of the values since the reset rebuilds the window
            self.adwin.update(float(value))
            self.values.append(float(value))
        self.updates = int(updates)
        self._detected = self.adwin.drift_detected

    def update(self, value: float) -> dict | None:
        """Feeds one value; returns the detection (statistic, means, dropped values) or None."""
        events = self.update_many([value])
        return events[0][1] if events else None

    def update_many(self, values: list[float]) -> list[tuple[int, dict]]:
        """Feeds values in order; returns ``(index in values, detection)`` of each detection.

        The same as :meth:`update` value by value, in one loop over ADWIN.
        """
        adwin, events, start = self.adwin, [], 0
        update = adwin.update
        for k, value in enumerate(values):
            update(value)
            if adwin.drift_detected:
                events.append((k, self._feed(values[start : k + 1], detected=True)))
                start = k + 1
        if start < len(values):
            self._feed(values[start:], detected=False)
        self.updates += len(values)
        return events

    def _feed(self, values: list[float], detected: bool) -> dict | None:
        """Notes values ADWIN took (the last of them detected a change, if ``detected``)."""
        if self._detected:
            self.values.clear()  # river reset its window on the update after a detection
        self.values.extend(values)
        self._detected = detected
        if not detected:
            return None
        # Until a detection ADWIN's window is every value since the reset; it keeps the newest
        # ``width`` of them, so the dropped (old) part is the rest.
        values = list(self.values)
        dropped = values[: max(len(values) - int(self.adwin.width), 1)]
        dropped_n = len(dropped)
        dropped_mean = sum(dropped) / dropped_n
        recent = values[-RECENT:]
        recent_mean = sum(recent) / len(recent)
        return {
            "statistic": float(recent_mean - dropped_mean),
            "mean_before": float(dropped_mean),
            "mean_recent": float(recent_mean),
            "window_dropped": int(dropped_n),
        }

    @property
    def estimation(self) -> float | None:
        """ADWIN's current mean estimate, or None before the first value."""
        return float(self.adwin.estimation) if self.updates else None

    def to_dict(self) -> dict:
        """Returns the detector as JSON-able data (see the module docstring)."""
        values = [] if self._detected else list(self.values)
        return {"delta": self.delta, "clock": self.clock, "values": values, "updates": self.updates}

    @classmethod
    def from_dict(cls, data: dict) -> Detector:
        """Rebuilds a detector saved by :meth:`to_dict`.

        Raises:
            ValueError: If the data is not a saved detector.
        """
        try:
            return cls(data["delta"], data["clock"], data["values"], data["updates"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a saved detector: {exc!r}") from exc
