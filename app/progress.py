"""Quiet, live progress of a local pipeline run; kfp.local's full logs go to ``<run>/logs/``.

kfp.local prints everything (its own log records, each step's streamed output, warnings) to
``sys.stdout``/``sys.stderr`` of this process. :class:`RunMonitor` stands in for both while the
pipeline runs: it writes every line to ``<run>/logs/pipeline.log`` and to one file per step,
and turns the few lines that matter (a step started or finished, a Keras epoch, a
:mod:`kfp_edge.progress` line) into one line per step and a progress bar for the long ones.

The display is `rich <https://rich.readthedocs.io>`_: in a terminal a live bar per step; without
a terminal (CI, a pipe, Jupyter) plain lines without control codes. rich rather than tqdm
because rich knows when it is not writing to a terminal and then prints no carriage-return
bars or colour codes, it draws several tasks with their own fields (loss, accuracy) in one live
view, and it is already installed with Keras.
"""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

from kfp_edge.progress import parse_progress

LOGS_DIR = "logs"
PIPELINE_LOG = "pipeline.log"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STARTED = re.compile(r"Executing task '([\w-]+)'")
_FINISHED = re.compile(r"Task '([\w-]+)' finished with status (\w+)")
_EPOCH = re.compile(r"^\s*Epoch (\d+)/(\d+)\s*$")
_EPOCH_DONE = re.compile(r"loss: ([\d.eE+-]+) - accuracy: ([\d.eE+-]+)")


def strip_ansi(text: str) -> str:
    """Returns ``text`` without ANSI colour codes (kfp.local colours its messages)."""
    return _ANSI.sub("", text)


class ProgressView:
    """Draws step events: a line per finished step and a bar for steps that report progress.

    Args:
        stream: Where to draw (the real stdout of the process).
        live: A live terminal display; None picks it when ``stream`` is a terminal.
    """

    def __init__(self, stream, live: bool | None = None):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        # In a notebook: plain lines on the cell's stream, neither HTML displays nor a live bar
        # (ipykernel's stream claims to be a terminal; its cell output keeps every redraw).
        jupyter = Console(file=io.StringIO()).is_jupyter
        self.console = Console(
            file=stream,
            highlight=False,
            soft_wrap=True,
            force_jupyter=False,
            force_terminal=False if jupyter else None,
        )
        self.live = self.console.is_terminal if live is None else live
        self._progress = Progress(
            TextColumn("  {task.description:<18}"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=self.console,
            disable=not self.live,
            transient=True,
        )
        self._tasks: dict[str, int] = {}
        self._printed: dict[str, int] = {}

    def __enter__(self):
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()

    def started(self, step: str) -> None:
        """A step started."""
        self._tasks[step] = self._progress.add_task(step, total=None, detail="")

    def advanced(self, step: str, done: int, total: int, detail: str) -> None:
        """A step reported ``done`` of ``total`` items; ``detail`` says which or how well."""
        if step not in self._tasks:
            self.started(step)
        self._progress.update(self._tasks[step], completed=done, total=total, detail=detail)
        # Without a live display: a plain line at each quarter, so CI logs show training move.
        quarter = max(1, -(-total // 4))
        if not self.live and done and (done % quarter == 0 or done == total):
            if self._printed.get(step) != done:
                self._printed[step] = done
                self.console.print(f"  {step:<18} {done}/{total} {detail}".rstrip(), markup=False)

    def finished(self, step: str, ok: bool, seconds: float) -> None:
        """A step ended; prints its one line with status and duration."""
        task = self._tasks.pop(step, None)
        if task is not None:
            self._progress.remove_task(task)
        mark = "[green]✓[/green]" if ok else "[red]✗[/red]"
        self.console.print(f"{mark} {step:<18} {seconds:6.1f} s{'' if ok else '  FAILED'}")


class RunMonitor(io.TextIOBase):
    """A text stream for kfp.local's output: logs every line, shows progress of each step.

    Args:
        logs_dir: Directory of the log files (``<run>/logs``); created.
        names: kfp task names (``sparketlop``) -> the names shown (``etl``).
        view: A :class:`ProgressView`, or None to only log.
        echo: A stream that also gets every line unchanged (``--verbose``), or None.
    """

    def __init__(self, logs_dir: Path, names: dict[str, str], view=None, echo=None):
        super().__init__()
        self.logs_dir = Path(logs_dir)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self._names, self._view, self._echo = names, view, echo
        self._log = open(self.logs_dir / PIPELINE_LOG, "a", encoding="utf-8")  # noqa: SIM115
        self._step_log = None
        self._step: str | None = None
        self._started_at = 0.0
        self._epoch: tuple[int, int] | None = None
        self._buffer = ""
        self.failed_step: str | None = None

    def writable(self) -> bool:  # noqa: D102
        return True

    def write(self, text: str) -> int:  # noqa: D102
        if self._echo is not None:
            self._echo.write(text)
        self._buffer += text
        *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            self._line(line)
        return len(text)

    def flush(self) -> None:  # noqa: D102
        if self._echo is not None:
            self._echo.flush()
        if not self._log.closed:
            self._log.flush()

    def close(self) -> None:  # noqa: D102
        if self._buffer:
            self._line(self._buffer)
            self._buffer = ""
        self._end_step_log()
        super().close()  # flushes first
        self._log.close()

    def step_log(self, step: str) -> Path:
        """Returns the log file of one step (by its shown name)."""
        return self.logs_dir / f"{step}.log"

    def _line(self, raw: str) -> None:
        line = strip_ansi(raw)
        self._log.write(line + "\n")
        if self._step_log is not None:
            self._step_log.write(line + "\n")
        if m := _STARTED.search(line):
            self._start(self._names.get(m.group(1), m.group(1)))
        elif m := _FINISHED.search(line):
            self._finish(self._names.get(m.group(1), m.group(1)), m.group(2) == "SUCCESS")
        elif self._step and self._view:
            self._progress(line)

    def _progress(self, line: str) -> None:
        if event := parse_progress(line):
            self._view.advanced(self._step, event["done"], event["total"], event["label"])
        elif m := _EPOCH.match(line):
            self._epoch = (int(m.group(1)), int(m.group(2)))
            self._view.advanced(self._step, self._epoch[0] - 1, self._epoch[1], "epochs")
        elif self._epoch and (m := _EPOCH_DONE.search(line)):
            detail = f"loss {float(m.group(1)):.4f} accuracy {float(m.group(2)):.4f}"
            self._view.advanced(self._step, *self._epoch, detail)

    def _start(self, step: str) -> None:
        self._end_step_log()
        self._step, self._started_at, self._epoch = step, time.monotonic(), None
        self._step_log = open(self.step_log(step), "a", encoding="utf-8")  # noqa: SIM115
        if self._view:
            self._view.started(step)

    def _finish(self, step: str, ok: bool) -> None:
        if not ok:
            self.failed_step = step
        if self._view:
            self._view.finished(step, ok, time.monotonic() - self._started_at)
        self._step = None

    def _end_step_log(self) -> None:
        if self._step_log is not None:
            self._step_log.close()
            self._step_log = None


_EXCEPTION = re.compile(r"^\s*([\w.]+(Error|Exception|Exit)\b.*)$")


def failure_line(path: Path) -> str | None:
    """Returns the last exception line (``SomeError: why``) of a step's log, or None."""
    if not path.is_file():
        return None
    found = None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if m := _EXCEPTION.match(line):
            found = m.group(1).strip()
    return found


def log_tail(path: Path, lines: int = 10) -> str:
    """Returns the last ``lines`` non-empty lines of a log file, indented."""
    if not path.is_file():
        return ""
    text = [t for t in path.read_text(encoding="utf-8", errors="replace").splitlines() if t.strip()]
    return "\n".join("    " + t.strip() for t in text[-lines:])
