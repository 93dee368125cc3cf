"""Running and measuring a .tflite classifier with the LiteRT interpreter, without TensorFlow.

The edge device and the drift monitor use this module as it is: it needs only numpy and
``ai_edge_litert``.

Example::

    model = TFLiteModel("variants/full_int8.tflite", num_threads=1)
    probabilities = model.predict(x)          # float32 [rows, classes], raw features in
    model.latency_us(x[:1], runs=1000)        # {"p50", "p95", "p99", "mean", "runs"}
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from kfp_edge.model_versions import compress_for_shipping

# Builtin operator code of custom ops in the TFLite schema; Flex (SELECT_TF_OPS) ops are
# custom ops whose custom code starts with "Flex".
_CUSTOM_OP = 32


# The codec a release ships in: gzip at level 9. gzip rather than zstd because the pull client
# on the device needs only Python's standard library (zlib is on every device), and on models of
# a few KB to a few MB the two differ by a few per cent; the model store (de)compresses with
# these two functions, so what the gate measures is what the device downloads.
def gzip_bytes(path: str | os.PathLike) -> int:
    """Returns the size of a file (or of all files of a directory) gzip-compressed at level 9."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return len(compress_for_shipping(b"".join(p.read_bytes() for p in files)))


def size_bytes(path: str | os.PathLike) -> int:
    """Returns the size of a file, or the total size of the files of a directory."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def op_check(path: str | os.PathLike) -> dict:
    """Lists the operators of a .tflite file from its flatbuffer.

    Returns:
        ``{"ops": [names], "ops_ok": bool, "select_tf_ops": [Flex op names],
        "custom_ops": [other custom op names]}``; ``ops_ok`` is true when every op is a builtin.
    """
    from ai_edge_litert import schema_py_generated as schema

    buf = Path(path).read_bytes()
    model = schema.Model.GetRootAsModel(buf, 0)
    names_by_code = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    ops, flex, custom = [], [], []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))
        if builtin == _CUSTOM_OP:
            name = (code.CustomCode() or b"").decode()
            (flex if name.startswith("Flex") else custom).append(name)
            ops.append(name)
        else:
            ops.append(names_by_code.get(builtin, str(builtin)))
    return {
        "ops": sorted(set(ops)),
        "ops_ok": not flex and not custom,
        "select_tf_ops": sorted(set(flex)),
        "custom_ops": sorted(set(custom)),
    }


class TFLiteModel:
    """A .tflite classifier run by the LiteRT interpreter on raw float32 features.

    Models with quantized (int8/uint8) inputs get their inputs quantized with the input
    tensor's scale and zero point; quantized outputs are dequantized, so :meth:`predict`
    always takes and returns float32.

    Args:
        path: The .tflite file.
        num_threads: Interpreter threads (pinned, so latency figures are comparable).

    Raises:
        ValueError: If the file does not load or is not a model with one [batch, features]
            input and one [batch, classes] output (the message names the file).
    """

    def __init__(self, path: str | os.PathLike, num_threads: int = 1):
        self.path = str(path)
        self.num_threads = int(num_threads)
        self._interpreters: dict[int, object] = {}
        interpreter = self._interpreter(1)
        inp = interpreter.get_input_details()
        out = interpreter.get_output_details()
        if len(inp) != 1 or len(out) != 1 or len(inp[0]["shape"]) != 2 or len(out[0]["shape"]) != 2:
            raise ValueError(
                f"{self.path}: expected one input [batch, features] and one output "
                f"[batch, classes], got {[list(d['shape']) for d in inp]} -> "
                f"{[list(d['shape']) for d in out]}"
            )
        self.input_dtype = np.dtype(inp[0]["dtype"])
        self.output_dtype = np.dtype(out[0]["dtype"])
        self.input_quantization = tuple(inp[0]["quantization"])
        self.output_quantization = tuple(out[0]["quantization"])
        self.num_features = int(inp[0]["shape"][1])
        self.num_classes = int(out[0]["shape"][1])

    def _interpreter(self, batch: int):
        """Returns an interpreter whose input is resized to ``batch`` rows (one per size)."""
        if batch not in self._interpreters:
            from ai_edge_litert.interpreter import Interpreter

            try:
                interpreter = Interpreter(model_path=self.path, num_threads=self.num_threads)
                index = interpreter.get_input_details()[0]["index"]
                shape = list(interpreter.get_input_details()[0]["shape"])
                if shape[0] != batch:
                    interpreter.resize_tensor_input(index, [batch, *shape[1:]])
                interpreter.allocate_tensors()
            except (ValueError, RuntimeError) as exc:
                raise ValueError(f"{self.path}: not a loadable .tflite model: {exc}") from exc
            self._interpreters[batch] = interpreter
        return self._interpreters[batch]

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """Returns ``x`` in the model's input dtype (quantized for int8/uint8 inputs)."""
        x = np.asarray(x, dtype=np.float32)
        if self.input_dtype == np.float32:
            return x
        scale, zero_point = self.input_quantization
        info = np.iinfo(self.input_dtype)
        return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(
            self.input_dtype
        )

    def dequantize_output(self, y: np.ndarray) -> np.ndarray:
        """Returns the model's raw output as float32 (dequantized for int8/uint8 outputs)."""
        if self.output_dtype == np.float32:
            return y.astype(np.float32)
        scale, zero_point = self.output_quantization
        return ((y.astype(np.float32) - zero_point) * scale).astype(np.float32)

    def _check(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.num_features:
            raise ValueError(
                f"{self.path}: the model takes [rows, {self.num_features}] features, "
                f"got shape {list(x.shape)}"
            )
        return x

    def invoke_raw(self, x_model_dtype: np.ndarray) -> np.ndarray:
        """Runs one batch already in the model's input dtype; returns the raw output."""
        interpreter = self._interpreter(len(x_model_dtype))
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x_model_dtype)
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Returns class probabilities float32 ``[rows, classes]`` for raw features ``x``.

        Raises:
            ValueError: If ``x`` is not ``[rows, num_features]``.
        """
        x = self._check(x)
        out = []
        for start in range(0, len(x), batch_size):
            chunk = self.quantize_input(x[start : start + batch_size])
            out.append(self.dequantize_output(self.invoke_raw(chunk)))
        if not out:
            return np.zeros((0, self.num_classes), dtype=np.float32)
        return np.concatenate(out)

    def latency_us(self, x: np.ndarray, runs: int = 1000, warmup: int = 100) -> dict:
        """End-to-end single-sample latency (set_tensor, invoke, get_tensor) in microseconds.

        Returns:
            The ``latency_us`` summary of :meth:`measure_latency`.
        """
        return self.measure_latency(x, runs, warmup)["latency_us"]

    def measure_latency(self, x: np.ndarray, runs: int = 1000, warmup: int = 100) -> dict:
        """Single-sample latency of the batch-1 interpreter (see :func:`measure_side_by_side`).

        Returns:
            ``{"latency_us": end-to-end summary, "invoke_latency_us": invoke-only summary}``.
        """
        return measure_side_by_side({"model": self}, x, runs, warmup)["model"]

    def _timed_rows(self, x: np.ndarray) -> list[np.ndarray]:
        """Single rows of ``x`` in the model's input dtype (quantized before any timing)."""
        x = self._check(x)
        return [self.quantize_input(x[i : i + 1]) for i in range(min(len(x), 256))]

    def _time_calls(self, rows: list[np.ndarray], calls: int, start: int = 0) -> np.ndarray:
        """Times ``calls`` single-row calls; returns ``[calls, 4]`` clock readings in ns.

        Columns: before set_tensor, before invoke, after invoke, after get_tensor.
        """
        interpreter = self._interpreter(1)
        index_in = interpreter.get_input_details()[0]["index"]
        index_out = interpreter.get_output_details()[0]["index"]
        clocks = np.empty((calls, 4), dtype=np.int64)
        clock = time.perf_counter_ns
        for i in range(calls):
            row = rows[(start + i) % len(rows)]
            t0 = clock()
            interpreter.set_tensor(index_in, row)
            t1 = clock()
            interpreter.invoke()
            t2 = clock()
            interpreter.get_tensor(index_out)
            clocks[i] = (t0, t1, t2, clock())
        return clocks

    def throughput_rows_per_s(
        self, x: np.ndarray, batch_size: int = 256, min_seconds: float = 0.2
    ) -> float:
        """Batch throughput in rows per second (whole batches, for at least ``min_seconds``)."""
        x = self._check(x)
        reps = -(-batch_size // len(x))
        batch = self.quantize_input(np.concatenate([x] * reps)[:batch_size])
        self.invoke_raw(batch)
        rows = 0
        start = time.perf_counter()
        while True:
            self.invoke_raw(batch)
            rows += len(batch)
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                return rows / elapsed


def latency_summary(
    timings_us: np.ndarray, warmup: int, num_threads: int, blocks: int = 10
) -> dict:
    """Returns p50/p95/p99, the mean and the noise of the p50 of timings in microseconds.

    ``p50_noise`` is the larger of two estimates of how far the p50 would move on a re-run:
    the half-width of the distribution-free 95 % interval of the median (order statistics
    ``n/2 -+ 1.96 sqrt(n)/2``), which covers sampling noise, and half the range of the medians of
    ``blocks`` consecutive blocks of the runs (the rounds of :func:`measure_side_by_side`),
    which covers drift while measuring (frequency scaling, neighbours on a shared machine).
    The gate treats p50s closer than their noises as a tie.
    """
    timings_us = np.asarray(timings_us, dtype=np.float64)
    n = len(timings_us)
    p50, p95, p99 = np.percentile(timings_us, [50, 95, 99])
    ordered = np.sort(timings_us)
    half = 1.959963984540054 * np.sqrt(n) / 2
    low = ordered[max(0, int(np.floor(n / 2 - half)) - 1)]
    high = ordered[min(n - 1, int(np.ceil(n / 2 + half)))]
    medians = [np.median(b) for b in np.array_split(timings_us, max(1, min(blocks, n))) if len(b)]
    noise = max((high - low) / 2, (max(medians) - min(medians)) / 2)
    return {
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "mean": float(np.mean(timings_us)),
        "p50_noise": float(noise),
        "runs": int(n),
        "warmup": int(warmup),
        "num_threads": int(num_threads),
    }


def measure_side_by_side(
    models: dict[str, TFLiteModel],
    x: np.ndarray,
    runs: int = 1000,
    warmup: int = 100,
    rounds: int = 10,
) -> dict[str, dict]:
    """Single-sample latency of several models, measured in interleaved rounds.

    Each model gets ``warmup`` untimed calls, then ``rounds`` rounds in which every model in
    turn makes ``runs / rounds`` timed calls (the order rotates each round, so no model always
    goes first). A change of machine state while measuring (frequency scaling, a neighbour's
    job) then lands on every model alike instead of on whichever was timed at that moment:
    measured one after the other on a loaded machine, two copies of one model differed by up
    to 60 %. Each call is clocked twice: around ``invoke`` alone (the model's compute) and
    around set_tensor + invoke + get_tensor (what an application pays).

    Args:
        models: Name -> model.
        x: Rows used in turn.
        runs: Timed calls per model (at least ``rounds``).
        warmup: Untimed calls per model first.
        rounds: Interleaved rounds; their medians give :func:`latency_summary`'s drift noise.

    Returns:
        Name -> ``{"latency_us": end-to-end summary, "invoke_latency_us": invoke-only
        summary}``, each as :func:`latency_summary`.
    """
    names = list(models)
    rows = {name: models[name]._timed_rows(x) for name in names}
    for name in names:
        models[name]._time_calls(rows[name], warmup)
    rounds = max(1, min(rounds, runs))
    clocks = {name: [] for name in names}
    for r, calls in enumerate(len(c) for c in np.array_split(np.arange(runs), rounds)):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            clocks[name].append(models[name]._time_calls(rows[name], calls, start=r * calls))
    out = {}
    for name in names:
        c = np.concatenate(clocks[name])
        threads = models[name].num_threads
        out[name] = {
            "latency_us": latency_summary((c[:, 3] - c[:, 0]) / 1000.0, warmup, threads, rounds),
            "invoke_latency_us": latency_summary(
                (c[:, 2] - c[:, 1]) / 1000.0, warmup, threads, rounds
            ),
        }
    return out


def cold_start_us(path: str | os.PathLike, num_threads: int = 1, repeats: int = 5) -> float:
    """Median time (µs) from nothing to a first answer: load the file, allocate, invoke once.

    The file is in the page cache after the first repeat; a device's first boot also reads it
    from flash, which this does not count.
    """
    from ai_edge_litert.interpreter import Interpreter

    timings = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter_ns()
        interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        interpreter.allocate_tensors()
        detail = interpreter.get_input_details()[0]
        interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
        interpreter.invoke()
        interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        timings.append((time.perf_counter_ns() - t0) / 1000.0)
        del interpreter
    return float(np.median(timings))


def rss_kib(field: str) -> int:
    """Returns a memory figure of this process from /proc/self/status in KiB (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {field}")


def _measure_peak_memory(path: str, num_threads: int, batch_size: int) -> int:
    """In this process: peak RSS growth (bytes) from loading a model to its first answer.

    With ``batch_size`` 1 this is one interpreter as a device runs it (load, allocate, one
    invocation); a larger batch adds a second interpreter of that many rows.
    """
    rng = np.random.default_rng(0)
    from ai_edge_litert.interpreter import Interpreter  # noqa: F401  (load the library first)

    # Reset the peak-RSS watermark (Linux: write 5 to clear_refs), then take the baseline.
    Path("/proc/self/clear_refs").write_text("5")
    baseline = rss_kib("VmRSS")
    model = TFLiteModel(path, num_threads=num_threads)
    x = rng.normal(size=(batch_size, model.num_features)).astype(np.float32)
    model.predict(x, batch_size=batch_size)
    return max(0, rss_kib("VmHWM") - baseline) * 1024


def measure_in_fresh_process(
    function: str, path: str | os.PathLike, num_threads: int, batch_size: int, timeout: float = 600
) -> int | None:
    """Runs ``module:function(path, num_threads, batch_size)`` in a fresh Python process.

    Peak-memory figures are taken this way so that nothing else of this process counts.
    Returns None where /proc is not available (the measurement needs Linux's clear_refs).
    """
    if not Path("/proc/self/clear_refs").exists():
        return None
    module, name = function.split(":")
    code = (
        f"import json, sys; from {module} import {name} as m; "
        "print(json.dumps(m(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(path), str(num_threads), str(batch_size)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{path}: peak memory measurement failed: {result.stderr[-2000:]}")
    return int(json.loads(result.stdout.strip().splitlines()[-1]))


def peak_memory_bytes(
    path: str | os.PathLike, num_threads: int = 1, batch_size: int = 1
) -> int | None:
    """Peak memory of one interpreter as deployed (batch 1 by default): RSS growth in bytes.

    Measured in a fresh Python process, with the peak-RSS watermark reset after the imports,
    from loading the model to its first answer. Returns None where /proc is not available.
    """
    return measure_in_fresh_process(
        "kfp_edge.litert:_measure_peak_memory", path, num_threads, batch_size, 300
    )
