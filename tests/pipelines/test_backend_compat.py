"""The compiled pipelines run on the oldest KFP backend kfp-edge supports (MIN_KFP_BACKEND).

Checked against the KFP backend at tag 2.5.0 (commit d07cf1c7f9bd163091986de9bb723c4078c498b1):

- its driver reads each task's Kubernetes config with ``jsonpb.Unmarshaler{AllowUnknownFields:
  true}`` (backend/src/common/util/json.go), so a field its ``kubernetes_executor_config.proto``
  does not have is dropped *silently*. ``data/kubernetes_executor_config.2.5.0.proto`` is that
  release's proto, verbatim; every field of every compiled executor config must exist there,
  or carry the proto3 default (dropping it changes nothing: kfp-kubernetes 2.17 writes
  ``optional: false`` on every Secret env, a field that only 2.15 reads);
- sub-pipeline defaults are filled in only from 2.14: every sub-pipeline task passes every input;
- placeholders inside a struct or list constant are substituted in random order before 2.14
  (launcher_v2.go, fixed by kubeflow/pipelines#11925): none may appear there.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from kfp_edge.app.golden import GOLDEN_DIR
from kfp_edge.pipelines.edge_pipeline import MIN_KFP_BACKEND

PROTO = Path(__file__).with_name("data") / "kubernetes_executor_config.2.5.0.proto"
PIPELINES = sorted(GOLDEN_DIR.glob("*_pipeline*.yaml"))
# ml_pipelines.TaskInputsSpec.InputParameterSpec of pipeline_spec.proto at 2.5.0.
INPUT_PARAMETER_SPEC = {
    "taskOutputParameter": {"producerTask": "string", "outputParameterKey": "string"},
    "runtimeValue": {"constant": "any"},
    "componentInputParameter": "string",
    "taskFinalStatus": {"producerTask": "string"},
}
_FIELD = re.compile(
    r"^\s*(?:optional\s+|repeated\s+)?(map<[^>]+>|[\w.]+)\s+(\w+)\s*=\s*\d+", re.MULTILINE
)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def proto_messages(text: str) -> dict[str, dict[str, str]]:
    """Returns ``{message: {json field name: type}}`` of a proto file, nested messages included."""
    messages: dict[str, dict[str, str]] = {}
    stack: list[str | None] = []  # one entry per open brace: the message name, or None
    for line in re.sub(r"//[^\n]*", "", text).splitlines():
        block = re.match(r"^\s*(message|oneof|enum)\s+(\w+)\s*\{", line)
        if block:
            is_message = block.group(1) == "message"
            stack.append(block.group(2) if is_message else None)
            if is_message:
                messages[block.group(2)] = {}
            continue
        owner = next((name for name in reversed(stack) if name), None)
        field = _FIELD.match(line)
        if field and owner:
            messages[owner][_camel(field.group(2))] = field.group(1).rsplit(".", 1)[-1]
        stack.extend([None] * line.count("{"))
        del stack[len(stack) - line.count("}") :]
    return messages


def unsupported_fields(value, type_name: str, messages: dict, path: str = "") -> list[str]:
    """Returns the fields of ``value`` that ``type_name`` lacks and that carry a non-default."""
    if type_name == "InputParameterSpec":
        schema: dict = INPUT_PARAMETER_SPEC
    elif type_name in messages:
        schema = messages[type_name]
    else:
        return []  # a scalar, a map, a Struct or a constant: nothing to look into
    if isinstance(value, list):
        return [
            p
            for i, item in enumerate(value)
            for p in unsupported_fields(item, type_name, messages, f"{path}[{i}]")
        ]
    problems = []
    for key, item in (value or {}).items():
        where = f"{path}.{key}"
        if key not in schema:
            if item not in (False, 0, "", None, [], {}):
                problems.append(f"{where} = {item!r}")
            continue
        inner = schema[key]
        if isinstance(inner, dict):
            problems += [f"{where}.{k}" for k in (item or {}) if k not in inner]
        else:
            problems += unsupported_fields(item, inner, messages, where)
    return problems


def _docs(path: Path) -> tuple[dict, dict]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    platform = docs[1] if len(docs) > 1 else {}
    return docs[0], platform


def _executor_configs(platform: dict) -> dict:
    return platform.get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {})


def _dags(spec: dict):
    yield "root", spec["root"]
    for name, component in spec["components"].items():
        if "dag" in component:
            yield name, component


def _constants(value, path=""):
    if isinstance(value, dict):
        if "runtimeValue" in value:
            yield path, value["runtimeValue"].get("constant")
        for key, item in value.items():
            yield from _constants(item, f"{path}.{key}")


@pytest.fixture(scope="module")
def messages():
    return proto_messages(PROTO.read_text())


def test_the_proto_parser_reads_the_release(messages):
    assert "optional" not in messages["SecretAsEnv"]  # added in 2.15
    assert messages["PvcMount"]["pvcNameParameter"] == "InputParameterSpec"
    assert messages["SecretKeyToEnvMap"] == {"secretKey": "string", "envVar": "string"}
    assert messages["KubernetesExecutorConfig"]["nodeAffinity"] == "NodeAffinityTerm"


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.name)
def test_executor_configs_use_only_what_the_minimum_backend_reads(path, messages):
    _, platform = _docs(path)
    configs = _executor_configs(platform)["executors"]
    assert configs
    problems = [
        p
        for name, config in configs.items()
        for p in unsupported_fields(config, "KubernetesExecutorConfig", messages, name)
    ]
    assert problems == [], f"fields the KFP {MIN_KFP_BACKEND} driver drops: {problems}"


def test_a_field_the_minimum_backend_drops_is_caught(messages):
    optional_secret = {
        "secretAsEnv": [{"keyToEnv": [], "optional": True, "secretName": "s"}],
        "pvcMount": [{"mountPath": "/w", "pvcNameParameter": {"runtimeValue": {"x": 1}}}],
        "securityContext": {"runAsUser": 1},
    }
    problems = unsupported_fields(optional_secret, "KubernetesExecutorConfig", messages)
    assert problems == [
        ".secretAsEnv[0].optional = True",
        ".pvcMount[0].pvcNameParameter.runtimeValue.x",
        ".securityContext = {'runAsUser': 1}",
    ]


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.name)
def test_every_sub_pipeline_task_passes_every_input(path):
    spec, _ = _docs(path)
    for dag_name, dag in _dags(spec):
        for task_name, task in dag["dag"]["tasks"].items():
            component = spec["components"][task["componentRef"]["name"]]
            if "dag" not in component:
                continue
            declared = set(component.get("inputDefinitions", {}).get("parameters", {}))
            passed = set(task.get("inputs", {}).get("parameters", {}))
            assert declared <= passed, (dag_name, task_name, sorted(declared - passed))
            assert task.get("cachingOptions", {}).get("enableCache") is not True


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.name)
def test_no_placeholder_inside_a_struct_or_list_constant(path):
    spec, _ = _docs(path)
    for _, dag in _dags(spec):
        for where, constant in _constants(dag["dag"]["tasks"]):
            if isinstance(constant, (dict, list)):
                assert "{{$" not in yaml.safe_dump(constant), where


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.name)
def test_the_pipeline_states_its_minimum_backend(path):
    spec, _ = _docs(path)
    assert f"backend {MIN_KFP_BACKEND} or later" in spec["pipelineInfo"]["description"]
