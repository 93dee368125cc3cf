"""Browser-ready copies of .tflite models for LiteRT.js (``@litertjs/core``), and the check.

LiteRT.js cannot resize inputs and has no INT8 tensor type: it runs a model only when every
tensor shape is static and the inputs and outputs are float32, int32 or uint8. The models this
project exports have a dynamic batch (``shape_signature`` ``[-1, F]``), which the Python
evaluation needs. :func:`make_browser_ready` writes a copy whose batch is pinned to 1 in the
flatbuffer's tensor shapes, byte for byte the same otherwise (weights unchanged);
:func:`browser_check` says whether a model (or its pinned copy) runs in the browser, and why not.

Only numpy and ``ai_edge_litert``'s flatbuffer schema are needed, so every stage can use it.

Example::

    browser_check("variants/float32.tflite")["browser_ready"]      # True
    make_browser_ready("variants/float32.tflite", "float32.browser.tflite")
"""

from __future__ import annotations

import os
from pathlib import Path

from kfp_edge.litert import op_check

# The file of the browser-ready copy in a published model version, next to model.tflite.
BROWSER_MODEL_FILE = "model.browser.tflite"
# The tensor types LiteRT.js 2.5 has (its DATATYPES table): anything else cannot be an input
# or output of a browser model.
BROWSER_DTYPES = ("FLOAT32", "INT32", "UINT8")
_TFLITE_IDENTIFIER = b"TFL3"


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def _load(buf: bytes | bytearray, where: str):
    """Returns the flatbuffer Model of a .tflite buffer, or raises naming the file."""
    schema = _schema()
    if len(buf) < 8 or buf[4:8] != _TFLITE_IDENTIFIER:
        raise ValueError(f"{where}: not a .tflite flatbuffer (no TFL3 identifier)")
    return schema.Model.GetRootAsModel(buf, 0)


def _tensors(model):
    """Yields ``(subgraph_index, tensor)`` for every tensor of every subgraph."""
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        for t in range(graph.TensorsLength()):
            yield s, graph.Tensors(t)


def _dynamic_dims(tensor) -> list[int]:
    """Returns the dimensions of a tensor that its shape signature marks dynamic (-1)."""
    if tensor.ShapeSignatureIsNone():
        return []
    return [i for i, d in enumerate(tensor.ShapeSignatureAsNumpy().tolist()) if d < 0]


def _type_names() -> dict[int, str]:
    return {v: k for k, v in vars(_schema().TensorType).items() if not k.startswith("_")}


def _io_dtypes(model) -> tuple[list[str], list[str]]:
    """Returns the type names of the main subgraph's inputs and outputs."""
    names = _type_names()
    graph = model.Subgraphs(0)
    inputs = [names[graph.Tensors(int(i)).Type()] for i in graph.InputsAsNumpy()]
    outputs = [names[graph.Tensors(int(i)).Type()] for i in graph.OutputsAsNumpy()]
    return inputs, outputs


def browser_check(path: str | os.PathLike) -> dict:
    """Says whether a model runs in LiteRT.js once its batch is pinned, and why not.

    A dynamic batch (dimension 0) does not count against the model, since
    :func:`make_browser_ready` pins it; any other dynamic dimension does, as do inputs or
    outputs of a type LiteRT.js lacks (int8, float16, int64, ...) and non-builtin ops.

    Args:
        path: A .tflite file.

    Returns:
        ``{"browser_ready": bool, "reasons": [why not], "static_shapes": bool (already
        static, no pinning needed), "input_dtypes": [...], "output_dtypes": [...]}``; type
        names are the TFLite schema's (``FLOAT32``, ``INT8``, ...).

    Raises:
        ValueError: If the file is not a .tflite flatbuffer (the message names it).
    """
    buf = Path(path).read_bytes()
    model = _load(buf, str(path))
    reasons, static = [], True
    for s, tensor in _tensors(model):
        dims = _dynamic_dims(tensor)
        static = static and not dims
        other = [d for d in dims if d != 0]
        if other:
            name = (tensor.Name() or b"?").decode(errors="replace")
            reasons.append(f"tensor {name!r} (subgraph {s}) has dynamic dimensions {other}")
    inputs, outputs = _io_dtypes(model)
    for kind, dtypes in (("input", inputs), ("output", outputs)):
        for i, dtype in enumerate(dtypes):
            if dtype not in BROWSER_DTYPES:
                reasons.append(
                    f"{kind} {i} is {dtype}; LiteRT.js takes only {', '.join(BROWSER_DTYPES)}"
                )
    ops = op_check(path)
    if not ops["ops_ok"]:
        needs = ops["select_tf_ops"] + ops["custom_ops"]
        reasons.append(f"not builtin-only: needs {', '.join(needs)}")
    return {
        "browser_ready": not reasons,
        "reasons": reasons,
        "static_shapes": static,
        "input_dtypes": inputs,
        "output_dtypes": outputs,
    }


def make_browser_ready(src: str | os.PathLike, dst: str | os.PathLike) -> dict:
    """Writes a copy of a .tflite model with its batch dimension pinned to 1.

    Every tensor whose shape signature has a dynamic batch gets 1 there (in ``shape`` and
    ``shape_signature``, patched in place); no other byte changes, so weights, quantization
    parameters and ops are those of ``src``. The copy is written through a temporary file and
    a rename; ``dst`` is never left half-written.

    Args:
        src: The .tflite model (dynamic batch or already static).
        dst: Where to write the copy (may not be ``src``).

    Returns:
        ``{"path", "pinned_tensors", **browser_check(dst)}``.

    Raises:
        ValueError: If ``src`` is not a .tflite model or is not browser-ready (the reasons of
            :func:`browser_check`, naming the file); nothing is written then.
    """
    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise ValueError(f"{dst}: the browser copy may not overwrite its source")
    check = browser_check(src)
    if not check["browser_ready"]:
        raise ValueError(f"{src}: cannot run in LiteRT.js: {'; '.join(check['reasons'])}")
    buf = bytearray(src.read_bytes())
    model = _load(buf, str(src))
    pinned = 0
    for _, tensor in _tensors(model):
        if 0 in _dynamic_dims(tensor):
            # numpy views into ``buf`` (flatbuffers' GetVectorAsNumpy): writes patch the file.
            tensor.ShapeSignatureAsNumpy()[0] = 1
            if not tensor.ShapeIsNone():
                tensor.ShapeAsNumpy()[0] = 1
            pinned += 1
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp")
    tmp.write_bytes(bytes(buf))
    os.replace(tmp, dst)
    return {"path": str(dst), "pinned_tensors": pinned, **browser_check(dst)}


def release_copy(src: str | os.PathLike, out_dir: str | os.PathLike) -> dict:
    """Makes the browser-ready copy of a model for a release, when LiteRT.js can run it.

    Args:
        src: The release's model (``model.tflite``).
        out_dir: Where ``model.browser.tflite`` is written.

    Returns:
        The manifest section ``{"file": "model.browser.tflite" or None, "browser_ready",
        "reasons", "input_dtypes", "output_dtypes"}``, plus ``"path"`` (the copy) when made.
    """
    try:
        check = browser_check(src)
    except ValueError as exc:  # not a flatbuffer LiteRT.js could parse either
        check = {"browser_ready": False, "reasons": [str(exc)], "input_dtypes": []}
        check["output_dtypes"] = []
    section = {"file": None, **{k: v for k, v in check.items() if k != "static_shapes"}}
    if check["browser_ready"]:
        made = make_browser_ready(src, Path(out_dir) / BROWSER_MODEL_FILE)
        section.update(file=BROWSER_MODEL_FILE, path=made["path"])
    return section
