"""TFLite conversions as plugins: float32, float16, dynamic-range int8 and full-integer int8.

Each conversion is a class in :data:`CONVERSIONS` (the shape of tfx's ``rewriter_factory`` and
``TFLiteRewriter``): :meth:`Conversion.check` validates its inputs before converting,
:meth:`Conversion.convert` returns the flatbuffer, and :meth:`Conversion.validate` checks the
result with the LiteRT interpreter after converting: it loads, runs builtin ops only and
answers for the model's inputs (float conversions also agree with Keras).
"""

from __future__ import annotations

import os
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

CONVERSIONS: dict[str, Conversion] = {}


def register(cls):
    """Class decorator: adds one instance of a conversion to :data:`CONVERSIONS`."""
    CONVERSIONS[cls.name] = cls()
    return cls


def _all_layers(model):
    """Every layer of a model, those of nested models and those inside tfmot's wrappers."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layer"):  # a tfmot wrapper (QuantizeWrapperV2, ...)
            yield layer.layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def has_conv_layers(model) -> bool:
    """Whether a tf_keras model has convolution layers (they get per-channel int8 scales)."""
    return any(type(layer).__name__ in ("Conv1D", "Conv2D") for layer in _all_layers(model))


_WRAPPERS = ("QuantizeWrapper", "QuantizeWrapperV2")


def trained_ranges_only(model) -> bool:
    """Whether every weight layer of a model is wrapped in tfmot's fake quantizers (QAT).

    Such a model brings all its int8 ranges from training. A QAT model with weight layers
    tfmot has no 8-bit config for (Conv1D trains in float) still needs calibration for them.
    """
    wrapped = plain = 0
    for layer in model.layers:
        kind = type(layer).__name__
        if kind in _WRAPPERS:
            wrapped += 1
        elif kind in ("Dense", "Conv1D", "Conv2D"):
            plain += 1
        elif hasattr(layer, "layers") and not trained_ranges_only(layer):
            plain += 1
        elif hasattr(layer, "layers"):
            wrapped += 1
    return wrapped > 0 and plain == 0


def _normalization_layer_name(model) -> str | None:
    for layer in model.layers:
        if type(layer).__name__ == "Normalization":
            return layer.name
    return None


def _op_outputs_under(tflite: bytes, scope: str) -> list[str]:
    """Names of the op output tensors of a .tflite model whose name contains ``scope``."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(tflite, 0)
    names = []
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for o in range(graph.OperatorsLength()):
            op = graph.Operators(o)
            for k in range(op.OutputsLength()):
                name = graph.Tensors(op.Outputs(k)).Name().decode()
                if scope in name:
                    names.append(name)
    return names


def _write_temp(content: bytes) -> str:
    fd, path = tempfile.mkstemp(suffix=".tflite")
    with os.fdopen(fd, "wb") as f:
        f.write(content)
    return path


class Conversion(ABC):
    """One TFLite conversion. Subclasses set ``name`` and implement :meth:`convert`.

    ``tolerance`` is the largest difference from the Keras model's probabilities that
    :meth:`validate` accepts (None: not compared, for quantized conversions whose error is the
    evaluation's business).
    """

    name = ""
    tolerance: float | None = None

    def check(self, model, options: dict) -> None:
        """Pre-validation: raises ValueError (naming the model) if it cannot be converted."""
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise ValueError(f"model {model.name!r}: {self.name} needs one input and one output")

    @abstractmethod
    def convert(self, model, options: dict) -> bytes:
        """Returns the .tflite bytes of ``model``."""

    def validate(self, content: bytes, model, probe: np.ndarray) -> None:
        """Post-validation with LiteRT: loads, builtin ops only, answers like the model.

        Raises:
            ValueError: Naming the conversion and what is wrong.
        """
        from kfp_edge.litert import TFLiteModel, op_check

        path = _write_temp(content)
        try:
            ops = op_check(path)
            if not ops["ops_ok"]:
                raise ValueError(
                    f"{self.name}: the converted model needs non-builtin ops "
                    f"{ops['select_tf_ops'] + ops['custom_ops']}"
                )
            answers = TFLiteModel(path).predict(probe)
        finally:
            Path(path).unlink(missing_ok=True)
        if not np.all(np.isfinite(answers)):
            raise ValueError(f"{self.name}: the converted model answers NaN or infinity")
        if self.tolerance is not None:
            expected = model.predict(probe, verbose=0)
            worst = float(np.max(np.abs(answers - expected)))
            if worst > self.tolerance:
                raise ValueError(
                    f"{self.name}: the converted model differs from Keras by {worst:.2e} "
                    f"(> {self.tolerance:.0e})"
                )

    def _converter(self, model):
        from kfp_edge.tf_env import import_tf

        tf, _ = import_tf()
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        return tf, converter


@register
class Float32(Conversion):
    """No quantization: the float model as the interpreter runs it."""

    name = "float32"
    tolerance = 1e-4

    def convert(self, model, options: dict) -> bytes:
        """Returns the .tflite bytes (see the class docstring)."""
        _, converter = self._converter(model)
        return converter.convert()


@register
class Float16(Conversion):
    """Weights stored as float16 (half the bytes), computed in float32."""

    name = "float16"
    tolerance = 1e-2

    def convert(self, model, options: dict) -> bytes:
        """Returns the .tflite bytes (see the class docstring)."""
        tf, converter = self._converter(model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
        return converter.convert()


@register
class DynamicInt8(Conversion):
    """Dynamic-range quantization: int8 weights, activations quantized on the fly."""

    name = "dynamic_int8"

    def convert(self, model, options: dict) -> bytes:
        """Returns the .tflite bytes (see the class docstring)."""
        tf, converter = self._converter(model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        return converter.convert()


@register
class FullInt8(Conversion):
    """Full-integer int8 with calibration on a random sample of the training rows.

    The model's input standardization (the folded-in Normalization layer, a SUB and a MUL per
    feature) stays in float unless ``int8_io`` is asked: one int8 scale for the whole raw input
    tensor would erase features of small range next to features of large range (vibration 0.5
    next to 1,500 rpm). Everything after it runs in int8. This selective quantization goes
    through TensorFlow's public ``tf.lite.experimental.QuantizationDebugger`` with the
    standardization ops denylisted. With ``int8_io`` the whole graph, the input and the output
    are int8; fit for features of similar scale only.

    A quantization-aware model (QAT, PCQAT) whose weight layers all carry fake quantizers
    brings its own ranges and has none around its standardization: the converter's standard
    QAT conversion, without calibration, quantizes exactly the trained part (with the QAT
    scheme's weight scales) and leaves the standardization in float. A QAT model with weight
    layers tfmot has no 8-bit config for (Conv1D) is calibrated like any other.

    Weight scales (``int8_scales``): ``auto`` gives convolution models one scale per output
    channel (filters of very different magnitude share a tensor) and dense models one per
    tensor (on the sensor MLP per-channel scales add about 12 % to the file for no accuracy
    gained); ``per_channel`` and ``per_tensor`` force one. Per-tensor scales need the
    converter's only non-public switch, ``_experimental_disable_per_channel``: TensorFlow has
    no public option for it.
    """

    name = "full_int8"

    def check(self, model, options: dict) -> None:
        """Pre-validation: raises ValueError if this cannot apply to the model."""
        super().check(model, options)
        representative = options.get("representative")
        if representative is None or len(representative) == 0:
            raise ValueError(f"model {model.name!r}: full_int8 needs calibration rows")

    @staticmethod
    def per_channel(model, options: dict) -> bool:
        """Whether weights get one scale per output channel (see the class docstring)."""
        scales = options.get("int8_scales", "auto")
        return scales == "per_channel" or (scales == "auto" and has_conv_layers(model))

    def convert(self, model, options: dict) -> bytes:
        """Returns the .tflite bytes (see the class docstring)."""
        tf, converter = self._converter(model)
        converter._experimental_disable_per_channel = not self.per_channel(model, options)
        if trained_ranges_only(model) and not options.get("int8_io"):
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            return converter.convert()
        representative = options["representative"]

        def dataset():
            for row in representative:
                yield [row[None, :].astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        normalization = _normalization_layer_name(model)
        if options.get("int8_io") or normalization is None:
            if options.get("int8_io"):
                converter.inference_input_type = tf.int8
                converter.inference_output_type = tf.int8
            return converter.convert()
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
            tf.lite.OpsSet.TFLITE_BUILTINS,
        ]
        # The standardization's op outputs, named as in the float flatbuffer (calibration keeps
        # the names); the debugger quantizes everything else.
        float_model = tf.lite.TFLiteConverter.from_keras_model(model).convert()
        denylist = _op_outputs_under(float_model, f"/{normalization}/")
        debug_options = tf.lite.experimental.QuantizationDebugOptions(
            denylisted_nodes=denylist, fully_quantize=False
        )
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=dataset, debug_options=debug_options
        )
        return debugger.get_nondebug_quantized_model()
