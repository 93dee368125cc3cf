"""Keras-side compression with tensorflow-model-optimization and knowledge distillation.

Pruning, clustering, QAT, distillation and tfmot's collaborative combination (prune ->
cluster -> QAT).

Every function takes a tf_keras model (raw float32 features in, softmax out, a Normalization
layer first) and training data as numpy arrays, and returns a new tf_keras model of the same
interface: pruning and clustering wrappers stripped, the QAT model with its fake quantizers
(the converter reads their ranges). Only weight layers (Dense, Conv1D, Conv2D) are wrapped:
tfmot does not support the Normalization layer, which stays float.
"""

from __future__ import annotations

import math

import numpy as np

from kfp_edge.tf_env import import_tf

WEIGHT_LAYERS = ("Dense", "Conv1D", "Conv2D")


def _is_weight_layer(layer) -> bool:
    return type(layer).__name__ in WEIGHT_LAYERS


def copy_model(model):
    """Returns an independent copy of ``model`` (same architecture, same weights)."""
    _, keras = import_tf()
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def _wrap(model, wrap):
    """Returns a model whose weight layers are ``wrap(layer)``, built on a copy of ``model``.

    The wrappers take the copy's layer objects (with their weights), as tfmot's guides do;
    the copy keeps the caller's model untouched.
    """
    _, keras = import_tf()

    def clone_fn(layer):
        return wrap(layer) if _is_weight_layer(layer) else layer

    return keras.models.clone_model(copy_model(model), clone_function=clone_fn)


def fine_tune(
    model, x, y, epochs: int, batch_size: int, learning_rate: float, callbacks=(), seed: int = 0
):
    """Compiles and trains ``model`` on ``(x, y)`` with sparse categorical cross-entropy.

    Args:
        model: A tf_keras model with a softmax output.
        x: Raw features, float32 ``[rows, features]``.
        y: Class ids, int ``[rows]``.
        epochs: Training epochs (0 compiles only).
        batch_size: Batch size.
        learning_rate: Adam learning rate.
        callbacks: Extra Keras callbacks (the pruning step callback).
        seed: Seed of the shuffling.

    Returns:
        The same model, trained.
    """
    _, keras = import_tf()
    # Python's, numpy's and TensorFlow's generators: tf_keras draws the seeds of unseeded
    # initializers and shuffles from Python's, so tf.random.set_seed alone left the result
    # depending on whatever ran before in the process.
    keras.utils.set_random_seed(seed)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    if epochs > 0:
        model.fit(
            x,
            y,
            epochs=epochs,
            batch_size=batch_size,
            shuffle=True,
            verbose=0,
            callbacks=list(callbacks),
        )
    return model


def kernel_sparsity(model) -> float:
    """Returns the fraction of zero weights over the kernels of the weight layers."""
    zeros = total = 0
    for layer in model.layers:
        if _is_weight_layer(layer):
            kernel = layer.get_weights()[0]
            zeros += int(np.sum(kernel == 0))
            total += kernel.size
    return zeros / total if total else 0.0


def unique_kernel_values(model) -> int:
    """Returns the largest number of distinct kernel values in one weight layer."""
    counts = [
        len(np.unique(layer.get_weights()[0])) for layer in model.layers if _is_weight_layer(layer)
    ]
    return max(counts) if counts else 0


def prune(
    model, x, y, sparsity: float, epochs: int, batch_size: int, learning_rate: float, seed: int = 0
):
    """Magnitude pruning to ``sparsity`` with a polynomial decay schedule, then strip_pruning.

    The schedule ramps from 0 to ``sparsity`` over the first 80 % of the fine-tuning steps
    and reaches it exactly at its end step; the rest of the steps train the remaining weights.

    Args:
        model: The float tf_keras model.
        x: Training features.
        y: Training class ids.
        sparsity: Target fraction of zero kernel weights, in (0, 1).
        epochs: Fine-tuning epochs (at least 1).
        batch_size: Batch size.
        learning_rate: Adam learning rate of fine-tuning.
        seed: Seed of the shuffling.

    Returns:
        The stripped, pruned tf_keras model (plain layers, zeros in the kernels).
    """
    import tensorflow_model_optimization as tfmot

    steps_per_epoch = math.ceil(len(x) / batch_size)
    total_steps = steps_per_epoch * max(1, epochs)
    end_step = max(1, int(total_steps * 0.8))
    frequency = max(1, end_step // 10)
    end_step = frequency * max(1, end_step // frequency)
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0,
        final_sparsity=float(sparsity),
        begin_step=0,
        end_step=end_step,
        frequency=frequency,
    )
    wrapped = _wrap(
        model,
        lambda layer: tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule),
    )
    fine_tune(
        wrapped,
        x,
        y,
        max(1, epochs),
        batch_size,
        learning_rate,
        callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
        seed=seed,
    )
    return tfmot.sparsity.keras.strip_pruning(wrapped)


def cluster(
    model,
    x,
    y,
    clusters: int,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    preserve_sparsity: bool = False,
    seed: int = 0,
):
    """Weight clustering (k-means++ centroids) of the weight layers, fine-tuned, stripped.

    Layers with fewer kernel weights (non-zero ones with ``preserve_sparsity``) than twice
    ``clusters`` are left unclustered.

    Args:
        model: The tf_keras model.
        x: Training features.
        y: Training class ids.
        clusters: Number of clusters (distinct weight values) per layer.
        epochs: Fine-tuning epochs.
        batch_size: Batch size.
        learning_rate: Adam learning rate of fine-tuning.
        preserve_sparsity: Keep zero weights at zero (sparsity-preserving clustering, the
            second step of collaborative optimization).
        seed: Seed of the shuffling.

    Returns:
        The stripped, clustered tf_keras model.
    """
    import tensorflow_model_optimization as tfmot

    ck = tfmot.clustering.keras
    params = {
        "number_of_clusters": int(clusters),
        "cluster_centroids_init": ck.CentroidInitialization.KMEANS_PLUS_PLUS,
    }
    if preserve_sparsity:
        params["preserve_sparsity"] = True

    def wrap(layer):
        kernel = layer.get_weights()[0]
        # k-means++ needs more candidate weights than clusters; with preserve_sparsity only
        # the non-zero weights are clustered.
        candidates = np.count_nonzero(kernel) if preserve_sparsity else kernel.size
        if candidates < 2 * clusters:
            return layer
        return ck.cluster_weights(layer, **params)

    wrapped = _wrap(model, wrap)
    fine_tune(wrapped, x, y, epochs, batch_size, learning_rate, seed=seed)
    return ck.strip_clustering(wrapped)


def _split_normalization(model):
    """Splits a linear model into its Normalization layer (or None) and the rest as a model.

    Returns:
        ``(normalization copy or None, core)``: ``core`` is a new Sequential of copies of the
        layers after the normalization (weights copied), taking standardized features.

    The split assumes a linear chain of layers (every model of the training registry is
    one); :func:`quantization_aware` checks that the parts recompose the model.
    """
    _, keras = import_tf()
    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    normalization = None
    if layers and type(layers[0]).__name__ == "Normalization":
        source = layers.pop(0)
        normalization = source.__class__.from_config(source.get_config())
        normalization.build(source.input_shape)
        normalization.set_weights(source.get_weights())
    num_features = int(model.inputs[0].shape[-1])
    copies = [layer.__class__.from_config(layer.get_config()) for layer in layers]
    core = keras.Sequential(
        [keras.Input(shape=(num_features,), dtype="float32"), *copies], name="quantized_core"
    )
    for source, copy in zip(layers, copies, strict=True):
        copy.set_weights(source.get_weights())
    return normalization, core


def quantization_aware(
    model,
    x,
    y,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    preserve: str = "",
    seed: int = 0,
):
    """Quantization-aware training (8-bit fake quantization) after the input standardization.

    The folded-in Normalization layer stays outside the quantized part: quantizing raw
    features of very different ranges with one scale would erase the small ones. The
    quantized part starts with a quantizer on the standardized features.

    Args:
        model: The tf_keras model (a linear chain: Normalization, then the layers).
        x: Training features.
        y: Training class ids.
        epochs: QAT fine-tuning epochs.
        batch_size: Batch size.
        learning_rate: Adam learning rate.
        preserve: "" for plain QAT, "sparsity" to keep zeros (PQAT), "cluster_sparsity" to keep
            clusters and zeros (PCQAT, tfmot's collaborative optimization).
        seed: Seed of the shuffling.

    Returns:
        A tf_keras model: raw features -> Normalization -> the QAT part -> softmax. Convert it
        with the default optimizations to get int8 weights and activations with the trained
        ranges.
    """
    import tensorflow_model_optimization as tfmot

    _, keras = import_tf()
    qk = tfmot.quantization.keras
    registry = qk.default_8bit.Default8BitQuantizeScheme().get_quantize_registry()
    normalization, core = _split_normalization(model)
    probe = x[:64]
    recomposed = core(normalization(probe) if normalization is not None else probe).numpy()
    if not np.allclose(recomposed, model(probe).numpy(), atol=1e-5):
        raise ValueError(
            f"model {model.name!r}: QAT needs a linear chain of layers "
            "(Normalization, then one layer after another)"
        )
    # Weight layers tfmot has no 8-bit config for (Conv1D) train in float; the converter
    # still quantizes them from the calibration.
    annotated = keras.models.clone_model(
        core,
        clone_function=lambda layer: (
            qk.quantize_annotate_layer(layer)
            if _is_weight_layer(layer) and registry.supports(layer)
            else layer
        ),
    )
    annotated.set_weights(core.get_weights())
    if preserve == "sparsity":
        from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve import (  # noqa: E501
            default_8bit_prune_preserve_quantize_scheme as pqat,
        )

        scheme = pqat.Default8BitPrunePreserveQuantizeScheme()
    elif preserve == "cluster_sparsity":
        from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.cluster_preserve import (  # noqa: E501
            default_8bit_cluster_preserve_quantize_scheme as cqat,
        )

        scheme = cqat.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=True)
    elif preserve == "":
        scheme = qk.default_8bit.Default8BitQuantizeScheme()
    else:
        raise ValueError(f"unknown QAT preserve mode {preserve!r}")
    with qk.quantize_scope():
        qat_core = qk.quantize_apply(annotated, scheme)
    inputs = keras.Input(shape=(int(model.inputs[0].shape[-1]),), dtype="float32", name="features")
    h = normalization(inputs) if normalization is not None else inputs
    qat = keras.Model(inputs, qat_core(h), name=f"{model.name}_qat")
    fine_tune(qat, x, y, epochs, batch_size, learning_rate, seed=seed)
    return qat


def hidden_shape(model) -> tuple[int, int]:
    """Returns ``(widest hidden width, hidden weight layers)`` of a model (output excluded)."""
    widths = []
    for layer in model.layers:
        if type(layer).__name__ == "Dense":
            widths.append(int(layer.units))
        elif type(layer).__name__ in ("Conv1D", "Conv2D"):
            widths.append(int(layer.filters))
    hidden = widths[:-1]
    return (max(hidden) if hidden else widths[-1]), len(hidden)


def logits_model(model):
    """Returns a tf_keras model of ``model``'s pre-softmax logits (same inputs, same weights).

    The output layer is either a ``Softmax`` layer (its input is the logits) or a ``Dense``
    layer with a softmax activation (the same kernel and bias without the activation).

    Raises:
        ValueError: If the model does not end in a softmax (naming the model and its layer).
    """
    _, keras = import_tf()
    last = model.layers[-1]
    kind = type(last).__name__
    if kind == "Softmax":
        return keras.Model(model.inputs, last.input, name=f"{model.name}_logits")
    config = last.get_config() if kind == "Dense" else {}
    if config.get("activation") != "softmax":
        raise ValueError(
            f"model {model.name!r}: distillation needs a softmax output layer (Softmax or "
            f"Dense with softmax activation), got {kind} {last.name!r}"
        )
    dense = keras.layers.Dense.from_config(
        {**config, "activation": "linear", "name": f"{last.name}_logits"}
    )
    logits = dense(last.input)
    dense.set_weights(last.get_weights())
    return keras.Model(model.inputs, logits, name=f"{model.name}_logits")


def distill(
    teacher,
    x,
    y,
    width: int,
    depth: int,
    temperature: float,
    alpha: float,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int = 0,
):
    """Knowledge distillation into a smaller MLP student.

    The student has the teacher's Normalization layer (same mean and variance), ``depth``
    Dense(``width``, relu) layers and a softmax output. Its loss is
    ``alpha * CE(labels, student) + (1 - alpha) * T^2 * KL(teacher_T || student_T)``, where
    ``_T`` are the softmax outputs at temperature ``T`` of the logits. The teacher's logits are
    read before its softmax (:func:`logits_model`): rebuilding them as ``log(clip(p))`` would
    flatten every probability under the clip (most non-target ones on a trained model) to the
    same value, and at ``T`` = 4 the soft targets would lose the teacher's dark knowledge.

    Args:
        teacher: The trained tf_keras model (softmax output).
        x: Training features.
        y: Training class ids.
        width: Units per hidden student layer (at least 1).
        depth: Hidden student layers (0 gives a linear softmax classifier).
        temperature: Softening temperature (> 0).
        alpha: Weight of the hard-label loss, in [0, 1].
        epochs: Training epochs.
        batch_size: Batch size.
        learning_rate: Adam learning rate.
        seed: Seed of initialization and shuffling.

    Returns:
        The trained student, a tf_keras model with the teacher's interface.
    """
    tf, keras = import_tf()
    keras.utils.set_random_seed(seed)  # all three generators (see fine_tune)
    normalization = next(
        (layer for layer in teacher.layers if type(layer).__name__ == "Normalization"), None
    )
    num_features = int(teacher.inputs[0].shape[-1])
    num_classes = int(teacher.outputs[0].shape[-1])
    inputs = keras.Input(shape=(num_features,), dtype="float32", name="features")
    h = inputs
    if normalization is not None:
        norm = normalization.__class__.from_config(normalization.get_config())
        h = norm(h)
        norm.set_weights(normalization.get_weights())
    for _ in range(depth):
        h = keras.layers.Dense(width, activation="relu")(h)
    logits = keras.layers.Dense(num_classes, name="logits")(h)
    probs = keras.layers.Softmax(name="probabilities")(logits)
    student = keras.Model(inputs, probs, name="student")
    trainer = keras.Model(inputs, logits)

    teacher_logits = logits_model(teacher).predict(x, batch_size=1024, verbose=0)
    teacher_logits = teacher_logits.astype(np.float32)
    optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
    t = float(temperature)

    @tf.function
    def step(xb, yb, tb):
        with tf.GradientTape() as tape:
            s_logits = trainer(xb, training=True)
            hard = tf.reduce_mean(
                keras.losses.sparse_categorical_crossentropy(yb, s_logits, from_logits=True)
            )
            soft_t = tf.nn.softmax(tb / t)
            kl = tf.reduce_mean(
                tf.reduce_sum(
                    soft_t * (tf.nn.log_softmax(tb / t) - tf.nn.log_softmax(s_logits / t)), axis=-1
                )
            )
            loss = alpha * hard + (1.0 - alpha) * (t**2) * kl
        grads = tape.gradient(loss, trainer.trainable_variables)
        optimizer.apply_gradients(zip(grads, trainer.trainable_variables, strict=True))
        return loss

    rng = np.random.default_rng(seed)
    for _ in range(max(1, epochs)):
        order = rng.permutation(len(x))
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            step(tf.constant(x[idx]), tf.constant(y[idx]), tf.constant(teacher_logits[idx]))
    return student
