"""Container images of kfp-edge: one per runtime, tagged with the package version.

Override the registry at compile time with ``KFP_EDGE_IMAGE_REGISTRY`` (for a private mirror).
The TensorFlow runtime has a GPU flavour (``docker build --build-arg TF_VARIANT=gpu``), tagged
``<version>-gpu``; :func:`training_image` picks it for GPU training replicas. The pipelines pass
these references to the steps as parameters at compile time, so that the pods created at run
time (TFJob replicas, Spark driver and executors) use the same registry as the steps.
"""

from __future__ import annotations

import os

from kfp_edge import __version__

DEFAULT_REGISTRY = "ghcr.io/kfp-edge"


def image(runtime: str, registry: str | None = None) -> str:
    """Returns the image reference of a runtime.

    Args:
        runtime: ``spark`` or ``tensorflow`` (the folders of docker/).
        registry: Registry and namespace; defaults to ``KFP_EDGE_IMAGE_REGISTRY`` or
            ``ghcr.io/kfp-edge``.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; expected one of {sorted(RUNTIMES)}")
    registry = registry or os.environ.get("KFP_EDGE_IMAGE_REGISTRY", DEFAULT_REGISTRY)
    return f"{registry.rstrip('/')}/kfp-edge-{runtime}:{__version__}"


def training_image(gpu: bool = False, registry: str | None = None) -> str:
    """Returns the TensorFlow image of the training replicas, the GPU flavour when ``gpu``.

    Args:
        gpu: The replicas request GPUs (the image then carries CUDA).
        registry: As for :func:`image`.
    """
    return image("tensorflow", registry) + (GPU_TAG_SUFFIX if gpu else "")


RUNTIMES = ("spark", "tensorflow")
GPU_TAG_SUFFIX = "-gpu"
SPARK_IMAGE = image("spark")
TENSORFLOW_IMAGE = image("tensorflow")
