"""Hyperparameter search: the space, the algorithms, the median stopping rule, the Experiment."""

import math

import pytest
import yaml

from kfp_edge.app.golden import GOLDEN_DIR, manifests
from kfp_edge.tfjob_training import katib
from kfp_edge.tfjob_training.local_search import running_means, should_stop
from kfp_edge.tfjob_training.replica_trainer import parse_args
from kfp_edge.tfjob_training.search_space import grid_values, suggest, validate_space

SPACE = {
    "learning_rate": {"type": "double", "min": 0.005, "max": 0.08, "scale": "log"},
    "width": {"type": "int", "min": 32, "max": 128, "step": 32},
    "model": {"type": "categorical", "values": ["mlp", "cnn1d"]},
}


def test_a_bad_space_names_every_problem_at_once():
    bad = {
        "learning_rate": {"type": "double", "min": 0.1, "max": 0.01},
        "dropout": {"type": "double", "min": 0, "max": 1},
        "width": {"type": "int", "min": 8, "max": 64, "step": 0},
        "model": {"type": "categorical", "values": []},
    }
    with pytest.raises(ValueError) as info:
        validate_space(bad)
    message = str(info.value)
    assert "learning_rate: min 0.1 > max 0.01" in message
    assert "dropout: not searchable" in message
    assert "width.step" in message and "model.values" in message


def test_random_suggestions_are_seeded_and_inside_the_space():
    first = suggest(SPACE, "random", 50, seed=3)
    assert first == suggest(SPACE, "random", 50, seed=3)
    assert first != suggest(SPACE, "random", 50, seed=4)
    for trial in first:
        assert 0.005 <= trial["learning_rate"] <= 0.08
        assert trial["width"] in (32, 64, 96, 128)
        assert trial["model"] in ("mlp", "cnn1d")
    logs = [math.log(t["learning_rate"]) for t in suggest(SPACE, "random", 2000, seed=1)]
    middle = (math.log(0.005) + math.log(0.08)) / 2
    share_below = sum(v < middle for v in logs) / len(logs)
    assert 0.45 < share_below < 0.55  # log-uniform: half the draws below the geometric middle


def test_grid_varies_the_last_parameter_fastest_and_is_cut_to_max_trials():
    space = {
        "width": {"type": "int", "min": 32, "max": 64, "step": 32},
        **{"model": SPACE["model"]},
    }
    grid = suggest(space, "grid", 10)
    assert grid == [
        {"width": 32, "model": "mlp"},
        {"width": 32, "model": "cnn1d"},
        {"width": 64, "model": "mlp"},
        {"width": 64, "model": "cnn1d"},
    ]
    assert len(suggest(SPACE, "grid", 5)) == 5
    assert grid_values(validate_space(SPACE)["learning_rate"], 3) == pytest.approx(
        [0.005, 0.02, 0.08]
    )
    with pytest.raises(ValueError, match="the local engine runs random, grid"):
        suggest(SPACE, "tpe", 3)


def test_median_stopping_rule_stops_only_a_trial_below_the_median():
    completed = [
        {1: 0.5, 2: 0.7, 3: 0.8, 4: 0.9},
        {1: 0.6, 2: 0.8, 3: 0.85, 4: 0.9},
        {1: 0.4, 2: 0.6, 3: 0.7, 4: 0.8},
    ]
    assert running_means(completed[0])[4] == pytest.approx(0.725)
    poor = {1: 0.3, 2: 0.4, 3: 0.5, 4: 0.55}
    good = {1: 0.5, 2: 0.6, 3: 0.75, 4: 0.8}
    assert should_stop(poor, completed, min_trials_required=3, start_step=4)
    assert not should_stop(good, completed, min_trials_required=3, start_step=4)
    assert not should_stop({1: 0.1, 2: 0.1, 3: 0.1}, completed, start_step=4)  # too early
    assert not should_stop(poor, completed[:2], min_trials_required=3)  # too few completed


def test_katib_experiment_golden_validates_against_the_katib_and_training_models():
    experiment = yaml.safe_load((GOLDEN_DIR / "manifests" / "katib_experiment.yaml").read_text())
    katib.check_against_katib(experiment)
    spec = experiment["spec"]
    assert [p["name"] for p in spec["parameters"]] == list(SPACE)
    template = spec["trialTemplate"]
    args = template["trialSpec"]["spec"]["tfReplicaSpecs"]["Chief"]["template"]["spec"][
        "containers"
    ][0]["args"]
    for parameter in template["trialParameters"]:
        assert "${trialParameters." + parameter["name"] + "}" in args
    assert template["primaryContainerName"] == "tensorflow"
    assert spec["earlyStopping"]["algorithmName"] == "medianstop"


def test_the_trial_arguments_are_the_trainers_own():
    experiment = manifests.katib_experiment()
    containers = experiment["spec"]["trialTemplate"]["trialSpec"]["spec"]["tfReplicaSpecs"][
        "Chief"
    ]["template"]["spec"]["containers"]
    values = {
        "${trialParameters.learningRate}": "0.01",
        "${trialParameters.width}": "64",
        "${trialParameters.model}": "mlp",
        "${trialParameters.trialName}": "trial-1",
    }
    args = [
        values.get(a, a).replace("${trialParameters.trialName}", "trial-1")
        for a in containers[0]["args"]
    ]
    parsed = parse_args(args)
    assert parsed.learning_rate == 0.01 and parsed.width == 64 and parsed.report_metrics


def test_an_unknown_experiment_field_is_refused():
    experiment = manifests.katib_experiment()
    experiment["spec"]["parallelTrials"] = 3  # the real field is parallelTrialCount
    with pytest.raises(ValueError, match=r"\.spec\.parallelTrials is not in the Katib v1beta1 API"):
        katib.check_against_katib(experiment)


def test_local_search_trains_trials_in_parallel_stops_a_poor_one_and_picks_the_best(
    iris_data_dir, tmp_path
):
    """Real trials: each a single-replica job of the local TFJob engine, two at a time."""
    from kfp_edge.tfjob_training.local_search import SEARCH_FILE, run_search

    space = {"learning_rate": {"type": "categorical", "values": [0.05, 0.04, 1e-5, 1e-5]}}
    summary = run_search(
        iris_data_dir,
        tmp_path / "search",
        space,
        algorithm="grid",
        max_trials=4,
        parallel_trials=2,
        epochs=40,
        min_trials_required=2,
        start_step=4,
        poll_seconds=0.1,
        stream=open(tmp_path / "trials.log", "w"),  # noqa: SIM115 - closed with the process
    )
    rows = {r["name"]: r for r in summary["trials"]}
    assert [r["assignment"]["learning_rate"] for r in summary["trials"]] == [0.05, 0.04, 1e-5, 1e-5]
    assert rows["trial-000"]["status"] == rows["trial-001"]["status"] == "succeeded"
    assert {rows["trial-002"]["status"], rows["trial-003"]["status"]} == {"early_stopped"}
    assert all(rows[n]["epochs_run"] < 40 for n in ("trial-002", "trial-003"))
    assert summary["best"] in ("trial-000", "trial-001")
    best = rows[summary["best"]]
    assert best["validation_accuracy"] >= 0.8 and best["num_params"] > 0
    assert (tmp_path / "search" / summary["best"] / "saved_model" / "saved_model.pb").exists()
    assert (tmp_path / "search" / SEARCH_FILE).exists()


@pytest.fixture
def fake_katib(tmp_path):
    """The FAKE Katib API (no cluster here); its controller runs the trials for real."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).with_name("fake_katib.py")
    spec = importlib.util.spec_from_file_location("fake_katib", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    katib, api_client, server = module.serve(tmp_path / "katib-logs")
    (tmp_path / "katib-logs").mkdir()
    yield katib, api_client
    server.shutdown()


def test_the_search_on_katib_trains_real_trials_and_takes_the_best(
    iris_data_dir, tmp_path, fake_katib
):
    from kfp_edge.tfjob_training.training_step import run_training

    katib, api_client = fake_katib
    katib.get_errors = [503, 503]  # a restarting API server: retried, not fatal
    workspace = tmp_path / "ws"
    report = run_training(
        str(workspace),
        "katib-run",
        str(iris_data_dir),
        engine="kubernetes",
        namespace="ml",
        epochs=8,
        workers=1,
        mount_path=str(workspace),
        api_client=api_client,
        search={
            "space": {"learning_rate": {"type": "categorical", "values": [0.05, 1e-5]}},
            "algorithm": "grid",
            "max_trials": 2,
            "parallel_trials": 1,
            "poll_seconds": 0.2,
        },
    )
    search = report["search"]
    assert search["engine"] == "katib" and search["best"].endswith("-000")
    assert float(search["best_assignments"]["learning_rate"]) == 0.05
    assert report["validation"]["accuracy"] >= 0.6
    assert (
        workspace / "runs" / "katib-run" / "training" / "saved_model" / "saved_model.pb"
    ).exists()
    assert katib.created == 1


def test_a_failed_katib_experiment_is_named_and_deleted(iris_data_dir, tmp_path, fake_katib):
    from kfp_edge.tfjob_training.katib_launcher import ExperimentFailed, run_experiment

    katib, api_client = fake_katib
    katib.fail_next = True
    experiment = manifests.katib_experiment()
    with pytest.raises(ExperimentFailed, match="failed: trial template is invalid"):
        run_experiment(experiment, api_client=api_client, poll_seconds=0.1, say=lambda m: None)
    assert katib.deleted == []  # a failed experiment stays for kubectl describe
