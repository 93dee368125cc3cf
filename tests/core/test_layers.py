"""The layers: core <- stages <- pipelines <- application, each importing only those below it.

- core: the top-level modules of ``components/`` (``kfp_edge.<module>``);
- stages: ``components/<stage>/`` (``kfp_edge.<stage>``), importing the core and themselves only;
- pipelines: ``pipelines/`` (``kfp_edge.pipelines``), importing the core and the stages'
  ``component`` and ``config`` modules;
- application: ``app/`` (``kfp_edge.app``), which may import anything; nothing imports it.

Every ``import`` and ``from ... import`` statement is read with ``ast``, including those inside
function bodies (the lazy imports are imports all the same). The package's ``__init__`` maps
public names to modules as strings for PEP 562 and imports none of them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPONENTS = ROOT / "components"
STAGES = sorted(
    p.name for p in COMPONENTS.iterdir() if (p / "__init__.py").exists() and p.name != "profiles"
)
CORE = sorted(p.stem for p in COMPONENTS.glob("*.py") if p.stem != "__init__")


def module_of(path: Path) -> str:
    """Returns the dotted module name of a source file of the package."""
    rel = path.relative_to(ROOT)
    top, *rest = rel.with_suffix("").parts
    package = {"components": "kfp_edge", "pipelines": "kfp_edge.pipelines", "app": "kfp_edge.app"}
    parts = [package[top], *rest]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> tuple[str, str | None]:
    """Returns (layer, stage) of a ``kfp_edge`` module name."""
    parts = module.split(".")
    if len(parts) == 1:
        return "core", None
    head = parts[1]
    if head == "app":
        return "app", None
    if head == "pipelines":
        return "pipelines", None
    if head in STAGES:
        return "stage", head
    return "core", None


def imports_of(path: Path) -> list[tuple[int, str]]:
    """Returns (line, imported kfp_edge module or name) for every import statement of a file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("kfp_edge")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("kfp_edge"):
                # `from kfp_edge import s3` imports the module kfp_edge.s3.
                if node.module == "kfp_edge":
                    found += [(node.lineno, f"kfp_edge.{a.name}") for a in node.names]
                else:
                    found += [(node.lineno, node.module)]
    return found


def allowed(importer: str, imported: str) -> bool:
    """Whether a module of one layer may import another module."""
    if imported in ("kfp_edge", "kfp_edge.__version__"):
        return True
    src_layer, src_stage = layer_of(importer)
    dst_layer, dst_stage = layer_of(imported)
    if dst_layer == "app":
        return src_layer == "app"
    if src_layer == "core":
        return dst_layer == "core"
    if src_layer == "stage":
        return dst_layer == "core" or dst_stage == src_stage
    if src_layer == "pipelines":
        if dst_layer == "stage":
            return imported.split(".")[2:3] in (["component"], ["config"])
        return dst_layer in ("core", "pipelines")
    return True


def violations(files) -> list[str]:
    """Returns one line ``file:line: importer imports imported`` per import against the layers."""
    found = []
    for path in files:
        importer = module_of(path)
        for line, imported in imports_of(path):
            if not allowed(importer, imported):
                rel = path.relative_to(ROOT)
                found.append(
                    f"{rel}:{line}: {importer} ({layer_of(importer)[0]}) imports {imported}"
                )
    return found


def source_files() -> list[Path]:
    return sorted(
        p
        for top in ("components", "pipelines", "app")
        for p in (ROOT / top).rglob("*.py")
        if "__pycache__" not in p.parts
    )


def test_every_import_follows_the_layers():
    problems = violations(source_files())
    assert not problems, "imports against the layers:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("where", "statement", "why"),
    [
        ("components/spark_etl/probe.py", "from kfp_edge.model_store import store", "sideways"),
        ("components/evaluation/probe.py", "import kfp_edge.compression.export", "sideways"),
        ("components/probe.py", "from kfp_edge.gate.gate import decide", "core reaching up"),
        ("components/gate/probe.py", "from kfp_edge.pipelines import compile", "stage up"),
        ("pipelines/probe.py", "from kfp_edge.app.run_local import run_local", "into the app"),
        ("pipelines/probe.py", "from kfp_edge.gate.gate import decide", "a stage's logic"),
    ],
)
def test_a_deliberate_wrong_import_is_named_with_file_and_line(tmp_path, where, statement, why):
    probe = ROOT / where
    fake = tmp_path / "probe.py"
    fake.write_text(f"def f():\n    {statement}\n")
    # Judge the probe as if it stood at `where`, without writing into the source tree.
    importer = module_of(probe)
    ((line, imported),) = imports_of(fake)
    assert line == 2
    assert not allowed(importer, imported), why


def test_allowed_imports_are_not_flagged():
    assert allowed("kfp_edge.spark_etl.etl", "kfp_edge.s3")
    assert allowed("kfp_edge.gate.component", "kfp_edge.gate.gate")
    assert allowed("kfp_edge.pipelines.edge_pipeline", "kfp_edge.gate.component")
    assert allowed("kfp_edge.app.cli", "kfp_edge.model_store.cli")
    assert STAGES and "model_store" in STAGES and "s3" in CORE
