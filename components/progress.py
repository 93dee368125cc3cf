"""Progress lines a step prints into its log, for whoever follows that log.

A step calls :func:`report_progress` as it works through a known number of items (ETL phases,
compressed variants, evaluated models). The line is plain text in the pod log on a cluster;
``kfp-edge run`` reads it from kfp.local's stream and draws it as a progress bar.
"""

from __future__ import annotations

import json

PREFIX = "kfp-edge progress: "


def report_progress(done: int, total: int, label: str = "") -> None:
    """Prints one progress line: ``done`` of ``total`` items finished; ``label`` names the item."""
    print(PREFIX + json.dumps({"done": done, "total": total, "label": label}), flush=True)


def parse_progress(line: str) -> dict | None:
    """Returns ``{"done", "total", "label"}`` of a progress line, or None for any other line."""
    text = line.strip()
    if not text.startswith(PREFIX):
        return None
    try:
        event = json.loads(text[len(PREFIX) :])
        return {"done": int(event["done"]), "total": int(event["total"]), "label": event["label"]}
    except (ValueError, KeyError, TypeError):
        return None
