"""The first step of every run: fix the run id and record what the run was asked to do."""

from __future__ import annotations

import datetime as _dt
import platform

from kfp_edge import __version__
from kfp_edge.workspace import read_report, run_dir, update_report


def init_run(workspace: str, run_id: str, job_id: str, parameters: dict) -> str:
    """Creates the run directory on the workspace and writes the ``run`` report section.

    Args:
        workspace: Root of the workspace volume.
        run_id: Run id asked for by the user; empty to use the pipeline job id.
        job_id: The KFP pipeline job id (unique per run, recurring runs included).
        parameters: The pipeline parameters, recorded for lineage.

    Returns:
        The run id every later step uses.

    Raises:
        FileExistsError: If a finished run with that id already exists (never overwritten).
    """
    resolved = run_id or job_id
    directory = run_dir(workspace, resolved)
    if "publish" in read_report(directory):
        raise FileExistsError(
            f"{directory}: run {resolved!r} already finished and published; choose another run id"
        )
    directory.mkdir(parents=True, exist_ok=True)
    update_report(
        directory,
        "run",
        {
            "run_id": resolved,
            "job_id": job_id,
            "started_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "kfp_edge_version": __version__,
            "python": platform.python_version(),
            "parameters": parameters,
        },
    )
    return resolved
