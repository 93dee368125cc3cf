"""kfp component: the run context step."""

from typing import NamedTuple

from kfp import dsl

from kfp_edge.images import SPARK_IMAGE


@dsl.component(base_image=SPARK_IMAGE, install_kfp_package=False)
def RunContextOp(workspace: str, run_id: str, job_id: str, parameters: dict) -> NamedTuple(
    "Outputs", [("run_id", str), ("run_dir", str)]
):
    """Fixes the run id and records the run's parameters in its report.

    Args:
        workspace: Root of the workspace volume (the PVC mount path in the cluster).
        run_id: Run id asked for by the user; empty to use the KFP pipeline job id.
        job_id: The KFP pipeline job id (pass ``dsl.PIPELINE_JOB_ID_PLACEHOLDER``).
        parameters: The pipeline parameters, recorded in the run report for lineage.

    Returns:
        run_id: The run id all later steps use.
        run_dir: The run's directory on the workspace (holds report.json).
    """
    from collections import namedtuple

    from kfp_edge.run_context.context import init_run
    from kfp_edge.workspace import run_dir as _run_dir

    resolved = init_run(workspace, run_id, job_id, parameters)
    outputs = namedtuple("Outputs", ["run_id", "run_dir"])
    return outputs(resolved, str(_run_dir(workspace, resolved)))
