"""The one place that imports Keras.

tfalign uses Keras 2 (the ``tf_keras`` package) because tensorflow-model-optimization refuses Keras 3
functional models for pruning and QAT. ``TF_USE_LEGACY_KERAS`` must be set before TensorFlow is first
imported, which is why every module takes ``tf`` and ``keras`` from here instead of importing them.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow's own CPU kernels have no gradient for grouped convolutions (Conv2D groups > 1: GroupConv2D,
# Pose-Tree-MoE's experts, channel-pruned grouped layers); oneDNN's have. TF turns oneDNN on by default only on
# CPUs with AVX-512 VNNI/BF16 or AMX, so on AVX2-only cores (Zen 3 seen) training those models failed with
# "Gradients for grouped convolutions are not supported on CPU". It is read once, when TensorFlow is imported.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

layers = keras.layers


def register(name: str):
    """Register a custom layer/model/loss for serialization under ``tfalign>name``.

    One decorator both names the class publicly and makes ``keras.models.load_model`` find it.
    """
    return keras.utils.register_keras_serializable(package="tfalign", name=name)


__all__ = ["tf", "keras", "layers", "register"]
