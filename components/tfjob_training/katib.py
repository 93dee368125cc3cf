"""The search on the cluster: a Katib Experiment (kubeflow.org/v1beta1) whose trials are our TFJob.

Generated from the same search space as the local search (:mod:`.search_space`): every
searched parameter becomes a Katib parameter and a ``trialParameters`` entry, and the trial
template is the TFJob of :mod:`.tfjob_spec` with ``${trialParameters.<name>}`` in the trainer
arguments. Each trial writes to its own directory on the workspace volume, named after the
trial (``${trialSpec.Name}``, which is also the TFJob's name).

Metrics: Katib's StdOut collector reads ``name=value`` lines from the primary container of the
primary pods (the chief: ``training.kubeflow.org/replica-type: chief``); the trainer prints
``epoch=<n> validation_accuracy=<v> validation_loss=<v>`` after every epoch when run with
``--report-metrics``, which also lets Katib's median stopping rule end poor trials early.

:func:`check_against_katib` rebuilds the experiment into the ``kubeflow-katib-api`` models
(pydantic) and fails on any field the models drop, and the TFJob inside it is checked by
:func:`.tfjob_spec.check_against_sdk`.
"""

from __future__ import annotations

from kfp_edge.tfjob_training import tfjob_spec
from kfp_edge.tfjob_training.search_space import ALGORITHMS, validate_space

API_VERSION = "kubeflow.org/v1beta1"
TRIAL_NAME = "trialName"
OBJECTIVE = "validation_accuracy"
ADDITIONAL_METRICS = ["validation_loss"]


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def katib_parameter(name: str, spec: dict) -> dict:
    """Returns one Katib ``parameters`` entry for a normalised search-space parameter."""
    if spec["type"] == "categorical":
        return {
            "name": name,
            "parameterType": "categorical",
            "feasibleSpace": {"list": [str(v) for v in spec["values"]]},
        }
    space = {"min": str(spec["min"]), "max": str(spec["max"])}
    if spec["type"] == "int" and spec["step"] != 1:
        space["step"] = str(spec["step"])
    if spec["scale"] == "log":
        space["distribution"] = "logUniform"
    return {"name": name, "parameterType": spec["type"], "feasibleSpace": space}


def _templated_args(args: list[str], names: list[str]) -> list[str]:
    """Puts ``${trialParameters.x}`` in place of the value after each searched flag."""
    args = list(args)
    for name in names:
        flag = "--" + name.replace("_", "-")
        args[args.index(flag) + 1] = "${trialParameters." + _camel(name) + "}"
    return args


def build_experiment(
    name: str,
    space: dict,
    data_dir: str,
    trials_dir: str,
    *,
    namespace: str = "kubeflow",
    algorithm: str = "random",
    max_trials: int = 8,
    parallel_trials: int = 2,
    max_failed_trials: int = 3,
    goal: float | None = None,
    early_stopping: bool = True,
    seed: int = 42,
    **tfjob_options,
) -> dict:
    """Returns a Katib Experiment searching ``space`` with our TFJob as the trial template.

    Args:
        name: Experiment name (DNS-1035; also the prefix of every trial's name).
        space: The search space (see :mod:`.search_space`).
        data_dir: The ETL output on the workspace volume, as the replicas see it.
        trials_dir: Directory on the volume under which each trial writes ``<trial-name>/``.
        namespace: Namespace of the experiment and its trials.
        algorithm: Katib suggestion algorithm (random, grid, bayesianoptimization, tpe).
        max_trials: ``maxTrialCount``.
        parallel_trials: ``parallelTrialCount``.
        max_failed_trials: ``maxFailedTrialCount``.
        goal: Stop when the objective reaches this value (None: run every trial).
        early_stopping: Katib's median stopping rule (``medianstop``) on the objective.
        seed: ``random_state`` of the random algorithm.
        **tfjob_options: Fixed trainer options and replica settings of
            :func:`.tfjob_spec.build_tfjob` and :func:`.tfjob_spec.trainer_args` (model,
            epochs, workers, image, replica_resources, pvc_name, ...).

    Raises:
        ValueError: For a bad space or algorithm, or counts below 1.
    """
    space = validate_space(space)
    if algorithm not in ALGORITHMS:
        raise ValueError(f"Katib algorithm {algorithm!r}: expected one of {', '.join(ALGORITHMS)}")
    if min(max_trials, parallel_trials) < 1:
        raise ValueError("max_trials and parallel_trials must be at least 1")
    trial_template = _trial_template(space, data_dir, trials_dir, namespace, tfjob_options)
    spec = {
        "objective": {
            "type": "maximize",
            "objectiveMetricName": OBJECTIVE,
            "additionalMetricNames": ADDITIONAL_METRICS,
            **({"goal": goal} if goal is not None else {}),
        },
        "algorithm": {"algorithmName": algorithm},
        "parallelTrialCount": parallel_trials,
        "maxTrialCount": max_trials,
        "maxFailedTrialCount": max_failed_trials,
        "metricsCollectorSpec": {"collector": {"kind": "StdOut"}},
        "parameters": [katib_parameter(n, s) for n, s in space.items()],
        "trialTemplate": trial_template,
    }
    if algorithm == "random":
        spec["algorithm"]["algorithmSettings"] = [{"name": "random_state", "value": str(seed)}]
    if early_stopping:
        spec["earlyStopping"] = {
            "algorithmName": "medianstop",
            "algorithmSettings": [
                {"name": "min_trials_required", "value": "3"},
                {"name": "start_step", "value": "4"},
            ],
        }
    metadata = {"name": tfjob_spec.job_name(name, prefix="kfp-edge-search"), "namespace": namespace}
    return {"apiVersion": API_VERSION, "kind": "Experiment", "metadata": metadata, "spec": spec}


def _trial_template(space, data_dir, trials_dir, namespace, options) -> dict:
    """The TFJob trial template with the searched trainer arguments as trial parameters."""
    trainer_keys = {"model", "epochs", "batch_size", "learning_rate", "width", "depth", "seed"}
    fixed = {k: v for k, v in options.items() if k in trainer_keys and k not in space}
    trial = "${trialParameters." + TRIAL_NAME + "}"
    args = tfjob_spec.trainer_args(
        data_dir, f"{trials_dir.rstrip('/')}/{trial}", trial, report_metrics=True, **fixed
    )
    args = _templated_args(args, list(space))
    job_options = {k: v for k, v in options.items() if k not in trainer_keys}
    job = tfjob_spec.build_tfjob("katib-trial", args, namespace=namespace, **job_options)
    job.pop("metadata")  # Katib names the trial's TFJob after the trial
    parameters = [
        {"name": _camel(n), "description": f"trainer --{n.replace('_', '-')}", "reference": n}
        for n in space
    ]
    parameters.append(
        {"name": TRIAL_NAME, "description": "trial name", "reference": "${trialSpec.Name}"}
    )
    return {
        "primaryContainerName": "tensorflow",
        "primaryPodLabels": {"training.kubeflow.org/replica-type": "chief"},
        "successCondition": 'status.conditions.#(type=="Succeeded")#|#(status=="True")#',
        "failureCondition": 'status.conditions.#(type=="Failed")#|#(status=="True")#',
        "retain": False,
        "trialParameters": parameters,
        "trialSpec": job,
    }


def check_against_katib(experiment: dict) -> None:
    """Checks an Experiment against the ``kubeflow-katib-api`` models and the TFJob SDK models.

    Raises:
        ValueError: Naming the first field the Katib models do not know (they would drop it,
            as the CRD's pruning would on the cluster), or a TFJob field the SDK lacks.
    """
    from kubeflow_katib_api.models import V1beta1Experiment

    model = V1beta1Experiment.model_validate(experiment)
    rebuilt = model.model_dump(by_alias=True, exclude_none=True, mode="json")
    missing = _first_difference(experiment, rebuilt, "")
    if missing:
        raise ValueError(f"Experiment field {missing} is not in the Katib v1beta1 API")
    trial_spec = dict(experiment["spec"]["trialTemplate"]["trialSpec"])
    trial_spec.setdefault("metadata", {"name": "trial"})
    tfjob_spec.check_against_sdk(trial_spec)


def _first_difference(original, rebuilt, path: str) -> str | None:
    if isinstance(original, dict):
        if not isinstance(rebuilt, dict):
            return path or "."
        for key, value in original.items():
            if key not in rebuilt:
                return f"{path}.{key}"
            found = _first_difference(value, rebuilt[key], f"{path}.{key}")
            if found:
                return found
    elif isinstance(original, list):
        for i, (a, b) in enumerate(zip(original, rebuilt or [], strict=False)):
            found = _first_difference(a, b, f"{path}[{i}]")
            if found:
                return found
    return None
