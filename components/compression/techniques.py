"""Keras-side compression techniques as plugins: none, prune, cluster, qat, distill, pcqat.

Each technique is a class in :data:`TECHNIQUES` (the shape of tfx's ``rewriter_factory``):
:meth:`Technique.check` validates the trained model before any work, :meth:`Technique.build`
returns the compressed tf_keras model and the parameters worth recording, and
:meth:`Technique.validate` checks that the technique did what it claims (the sparsity reached,
the clusters kept, a smaller student). A technique may build on another one's result
(``pcqat`` on ``prune``) through :meth:`Build.get`, which builds each technique once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from kfp_edge.compression import optimize

TECHNIQUES: dict[str, Technique] = {}


def register(cls):
    """Class decorator: adds one instance of a technique to :data:`TECHNIQUES`."""
    TECHNIQUES[cls.name] = cls()
    return cls


@dataclass
class Build:
    """The inputs every technique shares, and the models built so far (one per technique)."""

    model: object
    x: np.ndarray
    y: np.ndarray
    options: dict
    built: dict = field(default_factory=dict)

    def get(self, name: str) -> tuple[object, dict]:
        """Returns ``(model, params)`` of a technique, checking, building and validating once."""
        if name not in self.built:
            technique = TECHNIQUES[name]
            technique.check(self.model, self.options)
            result = technique.build(self)
            technique.validate(*result, self.options)
            self.built[name] = result
        return self.built[name]

    def fine_tune_args(self) -> dict:
        """Returns the fine-tuning arguments of optimize's functions from the options."""
        o = self.options
        return {
            "epochs": int(o["fine_tune_epochs"]),
            "batch_size": int(o["batch_size"]),
            "learning_rate": float(o["learning_rate"]),
            "seed": int(o["seed"]),
        }


class Technique(ABC):
    """One Keras-side technique. Subclasses set ``name`` and implement :meth:`build`."""

    name = ""
    needs_weight_layers = False

    def check(self, model, options: dict) -> None:
        """Pre-validation: raises ValueError (naming the model) if the technique cannot apply."""
        if self.needs_weight_layers and not any(
            type(layer).__name__ in optimize.WEIGHT_LAYERS for layer in model.layers
        ):
            raise ValueError(
                f"model {model.name!r}: {self.name} needs weight layers {optimize.WEIGHT_LAYERS}"
            )

    @abstractmethod
    def build(self, build: Build) -> tuple[object, dict]:
        """Returns ``(compressed tf_keras model, params to record)``."""

    def validate(self, model, params: dict, options: dict) -> None:  # noqa: B027 - optional hook
        """Post-validation: raises ValueError if the result is not what the technique claims."""


@register
class NoTechnique(Technique):
    """The trained model as it is (post-training quantization only)."""

    name = "none"

    def build(self, build: Build) -> tuple[object, dict]:
        """Returns the compressed model and its parameters (see the class docstring)."""
        return build.model, {}


@register
class Prune(Technique):
    """Magnitude pruning to ``sparsity`` (polynomial decay), fine-tuned, stripped."""

    name = "prune"
    needs_weight_layers = True

    def build(self, build: Build) -> tuple[object, dict]:
        """Returns the compressed model and its parameters (see the class docstring)."""
        args = build.fine_tune_args()
        sparsity = float(build.options["sparsity"])
        pruned = optimize.prune(build.model, build.x, build.y, sparsity, **args)
        return pruned, {
            "target_sparsity": sparsity,
            "sparsity": optimize.kernel_sparsity(pruned),
            "fine_tune_epochs": max(1, args["epochs"]),
            "schedule": "polynomial_decay",
        }

    def validate(self, model, params: dict, options: dict) -> None:
        """Post-validation: raises ValueError if the result is not what is claimed."""
        # Each layer is pruned to round(sparsity * weights): a hair under the target overall.
        if params["sparsity"] < params["target_sparsity"] - 0.02:
            raise ValueError(
                f"prune: reached sparsity {params['sparsity']:.3f}, target "
                f"{params['target_sparsity']:.3f}"
            )


@register
class Cluster(Technique):
    """Weight clustering (k-means++ centroids), fine-tuned, stripped."""

    name = "cluster"
    needs_weight_layers = True

    def build(self, build: Build) -> tuple[object, dict]:
        """Returns the compressed model and its parameters (see the class docstring)."""
        clusters = int(build.options["clusters"])
        clustered = optimize.cluster(
            build.model, build.x, build.y, clusters, **build.fine_tune_args()
        )
        return clustered, {
            "clusters": clusters,
            "unique_weights_per_layer": optimize.unique_kernel_values(clustered),
            "fine_tune_epochs": int(build.options["fine_tune_epochs"]),
        }

    def validate(self, model, params: dict, options: dict) -> None:
        """Post-validation: raises ValueError if the result is not what is claimed."""
        clusters = params["clusters"]
        for layer in model.layers:
            if type(layer).__name__ in optimize.WEIGHT_LAYERS:
                kernel = layer.get_weights()[0]
                distinct = len(np.unique(kernel))
                # Layers with fewer than 2 x clusters weights are left unclustered.
                if kernel.size >= 2 * clusters and distinct > clusters:
                    raise ValueError(
                        f"cluster: layer {layer.name!r} has {distinct} distinct weights, "
                        f"more than {clusters} clusters"
                    )


@register
class QuantizationAware(Technique):
    """Quantization-aware training (8-bit fake quantization after the standardization)."""

    name = "qat"
    needs_weight_layers = True

    def build(self, build: Build) -> tuple[object, dict]:
        """Returns the compressed model and its parameters (see the class docstring)."""
        args = build.fine_tune_args()
        qat = optimize.quantization_aware(build.model, build.x, build.y, **args)
        return qat, {"fine_tune_epochs": args["epochs"]}


@register
class Distill(Technique):
    """Knowledge distillation into a smaller MLP, from the teacher's pre-softmax logits."""

    name = "distill"

    def check(self, model, options: dict) -> None:
        """Pre-validation: raises ValueError if this cannot apply to the model."""
        optimize.logits_model(model)  # raises when the model has no softmax output layer

    def build(self, build: Build) -> tuple[object, dict]:
        """Returns the compressed model and its parameters (see the class docstring)."""
        o, teacher = build.options, build.model
        width, _ = optimize.hidden_shape(teacher)
        student_width = int(o["student_width"]) or max(2, width // 2)
        student = optimize.distill(
            teacher,
            build.x,
            build.y,
            student_width,
            int(o["student_depth"]),
            float(o["temperature"]),
            float(o["alpha"]),
            int(o["distill_epochs"]),
            int(o["batch_size"]),
            float(o["distill_learning_rate"]),
            int(o["seed"]),
        )
        return student, {
            "student_width": student_width,
            "student_depth": int(o["student_depth"]),
            "temperature": float(o["temperature"]),
            "alpha": float(o["alpha"]),
            "epochs": max(1, int(o["distill_epochs"])),
            "teacher_params": int(teacher.count_params()),
            "student_params": int(student.count_params()),
            "soft_targets": "teacher logits",
        }

    def validate(self, model, params: dict, options: dict) -> None:
        """Post-validation: raises ValueError if the result is not what is claimed."""
        if params["student_params"] >= params["teacher_params"]:
            raise ValueError(
                f"distill: the student has {params['student_params']} parameters, not fewer "
                f"than the teacher's {params['teacher_params']}; lower student_width or "
                "student_depth"
            )


@register
class PruneClusterQat(Technique):
    """tfmot's collaborative optimization: prune -> cluster (preserving zeros) -> PCQAT."""

    name = "pcqat"
    needs_weight_layers = True

    def build(self, build: Build) -> tuple[object, dict]:
        """Returns the compressed model and its parameters (see the class docstring)."""
        pruned, prune_params = build.get("prune")
        clusters = int(build.options["clusters"])
        args = build.fine_tune_args()
        clustered = optimize.cluster(
            pruned, build.x, build.y, clusters, preserve_sparsity=True, **args
        )
        cluster_sparsity = optimize.kernel_sparsity(clustered)
        qat = optimize.quantization_aware(
            clustered, build.x, build.y, preserve="cluster_sparsity", **args
        )
        return qat, {
            **prune_params,
            "clusters": clusters,
            "sparsity_after_clustering": cluster_sparsity,
            "pipeline": "prune -> cluster(preserve_sparsity) -> PCQAT",
        }
