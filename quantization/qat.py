"""Quantization-aware training (tfmot) that covers the package's own layers.

``tfmot.quantization.keras.quantize_model`` refuses models with custom layers (and the known gaps for
soft-argmax, point sampling and resizing: tensorflow/model-optimization #372, #602). Here every layer is annotated
individually (``quantize_annotate_layer``) and the model is quantized with ``quantize_apply`` inside
``quantize_scope``; what each layer gets is decided by :func:`rule`:

=============================================  =================================================================
layer                                           QAT treatment
=============================================  =================================================================
Conv2D, DepthwiseConv2D, Dense, BN, ReLU, ...  tfmot's default 8-bit registry (Conv+BN folding, per-channel)
``GroupConv2D``                                 :class:`GroupConvQuantizeConfig`: per-tensor symmetric 8-bit kernel,
                                                8-bit output (one int8 CONV_2D with groups in TFLite)
``PointPatches``, ``BilinearSample``            :class:`OutputQuantizeConfig`: the sampled values are an 8-bit
                                                tensor (int8 GATHER); the coordinates stay float (FLOOR, weights)
``UpSampling2D`` (bilinear), ``Multiply``,      :class:`OutputQuantizeConfig` (RESIZE_BILINEAR / MUL int8)
``Rescaling``
``TFOpLambda`` (MobileNetV3 hard-swish)         left float: an annotated TFOpLambda breaks ``quantize_apply``'s clone;
                                                a named hard-swish layer in the backbone would let it be int8
``PatchesToGroups`` (transpose + reshape)       :class:`OutputQuantizeConfig`: its input may come from a float
                                                RoIAlign, and the grouped conv after it needs an int8 input
``StopGradient``                                :class:`NoOpQuantizeConfig`: identity
soft-argmax family (``SoftArgmax``,             :class:`FloatQuantizeConfig`: left float on purpose. A softmax over
``SpatialSoftmax``, ``SumSoftArgmax``,          H·W cells has int8 output scale 1/256 (the map collapses) and an
``RefineOffset``, ``PIPDecode``)                8-bit coordinate is a 1/255 grid (../shared/STACK.md); in TFLite the
                                                heatmaps are dequantized once and the expectation runs in float, as
                                                in the PTQ export (``keep_float_in_int8``)
any layer with ``keep_float_in_int8 = True``     float, like in the PTQ export (``presets.keeps_float``), e.g. the
                                                two-stage model's ``RoIAlign``
anything else                                   left float (not annotated), listed by :func:`coverage`
=============================================  =================================================================

The QAT model trains with the shared trainer (:func:`quantization.pruning.fine_tune`) and converts with
``presets.for_qat()`` (``mobile_export.tflite.convert(model, preset=...)``).

Example::

    qat_model = qat.quantize_model(trained_model)
    pruning.fine_tune(qat_model, run_settings, "runs/qat")
    tflite_bytes = mobile_export.tflite.convert(arch.inference_model(config, qat_model), preset=presets.for_qat())
"""
from __future__ import annotations

from quantization.presets import keeps_float
from tfalign import layers as tfa_layers
from tfalign._keras import keras

_L = keras.layers


import tensorflow_model_optimization as tfmot  # noqa: E402  (this module is imported only when QAT is used)

_q = tfmot.quantization.keras


def _activation_quantizer():
    # What tfmot's default 8-bit scheme puts on activations: asymmetric, per tensor, moving-average range.
    return _q.quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False, narrow_range=False)


class NoOpQuantizeConfig(_q.QuantizeConfig):
    """Nothing to quantize: data movement (reshape/transpose) keeps its input's int8 scale."""

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return []

    def get_config(self):
        return {}


class FloatQuantizeConfig(NoOpQuantizeConfig):
    """Kept float on purpose (soft-argmax family, coordinate maths): no quantizer; TFLite dequantizes its input."""


class OutputQuantizeConfig(NoOpQuantizeConfig):
    """No weights; the output is fake-quantized to 8 bits (int8 GATHER / RESIZE_BILINEAR / MUL / ADD)."""

    def get_output_quantizers(self, layer):
        return [_activation_quantizer()]


class GroupConvQuantizeConfig(OutputQuantizeConfig):
    """``GroupConv2D``: 8-bit symmetric per-tensor kernel (TFLite int8 CONV_2D), 8-bit output after the bias."""

    def get_weights_and_quantizers(self, layer):
        return [(layer.kernel, _q.quantizers.LastValueQuantizer(num_bits=8, per_axis=False, symmetric=True,
                                                                 narrow_range=True))]

    def set_quantize_weights(self, layer, quantize_weights):
        layer.kernel = quantize_weights[0]


_CONFIGS = {"output": OutputQuantizeConfig, "groupconv": GroupConvQuantizeConfig, "noop": NoOpQuantizeConfig,
            "float": FloatQuantizeConfig}


def _mobile_layers():
    # Custom layers of the architectures, found by registered name so quantization/ needs no model imports.
    get = keras.utils.get_registered_object
    return {n: get(f"tfalign>{n}") for n in ("SumSoftArgmax", "RefineOffset", "StopGradient", "PatchesToGroups",
                                               "PIPDecode")}


def rule(layer) -> str:
    """Which treatment ``layer`` gets: ``registry`` | ``output`` | ``groupconv`` | ``noop`` | ``float`` | ``none``."""
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as registry)
    custom = _mobile_layers()
    if isinstance(layer, (tfa_layers.SoftArgmax, tfa_layers.SpatialSoftmax)) or any(
            c is not None and isinstance(layer, c) for n, c in custom.items()
            if n in ("SumSoftArgmax", "RefineOffset", "PIPDecode")):
        return "float"
    if keeps_float(layer):  # the PTQ export's per-layer policy: QAT and PTQ models keep the same layers float
        return "float"
    if isinstance(layer, tfa_layers.GroupConv2D):
        return "groupconv"
    if isinstance(layer, (tfa_layers.PointPatches, tfa_layers.BilinearSample)):
        return "output"
    if isinstance(layer, custom.get("PatchesToGroups") or ()):
        # Its input (RoIAlign) may be float; quantizing its output gives the grouped conv an int8 input.
        return "output"
    if isinstance(layer, custom.get("StopGradient") or ()):
        return "noop"
    if isinstance(layer, _L.InputLayer):
        return "none"
    if isinstance(layer, _L.BatchNormalization):
        return "registry"  # folded into the preceding convolution by quantize_apply's transforms
    if registry.Default8BitQuantizeRegistry().supports(layer):
        return "registry"
    if isinstance(layer, (_L.Multiply, _L.Rescaling)):
        return "output"
    # TFOpLambda (tensor operators, e.g. MobileNetV3's hard-swish ``relu6(x + 3) * (1/6)``) stays float: tfmot's
    # quantize_apply cannot re-clone an annotated TFOpLambda (its input arrives as a list; tests/test_qat.py).
    return "none"


def coverage(model) -> dict:
    """``{rule: [layer names]}`` for ``model``: what QAT will quantize and what stays float."""
    out: dict = {}
    for layer in model.layers:
        out.setdefault(rule(layer), []).append(layer.name)
    return out


def annotate(model):
    """A copy of ``model`` with every layer annotated per :func:`rule` (weights shared with ``model``)."""
    def clone(layer):
        kind = rule(layer)
        if kind == "registry":
            return _q.quantize_annotate_layer(layer)
        if kind in _CONFIGS:
            return _q.quantize_annotate_layer(layer, quantize_config=_CONFIGS[kind]())
        return layer

    return keras.models.clone_model(model, clone_function=clone)


def scope():
    """``quantize_scope`` knowing the package's custom layers and QuantizeConfigs (to build or load QAT models)."""
    objects = {c.__name__: c for c in _CONFIGS.values()}
    objects.update({c.__name__: c for c in (tfa_layers.SoftArgmax, tfa_layers.SpatialSoftmax, tfa_layers.GroupConv2D,
                                            tfa_layers.PointPatches, tfa_layers.BilinearSample)})
    objects.update({n: c for n, c in _mobile_layers().items() if c is not None})
    return _q.quantize_scope(objects)


def quantize_model(model):
    """The quantization-aware copy of ``model`` (fake-quant nodes per :data:`rule`), weights copied.

    Output structure is kept (a dict of outputs stays a dict), so the architecture's loss and the trainer work
    on it unchanged.
    """
    annotated = annotate(model)
    with scope():
        return _q.quantize_apply(annotated)


__all__ = ["NoOpQuantizeConfig", "FloatQuantizeConfig", "OutputQuantizeConfig", "GroupConvQuantizeConfig", "rule", "coverage", "annotate", "scope", "quantize_model"]
