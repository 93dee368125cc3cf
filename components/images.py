"""Container images of kfp-edge: one per runtime, tagged with the package version.

Override the registry at compile time with ``KFP_EDGE_IMAGE_REGISTRY`` (for a private mirror).
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


RUNTIMES = ("spark", "tensorflow")
SPARK_IMAGE = image("spark")
TENSORFLOW_IMAGE = image("tensorflow")
