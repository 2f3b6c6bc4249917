"""Tiny .tflite models for the profiler tests (float32, full int8, fp16 weights), built once per test session."""
import json

import numpy as np
import pytest


def _keras_model(size=16):
    from tfalign._keras import keras, layers, tf
    tf.random.set_seed(0)
    inp = keras.Input((size, size, 3), batch_size=1)
    x = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    x = layers.DepthwiseConv2D(3, padding="same")(x)
    x = layers.Conv2D(16, 1, activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, layers.Dense(10)(x))


def _convert(model, mode):
    from tfalign._keras import tf
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode == "int8":
        rng = np.random.default_rng(0)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([rng.standard_normal((1, 16, 16, 3)).astype(np.float32)]
                                               for _ in range(4))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    elif mode == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    return conv.convert()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """{'float': path, 'int8': path, 'fp16': path} of one 16×16 conv/depthwise/dense model."""
    folder = tmp_path_factory.mktemp("tiny_tflite")
    model = _keras_model()
    out = {}
    for mode in ("float", "int8", "fp16"):
        p = folder / f"tiny_{mode}.tflite"
        p.write_bytes(_convert(model, mode))
        out[mode] = p
    return out


def write_contract(model_path, scale=None, zero_point=None):
    """A minimal contract beside the model, with the fields the profiler reads."""
    inp = {"height": 16, "width": 16, "channels": 3, "color": "RGB", "dtype": "int8" if scale else "float32",
           "mean": [127.5, 127.5, 127.5], "std": [127.5, 127.5, 127.5]}
    if scale:
        inp.update(scale=scale, zero_point=zero_point)
    path = model_path.with_name(model_path.stem + ".contract.json")
    path.write_text(json.dumps({"format_version": 1, "input": inp, "outputs": [{"kind": "logits", "index": 0}]}))
    return path
