"""``kfp-edge drift``: check new observations for drift against a published model.

Exit status: 0 no open alarm, 1 an alarm is open (drift detected now or earlier and not yet
resolved by a newer published model), 2 error (bad input, missing model or file, a corrupt or
foreign saved state).
"""

from __future__ import annotations

import json
import sys

from kfp_edge.drift_monitor.config import DriftConfig

EXIT_NO_DRIFT = 0
EXIT_DRIFT = 1


def register(subparsers) -> None:
    """Adds the ``drift`` subcommand to the ``kfp-edge`` parser.

    Args:
        subparsers: The subparsers object of the ``kfp-edge`` argument parser.
    """
    p = subparsers.add_parser(
        "drift",
        help="check new observations for drift (exit 0: none, 1: open alarm, 2: error)",
        description="Feed new observations through ADWIN drift detectors for a published model "
        "and update its biased reservoir. Exit status: 0 no open alarm, 1 an alarm is open "
        "(until a newer published model resolves it), 2 error.",
    )
    defaults = DriftConfig()
    p.add_argument("--workspace", default=".kfp-edge", help="workspace directory (the PV)")
    p.add_argument("--name", required=True, help="model name in the model store")
    p.add_argument("--version", default="latest", help="model version (default latest)")
    p.add_argument(
        "--input",
        dest="input_path",
        default=None,
        help="CSV or Parquet file, directory of them, or - for CSV lines on stdin",
    )
    p.add_argument("source", nargs="?", default=None, help="- to read CSV lines from stdin")
    p.add_argument(
        "--delta",
        type=float,
        default=defaults.delta,
        help=f"family-wise ADWIN delta, split over the detectors (default {defaults.delta})",
    )
    p.add_argument(
        "--window",
        type=int,
        default=defaults.window,
        help=f"observations per window (default {defaults.window})",
    )
    p.add_argument("--clock", type=int, default=1, help="ADWIN checks every CLOCK updates")
    p.add_argument(
        "--bias-rate",
        type=float,
        default=None,
        help="reservoir bias rate lambda (default: the saved reservoir's, 0.001 for a new one)",
    )
    p.add_argument("--capacity", type=int, default=None, help="reservoir rows (default 1/lambda)")
    p.add_argument("--label", dest="label_column", default=None, help="label column")
    p.add_argument("--id", dest="id_column", default=None, help="row id column (late labels)")
    p.add_argument("--html", default=None, help="also write the drift report to this HTML file")
    p.add_argument("--reference", default=None, help="data like the training data (priming)")
    p.add_argument("--no-model", action="store_true", help="leave the model out of the loop")
    p.add_argument("--no-save", action="store_true", help="do not update the saved state")
    p.add_argument("--json", action="store_true", help="print the whole decision as JSON")
    p.set_defaults(func=_cmd_drift)


def _cmd_drift(args) -> int:
    from kfp_edge.drift_monitor.monitor import monitor_drift

    if (args.input_path is None) == (args.source is None):
        raise ValueError("give the observations once: --input PATH, or - for stdin")
    if args.source not in (None, "-"):
        raise ValueError(f"unexpected argument {args.source!r}; use --input PATH")
    decision = monitor_drift(
        args.workspace,
        args.name,
        args.input_path or args.source,
        args.version,
        delta=args.delta,
        window=args.window,
        clock=args.clock,
        bias_rate=args.bias_rate,
        capacity=args.capacity,
        label_column=args.label_column,
        id_column=args.id_column,
        model_in_loop=not args.no_model,
        reference=args.reference,
        save_state=not args.no_save,
    )
    if args.html:
        from pathlib import Path

        from kfp_edge.drift_monitor.report import render_html

        Path(args.html).write_text(render_html(decision))
    if args.json:
        json.dump(decision, sys.stdout, indent=2, sort_keys=True, default=str)
        print()
    else:
        print(format_decision(decision))
    return EXIT_DRIFT if decision["drifted"] else EXIT_NO_DRIFT


def format_decision(decision: dict) -> str:
    """Formats a drift decision as a few lines of text."""
    model = decision["model"]
    lines = [
        f"model {model['name']} version {model['version']}: {decision['observations']} "
        f"observations, {'DRIFT' if decision['drifted'] else 'no drift'}"
    ]
    for alarm in decision["alarms"]:
        lines.append(
            f"  ALARM {alarm['detector']} ({alarm['kind']}): open since {alarm['opened_at']} "
            f"(version {alarm['model_version']}, {alarm['detections']} detection(s))"
        )
    for alarm in decision["resolved_alarms"]:
        lines.append(f"  resolved {alarm['detector']} by version {alarm['resolved_by']}")
    for feature, f in decision["features"].items():
        if f["position"] is not None:
            lines.append(
                f"  {feature}: {f['signal']} changed at observation {f['position']} "
                f"({f['statistic']:+.3f}, {f['detections']} detection(s))"
            )
        else:
            lines.append(f"  {feature}: {'alarm open' if f['detected'] else 'stable'}")
    share = decision["distribution"]["drifted_share"]
    if share is not None:
        lines.append(f"  distribution tests: {share:.0%} of features drifted")
    error = decision["error"]
    if error["monitored"] and error["labelled_rows"]:
        state = "alarm open" if error["detected"] else "error rate stable"
        if error["position"] is not None:
            state = (
                f"error rate rose at observation {error['position']} ({error['statistic']:+.3f})"
            )
        lines.append(
            f"  model error: {state}; {error['errors']}/{error['labelled_rows']} labelled rows "
            "misclassified"
        )
    reservoir = decision["reservoir"]
    lines.append(
        f"  reservoir: {reservoir['size']}/{reservoir['capacity']} rows, "
        f"{reservoir['seen']} seen, bias rate {reservoir['bias_rate']}"
        + (f", at {reservoir['path']}" if reservoir.get("path") else "")
    )
    return "\n".join(lines)
