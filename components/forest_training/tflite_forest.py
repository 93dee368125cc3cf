"""A random forest compiled into a TFLite model: the trees as tensor operations.

The traversal is unrolled, one step per level of the deepest tree, and runs every tree at once:
``node[b, t]`` starts at the root; each step gathers the node's feature index and threshold,
gathers ``x[b, feature]`` and moves to the left child when the value is ``<=`` the threshold,
else to the right. Leaves point to themselves with an infinite threshold, so rows that reached
a leaf stay there. The output is the mean of the reached leaves' class distributions: MLlib's
random-forest probability. Only builtin ops are used (GATHER, LESS_EQUAL, SELECT_V2, MEAN), so
evaluation, the gate, the store, the pull client and the browser client need nothing new.

Thresholds are rounded down to float32 (the model's input type): for a float32 input ``v`` and
a float64 threshold ``t``, ``v <= t`` holds exactly when ``v <= floor32(t)``, so the compiled
model takes the same branches as MLlib on the same (float32) values.
"""

from __future__ import annotations

import numpy as np

from kfp_edge.forest_training.forest import ForestArrays


def float32_floor(values: np.ndarray) -> np.ndarray:
    """Returns the largest float32 values not above the given float64 values (inf stays)."""
    values = np.asarray(values, dtype=np.float64)
    rounded = values.astype(np.float32)
    above = rounded.astype(np.float64) > values
    rounded[above] = np.nextafter(rounded[above], np.float32(-np.inf))
    return rounded


def to_tflite(forest: ForestArrays, num_features: int) -> bytes:
    """Compiles a forest into a float32 TFLite model: raw features ``[N, F]`` -> probabilities.

    Args:
        forest: The forest's arrays (:func:`kfp_edge.forest_training.forest.read_saved_forest`).
        num_features: Number of input features.

    Raises:
        ValueError: If a tree tests a feature index outside ``num_features``.
    """
    from kfp_edge.tf_env import import_tf

    tf, _ = import_tf()
    trees, nodes = forest.feature.shape
    if forest.feature.max(initial=0) >= num_features:
        raise ValueError(f"the forest tests feature {forest.feature.max()} of {num_features}")
    offsets = tf.constant((np.arange(trees) * nodes).astype(np.int32)[None, :])
    feature = tf.constant(forest.feature.reshape(-1).astype(np.int32))
    threshold = tf.constant(float32_floor(forest.threshold.reshape(-1)))
    left = tf.constant(forest.left.reshape(-1).astype(np.int32))
    right = tf.constant(forest.right.reshape(-1).astype(np.int32))
    classes = forest.leaf_proba.shape[-1]
    leaf = tf.constant(forest.leaf_proba.reshape(-1, classes).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, num_features], tf.float32, name="x")])
    def predict(x):
        node = tf.zeros([tf.shape(x)[0], trees], tf.int32)
        for _ in range(forest.depth):
            flat = node + offsets
            value = tf.gather(x, tf.gather(feature, flat), batch_dims=1)
            go_left = tf.less_equal(value, tf.gather(threshold, flat))
            node = tf.where(go_left, tf.gather(left, flat), tf.gather(right, flat))
        return tf.reduce_mean(tf.gather(leaf, node + offsets), axis=1)

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [predict.get_concrete_function()], predict
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()
