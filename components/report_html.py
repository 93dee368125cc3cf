"""The run report as one self-contained HTML page: what a person looks at after a run.

The page has no script and loads nothing: inline SVG charts and tables, so the KFP UI shows it as
an HTML artifact and a browser opens ``<run>/report.html`` offline. Sections are drawn from
whatever ``report.json`` holds; a section (or a field) a step did not write is left out.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

from kfp_edge.svg_charts import lines, scatter
from kfp_edge.workspace import read_report

REPORT_HTML = "report.html"
_STYLE = (
    "body{font-family:sans-serif;margin:1.5em;max-width:1400px}"
    "table{border-collapse:collapse;margin:.5em 0}"
    "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
    "td:first-child,th:first-child{text-align:left}"
    "tr.chosen{font-weight:bold;background:#eef7ee}"
    ".pass{color:#1a7f37}.fail{color:#b42318}"
    ".matrix{font-size:12px}.matrix td{min-width:2em;text-align:center}"
    "section{margin-bottom:1.5em}.charts{display:flex;flex-wrap:wrap;gap:1em}"
)
_VARIANT_HEADER = (
    "variant",
    "technique",
    "size B",
    "shipped B",
    "gzip B",
    "accuracy [95 % interval]",
    "recall per class",
    "p50 µs",
    "p95 µs",
    "p99 µs",
    "invoke p50 µs",
    "cold start µs",
    "rows/s",
    "peak memory B",
    "builtin ops",
    "in browser",
    "browser p50 / p95 µs",
    "gate",
)


def _num(value, fmt: str = ",.0f") -> str:
    """Formats a number, or "n/a" for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "n/a"
    return format(value, fmt)


def _table(header, rows, css_class: str = "", row_classes=None) -> str:
    """An HTML table; cells are escaped."""
    row_classes = row_classes or [""] * len(rows)
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        (f'<tr class="{c}">' if c else "<tr>")
        + "".join(f"<td>{html.escape(str(v))}</td>" for v in row)
        + "</tr>"
        for row, c in zip(rows, row_classes, strict=True)
    )
    cls = f' class="{css_class}"' if css_class else ""
    return f"<table{cls}><tr>{head}</tr>{body}</table>"


def _models(evaluation: dict) -> list[dict]:
    """The reference (when measured) and every evaluated variant."""
    reference = evaluation.get("reference")
    models = [{**reference, "name": "saved_model (reference)"}] if reference else []
    return models + list(evaluation.get("variants") or [])


def _gate_cell(name: str, decision: dict) -> str:
    result = (decision.get("results") or {}).get(name)
    if result is None:
        return ""
    if name == decision.get("chosen"):
        return "chosen"
    return "pass" if result.get("passed") else "; ".join(result.get("reasons") or [])


def _variant_row(m: dict, decision: dict) -> list[str]:
    latency = m.get("latency_us") or {}
    ops = {True: "yes", False: "NO: " + ", ".join(m.get("select_tf_ops") or [])}
    return [
        m.get("name", "?"),
        m.get("technique", ""),
        _num(m.get("size_bytes")),
        _num(m.get("shipped_bytes")),
        _num(m.get("gzip_bytes")),
        _accuracy_cell(m),
        ", ".join(f"{c} {v['recall']:.2f}" for c, v in (m.get("per_class") or {}).items()),
        *(_num(latency.get(q), ".1f") for q in ("p50", "p95", "p99")),
        _num((m.get("invoke_latency_us") or {}).get("p50"), ".1f"),
        _num(m.get("cold_start_us")),
        _num(m.get("throughput_rows_per_s")),
        _num(m.get("peak_memory_bytes")),
        ops.get(m.get("ops_ok"), "n/a"),
        *_browser_cells(m.get("browser")),
        _gate_cell(m.get("name", ""), decision),
    ]


def _charts(models: list[dict]) -> str:
    measured = [m for m in models if isinstance(m.get("accuracy"), int | float)]
    size = [(m["name"], float(m.get("size_bytes") or 1), float(m["accuracy"])) for m in measured]
    latency = [
        (m["name"], float((m.get("latency_us") or {}).get("p50") or 1), float(m["accuracy"]))
        for m in measured
    ]
    return (
        '<div class="charts">'
        + scatter(size, "size in bytes", "accuracy", "Accuracy vs size")
        + scatter(latency, "p50 single-sample latency in µs", "accuracy", "Accuracy vs latency")
        + "</div>"
    )


def _variants_section(evaluation: dict, decision: dict) -> str:
    models = _models(evaluation)
    if not models:
        return ""
    chosen = decision.get("chosen")
    classes = ["chosen" if m.get("name") == chosen else "" for m in models]
    rows = [_variant_row(m, decision) for m in models]
    title = (
        f"Variants on the {evaluation.get('split', '?')} split ({evaluation.get('rows', '?')} "
        f"rows, {evaluation.get('num_threads', 1)} thread(s))"
    )
    unrunnable = [
        [u.get("name", "?"), _num(u.get("size_bytes")), u.get("error", "")]
        for u in evaluation.get("unrunnable") or []
    ]
    extra = (
        "<h3>Variants this interpreter cannot run</h3>"
        + _table(("variant", "size B", "error"), unrunnable)
        if unrunnable
        else ""
    )
    return (
        f'<section id="variants"><h2>{html.escape(title)}</h2>{_charts(models)}'
        f"{_table(_VARIANT_HEADER, rows, 'variants', classes)}{extra}</section>"
    )


def _matrix(name: str, classes: list, matrix: list) -> str:
    peak = max((max(r) for r in matrix if r), default=0) or 1
    head = "<tr><th>true \\ predicted</th>" + "".join(
        f"<th>{html.escape(str(c))}</th>" for c in classes
    )
    body = ""
    for label, row in zip(classes, matrix, strict=False):
        cells = "".join(
            f'<td style="background:rgba(31,119,180,{0.85 * v / peak:.2f})">{v}</td>' for v in row
        )
        body += f"<tr><th>{html.escape(str(label))}</th>{cells}</tr>"
    return f'<div><h3>{html.escape(name)}</h3><table class="matrix">{head}</tr>{body}</table></div>'


def _confusion_section(evaluation: dict, decision: dict) -> str:
    classes = evaluation.get("classes") or []
    models = [m for m in _models(evaluation) if m.get("confusion_matrix")]
    if not models or not classes:
        return ""
    chosen = decision.get("chosen")
    models.sort(key=lambda m: m.get("name") != chosen)  # the chosen variant first
    tables = "".join(
        _matrix(
            m["name"] + (" (chosen)" if m["name"] == chosen else ""), classes, m["confusion_matrix"]
        )
        for m in models
    )
    return (
        '<section id="confusion"><h2>Confusion matrices</h2>'
        f'<div class="charts">{tables}</div></section>'
    )


def _gate_section(decision: dict) -> str:
    if not decision:
        return ""
    chosen = decision.get("chosen")
    verdict = (
        f'<p class="pass">Chosen: <b>{html.escape(str(chosen))}</b></p>'
        if chosen
        else '<p class="fail">No variant met the service levels.</p>'
    )
    slo = [[k, v] for k, v in sorted((decision.get("slo") or {}).items())]
    results = [
        [name, "pass" if r.get("passed") else "fail", "; ".join(r.get("reasons") or []) or "-"]
        for name, r in (decision.get("results") or {}).items()
    ]
    return (
        f'<section id="gate"><h2>Gate</h2>{verdict}'
        + (_table(("service level", "value"), slo) if slo else "")
        + (_table(("variant", "result", "reasons"), results, "gate") if results else "")
        + "</section>"
    )


def _etl_section(etl: dict) -> str:
    if not etl:
        return ""
    counts = [
        [k.replace("_", " "), _num(etl.get(k), ",")]
        for k in ("rows_in", "rows_good", "rows_bad", "examples")
        if k in etl
    ]
    counts.append(["bad fraction", _num(etl.get("bad_fraction"), ".2%")])
    reasons = [
        [r.replace("_", " "), _num(n, ",")] for r, n in (etl.get("bad_by_reason") or {}).items()
    ]
    splits = [[s, _num(n, ",")] for s, n in (etl.get("rows_per_split") or {}).items()]
    per_class = [[c, _num(n, ",")] for c, n in (etl.get("rows_per_class") or {}).items()]
    return (
        f'<section id="etl"><h2>ETL ({html.escape(str(etl.get("source", "")))})</h2>'
        '<div class="charts">'
        + _table(("count", ""), counts, "etl-counts")
        + (_table(("quarantine reason", "rows"), reasons, "quarantine") if reasons else "")
        + (_table(("split", "examples"), splits) if splits else "")
        + (_table(("class", "examples"), per_class) if per_class else "")
        + "</div></section>"
    )


def _training_section(training: dict) -> str:
    if not training:
        return ""
    history = [h for h in training.get("history") or [] if isinstance(h, dict)]
    keys = sorted({k for h in history for k in h if k != "epoch"})

    def curve(key):
        return [(float(h["epoch"]), float(h[key])) for h in history if key in h and "epoch" in h]

    losses = {k: curve(k) for k in keys if "loss" in k}
    metrics = {k: curve(k) for k in keys if "loss" not in k}
    summary = [
        [k.replace("_", " "), training[k]]
        for k in ("model", "epochs", "replicas", "strategy", "examples_per_second", "fit_seconds")
        if k in training
    ]
    for split in ("validation", "test"):
        if isinstance(training.get(split), dict):
            summary.append([f"{split} accuracy", _num(training[split].get("accuracy"), ".4f")])
    return (
        '<section id="training"><h2>Training</h2><div class="charts">'
        + lines(losses, "epoch", "Training loss")
        + lines(metrics, "epoch", "Training accuracy")
        + _table(("", ""), summary)
        + "</div>"
        + _trials_table(training.get("search") or {})
        + "</section>"
    )


def _trials_table(search: dict) -> str:
    """The hyperparameter search's trials: assignment, status, objective; the best marked."""
    trials = search.get("trials") or []
    if not trials:
        return ""
    rows = [
        [
            t.get("name", "?"),
            ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in (t.get("assignment") or {}).items()
            ),
            t.get("status", ""),
            _num(t.get("objective"), ".4f"),
            _num(t.get("validation_accuracy"), ".4f"),
            _num(t.get("num_params")),
            _num(t.get("epochs_run")),
        ]
        for t in trials
    ]
    classes = ["chosen" if t.get("name") == search.get("best") else "" for t in trials]
    header = ("trial", "assignment", "status", "objective", "val accuracy", "params", "epochs")
    title = f"Search: {search.get('algorithm', '')}, best {search.get('best')}"
    return f"<h3>{html.escape(title)}</h3>" + _table(header, rows, "trials", classes)


def _header(report: dict) -> str:
    run = report.get("run") or {}
    publish = report.get("publish") or {}
    title = f"kfp-edge run {run.get('run_id', '')}".strip()
    facts = [f"started {run['started_at']}"] if run.get("started_at") else []
    if publish:
        facts.append(
            f"published {publish.get('model_name', '?')} version {publish.get('version', '?')} "
            f"({publish.get('variant', '?')})"
        )
    line = f"<p>{html.escape(' · '.join(facts))}</p>" if facts else ""
    return f"<h1>{html.escape(title)}</h1>{line}"


def _page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def render_report(report: dict) -> str:
    """Returns the page of a whole run: gate, champion, variants, confusion, ETL, training.

    Args:
        report: The run's ``report.json`` (any subset of its sections).
    """
    evaluation = report.get("evaluation") or {}
    decision = report.get("gate") or {}
    body = (
        _header(report)
        + _gate_section(decision)
        + _champion_section(decision)
        + _variants_section(evaluation, decision)
        + _confusion_section(evaluation, decision)
        + _etl_section(report.get("etl") or {})
        + _training_section(report.get("training") or {})
    )
    return _page(f"kfp-edge run {(report.get('run') or {}).get('run_id', '')}", body)


def _browser_cells(browser: dict | None) -> list[str]:
    """The browser columns: whether LiteRT.js runs the variant, and its latency if measured."""
    if not browser:
        return ["n/a", "n/a"]
    ready = "yes" if browser["browser_ready"] else "NO: " + "; ".join(browser["reasons"])
    latency = browser.get("latency_us")
    measured = f"{latency['p50']:.1f} / {latency['p95']:.1f}" if latency else "not measured"
    return [ready, measured if browser["browser_ready"] else "n/a"]


def render_html(evaluation: dict, decision: dict | None = None) -> str:
    """Returns the evaluation's page: the two charts and the table of every variant.

    Args:
        evaluation: The evaluation dict (``evaluation.json``).
        decision: The gate's decision, to show which variant passed and why others lost.
    """
    body = _variants_section(evaluation, decision or {}) + _champion_section(decision)
    return _page("kfp-edge evaluation", body)


def write_run_report(run_directory: str | os.PathLike) -> Path:
    """Writes ``<run>/report.html`` from ``<run>/report.json`` (atomically) and returns its path."""
    path = Path(run_directory) / REPORT_HTML
    tmp = path.with_name(f".{REPORT_HTML}.tmp")
    tmp.write_text(render_report(read_report(run_directory)), encoding="utf-8")
    os.replace(tmp, path)
    return path


def _accuracy_cell(row: dict) -> str:
    if not isinstance(row.get("accuracy"), int | float):
        return "n/a"
    interval = row.get("accuracy_interval")
    text = f"{float(row['accuracy']):.4f}"
    return f"{text} [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else text


def _champion_section(decision: dict | None) -> str:
    """The champion (published version) against every challenger, when the gate scored one."""
    champion = (decision or {}).get("champion")
    if not champion:
        return ""
    title = f"Champion: {champion['model_name']} v{champion['version']}"
    if not champion.get("comparable"):
        return (
            f'<section id="champion"><h3>{html.escape(title)}</h3>'
            f"<p>not compared: {html.escape(champion['reason'])}</p></section>"
        )
    recalls = ", ".join(f"{c} {v['recall']:.2f}" for c, v in champion["per_class"].items())
    rows = [
        f"<tr><td>{html.escape(name)}</td><td>{res['vs_champion']['accuracy_delta']:+.4f}</td>"
        "<td>"
        + html.escape(
            ", ".join(f"{c} {d:+.2f}" for c, d in res["vs_champion"]["class_recall_deltas"].items())
        )
        + "</td></tr>"
        for name, res in decision["results"].items()
        if res.get("vs_champion")
    ]
    return (
        f'<section id="champion"><h3>{html.escape(title)}</h3>'
        f"<p>accuracy {_accuracy_cell(champion)} on "
        f"{champion['rows']} rows; recall {html.escape(recalls)}</p>"
        "<table><tr><th>challenger</th><th>accuracy vs champion</th>"
        "<th>recall vs champion</th></tr>" + "".join(rows) + "</table></section>"
    )
