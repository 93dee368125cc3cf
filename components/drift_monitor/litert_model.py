"""Running a published .tflite model with the LiteRT interpreter, without TensorFlow."""

from __future__ import annotations

import os

import numpy as np


class LiteRTClassifier:
    """A .tflite classifier run by ``ai_edge_litert``, on batches of raw float features.

    Quantized inputs and outputs (full-integer int8 variants) are converted with the tensors'
    own scale and zero point, so every variant the pipeline publishes is accepted.

    Args:
        path: The .tflite file.
        batch_size: Rows per interpreter call (the input is resized to it once).

    Raises:
        ValueError: If the file is not a model with one 2-D input and one 2-D output.
    """

    def __init__(self, path: str | os.PathLike, batch_size: int = 256):
        from ai_edge_litert.interpreter import Interpreter

        self.path = str(path)
        try:
            self.interpreter = Interpreter(model_path=self.path, num_threads=1)
        except (ValueError, RuntimeError) as exc:
            raise ValueError(f"{self.path}: not a loadable .tflite model: {exc}") from exc
        inputs = self.interpreter.get_input_details()
        outputs = self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1 or len(inputs[0]["shape"]) != 2:
            raise ValueError(
                f"{self.path}: expected one input [batch, features] and one output, got "
                f"{[list(d['shape']) for d in inputs]} -> {[list(d['shape']) for d in outputs]}"
            )
        self.num_features = int(inputs[0]["shape"][1])
        self.batch_size = int(batch_size)
        self.interpreter.resize_tensor_input(
            inputs[0]["index"], [self.batch_size, self.num_features]
        )
        self.interpreter.allocate_tensors()
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]

    def _quantize(self, x: np.ndarray) -> np.ndarray:
        dtype = self._input["dtype"]
        if dtype == np.float32:
            return x.astype(np.float32)
        scale, zero_point = self._input["quantization"]
        info = np.iinfo(dtype)
        q = np.round(x / scale + zero_point)
        return np.clip(q, info.min, info.max).astype(dtype)

    def _dequantize(self, y: np.ndarray) -> np.ndarray:
        if self._output["dtype"] == np.float32:
            return y
        scale, zero_point = self._output["quantization"]
        return (y.astype(np.float32) - zero_point) * scale

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Returns the model's output for raw features ``x`` of shape ``[rows, features]``.

        Raises:
            ValueError: If ``x`` does not have the model's number of features.
        """
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.num_features:
            raise ValueError(
                f"{self.path}: the model takes {self.num_features} features, got shape {x.shape}"
            )
        out = []
        for start in range(0, len(x), self.batch_size):
            chunk = x[start : start + self.batch_size]
            padded = np.zeros((self.batch_size, self.num_features), dtype=np.float32)
            padded[: len(chunk)] = chunk
            self.interpreter.set_tensor(self._input["index"], self._quantize(padded))
            self.interpreter.invoke()
            y = self.interpreter.get_tensor(self._output["index"])
            out.append(self._dequantize(y)[: len(chunk)])
        if not out:
            return np.zeros((0, int(self._output["shape"][-1])), dtype=np.float32)
        return np.concatenate(out, axis=0)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Returns the predicted class id of every row of ``x``."""
        return self.predict_proba(x).argmax(axis=1)
