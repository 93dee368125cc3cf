"""The Keras 2 guard: every TensorFlow import in kfp-edge goes through :func:`import_tf`.

tensorflow-model-optimization supports Keras 2 only, so kfp-edge uses ``tf_keras`` and sets
``TF_USE_LEGACY_KERAS=1`` before TensorFlow is first imported.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


class KerasSetupError(RuntimeError):
    """TensorFlow cannot be used with Keras 2 in this environment."""


def import_tf():
    """Imports TensorFlow and tf_keras with Keras 2 selected.

    Returns:
        A ``(tensorflow, tf_keras)`` tuple.

    Raises:
        KerasSetupError: If tf_keras is missing, or TensorFlow was already imported with Keras 3.
    """
    if "tensorflow" in sys.modules and os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        raise KerasSetupError(
            "TensorFlow was imported before kfp_edge could set TF_USE_LEGACY_KERAS=1; "
            "set TF_USE_LEGACY_KERAS=1 in the environment or import kfp_edge first"
        )
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tf_keras
    except ImportError as exc:
        raise KerasSetupError(
            "tf_keras is not installed: kfp-edge needs Keras 2 for tensorflow-model-optimization; "
            "install it with `pip install 'kfp-edge[tf]'` (tf-keras==2.21.0)"
        ) from exc
    import tensorflow as tf

    return tf, tf_keras


def load_keras_model(saved_model_dir: str | os.PathLike):
    """Loads the trainer's tf_keras SavedModel (no optimizer, not compiled).

    Raises:
        FileNotFoundError: If the directory holds no SavedModel.
    """
    _, keras = import_tf()
    path = Path(saved_model_dir)
    if not (path / "saved_model.pb").exists():
        raise FileNotFoundError(f"{path}: no saved_model.pb; expected the trainer's SavedModel")
    return keras.models.load_model(str(path), compile=False)
