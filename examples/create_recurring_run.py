r"""Schedule the kfp-edge retraining pipeline as a Kubeflow recurring run.

Every run checks the observations that landed in ``--input`` for drift against the published
model (ADWIN state and the biased reservoir persist on the workspace volume), and retrains,
gates and publishes a new version only when drift is found.

    python examples/create_recurring_run.py --host http://localhost:8080 \
        --input /workspace/incoming/sensor --model-name sensor-model \
        --cron "0 0 2 * * *" --param include_original=true

Authentication: ``KF_PIPELINES_TOKEN`` or the pod's projected service-account token, as for
``kfp-edge submit``. Exit status 0 when the recurring run was created.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Parses the command line and creates the recurring run; returns the exit status."""
    from kfp_edge.app.params import parse_params
    from kfp_edge.app.schedule import DEFAULT_CRON, create_recurring_retrain

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=None, help="KFP API address (default: kfp.Client's)")
    parser.add_argument("--namespace", default=None, help="Kubeflow profile namespace")
    parser.add_argument("--experiment", default=None, help="experiment name (default kfp-edge)")
    parser.add_argument("--input", required=True, help="where new observations land (on the PV)")
    parser.add_argument("--model-name", default="edge-model", help="the watched model")
    parser.add_argument("--cron", default=DEFAULT_CRON, help=f"schedule (default {DEFAULT_CRON!r})")
    parser.add_argument("--job-name", default="kfp-edge drift check")
    parser.add_argument("--resources", default=None, help="resource profile name or YAML")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any other retrain pipeline parameter (repeatable)",
    )
    args = parser.parse_args(argv)
    arguments = parse_params(args.param)
    arguments.update({"input_path": args.input, "model_name": args.model_name})
    try:
        job = create_recurring_retrain(
            arguments,
            cron=args.cron,
            host=args.host,
            namespace=args.namespace,
            experiment=args.experiment,
            job_name=args.job_name,
            resources=args.resources,
        )
    except (ValueError, FileNotFoundError) as exc:
        print(f"create_recurring_run: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"recurring run {job['recurring_run_id']} created in experiment {job['experiment_id']}: "
        f"cron {job['cron']!r}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
