"""The model registry of the trainer: small Keras 2 models picked by name.

Every model takes RAW float32 features ``[None, num_features]``: the ETL's preprocessing spec
(standardization mean and std) is folded in as the first layer, a ``Normalization`` layer with
fixed mean and variance, so the SavedModel and every TFLite variant made from it take raw sensor
values. Every model ends in a softmax over ``num_classes``.

Register a new model with :func:`register`; pick one with :func:`build_model`.
"""

from __future__ import annotations

from typing import Callable

# name -> (builder, description). A builder is ``fn(keras, normalization, num_features,
# num_classes, width, depth) -> list of layers after the normalization layer``.
_REGISTRY: dict[str, tuple[Callable, str]] = {}

DEFAULT_WIDTH = {"iris_mlp": 10, "mlp": 64, "cnn1d": 16}
DEFAULT_DEPTH = {"iris_mlp": 1, "mlp": 2, "cnn1d": 2}


def register(name: str, description: str):
    """Decorator that registers a model builder under ``name``.

    Args:
        name: Registry name (what ``--model`` and the component's ``model`` take).
        description: One line shown by :func:`available_models`.

    Returns:
        The decorator.
    """

    def decorate(fn: Callable) -> Callable:
        _REGISTRY[name] = (fn, description)
        return fn

    return decorate


def available_models() -> dict[str, str]:
    """Returns the registered model names with their one-line descriptions."""
    return {name: desc for name, (_, desc) in sorted(_REGISTRY.items())}


def check_model_args(name: str, width: int, depth: int) -> None:
    """Checks a model name and its width and depth without importing TensorFlow.

    Args:
        name: Registry name.
        width: Units (or filters) per hidden layer; 0 for the model's default.
        depth: Hidden layers; 0 for the model's default.

    Raises:
        ValueError: If the name is unknown or width/depth are negative.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; registered models: {sorted(_REGISTRY)}")
    if width < 0 or depth < 0:
        raise ValueError(f"model width and depth must be >= 0 (0 = default), got {width}, {depth}")


@register("iris_mlp", "The classic Iris MLP: Dense(10, sigmoid) -> Dense(classes, softmax)")
def _iris_mlp(keras, num_features, num_classes, width, depth):
    hidden = [keras.layers.Dense(width, activation="sigmoid") for _ in range(depth)]
    return [*hidden, keras.layers.Dense(num_classes, activation="softmax")]


@register("mlp", "MLP for feature vectors: depth x Dense(width, relu) -> softmax")
def _mlp(keras, num_features, num_classes, width, depth):
    hidden = [keras.layers.Dense(width, activation="relu") for _ in range(depth)]
    return [*hidden, keras.layers.Dense(num_classes, activation="softmax")]


@register("cnn1d", "1-D CNN for sensor windows: depth x Conv1D(width, 3, relu) -> GAP -> softmax")
def _cnn1d(keras, num_features, num_classes, width, depth):
    layers = [keras.layers.Reshape((num_features, 1))]
    layers += [
        keras.layers.Conv1D(
            width, kernel_size=min(3, num_features), padding="same", activation="relu"
        )
        for _ in range(depth)
    ]
    return [
        *layers,
        keras.layers.GlobalAveragePooling1D(),
        keras.layers.Dense(num_classes, activation="softmax"),
    ]


def build_model(
    name: str,
    num_features: int,
    num_classes: int,
    mean: list[float],
    std: list[float],
    width: int = 0,
    depth: int = 0,
):
    """Builds an (uncompiled) tf_keras model from the registry.

    Call it inside a distribution strategy's scope when training with one.

    Args:
        name: Registry name (``iris_mlp``, ``mlp``, ``cnn1d`` or one you registered).
        num_features: Length of the raw feature vector.
        num_classes: Number of classes of the softmax output.
        mean: Per-feature mean of the training split (the preprocessing spec).
        std: Per-feature standard deviation of the training split.
        width: Units (or filters) per hidden layer; 0 for the model's default.
        depth: Hidden layers; 0 for the model's default.

    Returns:
        A ``tf_keras.Sequential`` with input float32 ``[None, num_features]`` of raw values.

    Raises:
        ValueError: If the name is unknown or the preprocessing spec does not fit the features.
    """
    from kfp_edge.tf_env import import_tf

    check_model_args(name, width, depth)
    if len(mean) != num_features or len(std) != num_features:
        raise ValueError(
            f"preprocessing spec has {len(mean)} means and {len(std)} stds "
            f"for {num_features} features"
        )
    _, keras = import_tf()
    builder, _ = _REGISTRY[name]
    width = width or DEFAULT_WIDTH.get(name, 32)
    depth = depth or DEFAULT_DEPTH.get(name, 1)
    normalization = keras.layers.Normalization(
        axis=-1, mean=list(mean), variance=[float(s) ** 2 for s in std], name="preprocessing"
    )
    layers = builder(keras, num_features, num_classes, width, depth)
    model = keras.Sequential(
        [
            keras.Input(shape=(num_features,), dtype="float32", name="features"),
            normalization,
            *layers,
        ],
        name=name,
    )
    return model
