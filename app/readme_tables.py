"""Component README tables generated from the components' signatures and docstrings.

A README marks where a component's table goes::

    <!-- generated: GateOp (make golden) -->
    ...the table, rewritten by `make golden`...
    <!-- end generated -->

Each table lists every input (name, type, default, the docstring's line) and every output.
The golden tests check that each marked README is current, so a README cannot drift from the
component it documents.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

BLOCK = re.compile(
    r"(<!-- generated: (?P<op>\w+) \(make golden\) -->\n)(?P<body>.*?)(<!-- end generated -->)",
    re.S,
)


def _sections(doc: str) -> dict[str, dict[str, str]]:
    """Returns {"Args": {name: text}, "Returns": {name: text}} of a Google-style docstring."""
    found: dict[str, dict[str, str]] = {}
    section = None
    current = None
    for line in doc.splitlines():
        header = re.fullmatch(r"(Args|Returns):", line.strip())
        if header and not line.startswith(" "):
            section = found.setdefault(header.group(1), {})
            current = None
            continue
        if section is None:
            continue
        item = re.fullmatch(r"    (\w+): (.*)", line)
        if item:
            current = item.group(1)
            section[current] = item.group(2).strip()
        elif line.startswith("        ") and current:
            section[current] += " " + line.strip()
        elif line.strip() and not line.startswith(" "):
            section = None
    return found


def component_table(op_name: str, module: str) -> str:
    """Returns the Markdown table of one component's inputs and outputs.

    Types and defaults come from the component spec kfp compiles (what the KFP UI shows);
    meanings come from the function's Google-style docstring.
    """
    component = getattr(importlib.import_module(module), op_name)
    spec = component.component_spec
    docs = _sections(inspect.getdoc(component.python_func) or "")
    meaning = {**docs.get("Args", {}), **docs.get("Returns", {})}
    rows = ["| input | type | default | meaning |", "| --- | --- | --- | --- |"]
    for name, item in (spec.inputs or {}).items():
        default = "" if item.default is None and not item.optional else f"`{item.default!r}`"
        rows.append(f"| `{name}` | {_type(item.type)} | {default} | {meaning.get(name, '')} |")
    outputs = ["| output | type | meaning |", "| --- | --- | --- |"]
    for name, item in (spec.outputs or {}).items():
        if name == "Output":  # the function's single return value
            name, text = (
                "Output",
                meaning.get("Output", "") or next(iter(docs.get("Returns", {}).values()), ""),
            )
        else:
            text = meaning.get(name, "")
        outputs.append(f"| `{name}` | {_type(item.type)} | {text} |")
    return "\n".join(rows) + "\n\n" + "\n".join(outputs) + "\n"


def _type(kfp_type: str) -> str:
    """Returns a readable kfp type: ``system.Metrics@0.0.1`` -> ``Metrics``."""
    return kfp_type.split("@")[0].removeprefix("system.").replace("NUMBER_", "")


def render_readme(path: Path, components: dict[str, str]) -> str:
    """Returns a README's text with every generated block rewritten.

    Args:
        path: The README.
        components: Component name -> module that defines it.

    Raises:
        KeyError: If a block names an unknown component.
    """

    def replace(match: re.Match) -> str:
        table = component_table(match.group("op"), components[match.group("op")])
        return match.group(1) + table + match.group(4)

    return BLOCK.sub(replace, path.read_text())


def marked_readmes(root: Path) -> list[Path]:
    """Returns the component READMEs that carry at least one generated block."""
    return sorted(
        p for p in (root / "components").glob("*/README.md") if BLOCK.search(p.read_text())
    )
