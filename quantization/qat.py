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
                                                8-bit output (one int8 CONV_2D with groups in TFLite; the
                                                ``depthwise`` form is trained and converted as ``native``)
``PointPatches``, ``BilinearSample``            :class:`OutputQuantizeConfig`: the sampled values are an 8-bit
                                                tensor (int8 GATHER); the coordinates stay float (FLOOR, weights)
``UpSampling2D`` (bilinear), ``Multiply``,      :class:`OutputQuantizeConfig` (RESIZE_BILINEAR / MUL int8)
``Rescaling``
``HardSwish`` (MobileNetV3 backbone)            :class:`OutputQuantizeConfig`: int8 output for the next convolution;
                                                :func:`convert` makes its TFLite op a float island (LiteRT's int8
                                                HARD_SWISH is ~10x slower than dequantize + float + quantize)
``HardSigmoid`` (squeeze-excite gate)           :class:`OutputQuantizeConfig` (ADD/RELU6/MUL int8)
``TFOpLambda``                                  left float: an annotated TFOpLambda breaks ``quantize_apply``'s clone
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
:func:`convert` (``presets.for_qat()`` + :func:`float_islands`).

Example::

    qat_model = qat.quantize_model(trained_model)
    pruning.fine_tune(qat_model, run_settings, "runs/qat")
    tflite_bytes = qat.convert(arch.inference_model(config, qat_model))
"""
from __future__ import annotations

from quantization import presets
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
                                               "PIPDecode", "HardSwish", "HardSigmoid")}


def rule(layer) -> str:
    """Which treatment ``layer`` gets: ``registry`` | ``output`` | ``groupconv`` | ``noop`` | ``float`` | ``none``."""
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as registry)
    custom = _mobile_layers()
    if isinstance(layer, (tfa_layers.SoftArgmax, tfa_layers.SpatialSoftmax)) or any(
            c is not None and isinstance(layer, c) for n, c in custom.items()
            if n in ("SumSoftArgmax", "RefineOffset", "PIPDecode")):
        return "float"
    if _float_island_layer(layer):  # HardSwish: int8 in/out for its neighbours, float inside (float_islands)
        return "output"
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
    if isinstance(layer, (_L.Multiply, _L.Rescaling)) or getattr(layer, "elementwise", False):
        return "output"
    # TFOpLambda (tensor operators, e.g. MobileNetV3's hard-swish ``relu6(x + 3) * (1/6)``) stays float: tfmot's
    # quantize_apply cannot re-clone an annotated TFOpLambda (its input arrives as a list; tests/test_qat.py).
    return "none"


def _float_island_layer(layer) -> bool:
    # Layers QAT fake-quantizes (so the convolution after them gets an int8 input) but whose int8 TFLite kernel is
    # slow: convert() turns their int8 op back into dequantize → float op → quantize (float_islands).
    return bool(getattr(layer, "keep_float_in_int8", False)) and bool(getattr(layer, "elementwise", False))


def float_islands(model_bytes: bytes, ops=("HARD_SWISH",)) -> bytes:
    """Rewrite every int8/uint8 op of a type in ``ops`` as DEQUANTIZE → float op → QUANTIZE (same scales).

    The QAT converter quantizes an op whenever fake-quant ranges surround it, and has no per-op denylist (the PTQ
    export has one: ``mobile_export.tflite.float_nodes``). LiteRT 2.3 has no fast int8 HARD_SWISH: measured with
    1 thread, an int8 HARD_SWISH on 1M values costs ~12 ms, the float one with its two conversions well under
    1 ms (XNNPACK runs all three). The op's input/output int8 tensors and their scales are kept, so the graph
    around it is unchanged.
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils as fb

    builtin = schema.BuiltinOperator
    targets = set()
    for name in ops:
        if not hasattr(builtin, name):
            raise ValueError(f"ops: '{name}' is not a TFLite builtin operator")
        targets.add(getattr(builtin, name))
    model = fb.read_model_from_bytearray(bytearray(model_bytes))
    codes = model.operatorCodes

    def code_of(op) -> int:
        c = codes[op.opcodeIndex]
        return max(c.builtinCode, c.deprecatedBuiltinCode)

    def opcode(code: int) -> int:
        for i, c in enumerate(codes):
            if max(c.builtinCode, c.deprecatedBuiltinCode) == code:
                return i
        c = schema.OperatorCodeT()
        c.builtinCode, c.deprecatedBuiltinCode, c.version = code, min(code, 127), 1
        codes.append(c)
        return len(codes) - 1

    integer = (schema.TensorType.INT8, schema.TensorType.UINT8)
    for sub in model.subgraphs:
        rewritten = []
        for op in sub.operators:
            if code_of(op) not in targets or len(op.inputs) != 1 or len(op.outputs) != 1 or any(
                    sub.tensors[t].type not in integer for t in (op.inputs[0], op.outputs[0])):
                rewritten.append(op)
                continue
            floats = []
            for t in (op.inputs[0], op.outputs[0]):
                src, f = sub.tensors[t], schema.TensorT()
                f.shape, f.shapeSignature = src.shape, src.shapeSignature
                f.type, f.buffer = schema.TensorType.FLOAT32, 0  # buffer 0: the empty buffer (activations)
                f.name = (src.name.decode() if isinstance(src.name, bytes) else src.name) + "/float"
                sub.tensors.append(f)
                floats.append(len(sub.tensors) - 1)
            deq, quant = schema.OperatorT(), schema.OperatorT()
            deq.opcodeIndex, deq.inputs, deq.outputs = opcode(builtin.DEQUANTIZE), [op.inputs[0]], [floats[0]]
            quant.opcodeIndex, quant.inputs, quant.outputs = opcode(builtin.QUANTIZE), [floats[1]], [op.outputs[0]]
            op.inputs, op.outputs = [floats[0]], [floats[1]]
            rewritten += [deq, op, quant]
        sub.operators = rewritten
    return bytes(fb.convert_object_to_bytearray(model))


def convert(model, io_dtype: str = "float32") -> bytes:
    """The int8 ``.tflite`` of a QAT model (``presets.for_qat``), slow int8 ops made float islands."""
    from mobile_export import tflite  # quantization ← mobile_export: imported only when converting
    return float_islands(tflite.convert(model, preset=presets.for_qat(io_dtype)))


def coverage(model) -> dict:
    """``{rule: [layer names]}`` for ``model``: what QAT will quantize and what stays float."""
    out: dict = {}
    for layer in model.layers:
        out.setdefault(rule(layer), []).append(layer.name)
    return out


def annotate(model):
    """A copy of ``model`` with every layer annotated per :func:`rule` (weights shared with ``model``)."""
    regrouped = {}

    def clone(layer):
        kind = rule(layer)
        if kind == "groupconv" and layer.impl != "native":
            # The converter makes an int8 CONV_2D of a fake-quantized kernel that feeds the convolution directly;
            # the depthwise form's kernel is reordered first and its pre-sum output has no range, so both would
            # stay float. The grouped CONV_2D holds the same kernel, and in int8 it is as fast.
            regrouped[layer.name] = layer
            layer = tfa_layers.regrouped(layer, "native")
        if kind == "registry":
            return _q.quantize_annotate_layer(layer)
        if kind in _CONFIGS:
            return _q.quantize_annotate_layer(layer, quantize_config=_CONFIGS[kind]())
        return layer

    annotated = keras.models.clone_model(model, clone_function=clone)
    for wrapper in annotated.layers:  # annotation wrappers get their own names; the inner layer keeps its own
        inner = getattr(wrapper, "layer", wrapper)
        if inner.name in regrouped:
            inner.set_weights(regrouped[inner.name].get_weights())
    return annotated


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


__all__ = ["NoOpQuantizeConfig", "FloatQuantizeConfig", "OutputQuantizeConfig", "GroupConvQuantizeConfig", "rule",
           "coverage", "annotate", "scope", "quantize_model", "float_islands", "convert", "float_weights", "main"]


def float_weights(qat_model, model):
    """Copy the (quantization-aware trained) float weights of ``qat_model`` into ``model``, a plain model of the
    same architecture, layer by layer by name (tfmot wraps layer ``x`` as ``quant_x``; its ``.layer`` is ``x``).
    Returns ``model``."""
    def short(variable) -> str:  # "quant_conv1/conv1/kernel:0" -> "kernel"
        return variable.name.split(":")[0].split("/")[-1]

    wrappers = {getattr(layer, "layer", layer).name: layer for layer in qat_model.layers}
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in wrappers:
            raise ValueError(f"float_weights: layer '{layer.name}' has no counterpart in the QAT model")
        # The wrapper holds the inner layer's variables (the kernel is swapped for its fake-quantized tensor, so
        # the inner layer no longer lists it) next to the quantizers' own (kernel_min, optimizer_step...): match
        # by variable name.
        found = {short(v): v for v in wrappers[layer.name].weights}
        missing = [short(w) for w in layer.weights if short(w) not in found]
        if missing:
            raise ValueError(f"float_weights: QAT layer '{wrappers[layer.name].name}' has no {missing}")
        layer.set_weights([found[short(w)].numpy() for w in layer.weights])
    return model


_CLI_DOC = """Quantization-aware training of a trained tfalign model: ``python -m quantization.qat``.

The model is copied with tfmot fake-quant nodes (quantization.qat rules: the package's own layers included), fine-
tuned through the trainer at a low learning rate, and converted to a full-integer TFLite (the soft-argmax family
and MobileNetV3's HARD_SWISH stay float, as in the PTQ export). OUT receives:
  <model>_qat_int8.tflite   the QAT int8 model (float input/output unless --io-dtype)
  best.weights.h5, config.json
                            a run folder with the QAT-trained *float* weights (fake-quant removed) of the last epoch:
                            python -m tfalign.export --model-dir OUT --quantize int8 --calibration SPEC
                            re-quantizes them with calibrated ranges (PTQ of the QAT-adapted weights)

Example:
  python -m quantization.qat --model mobile_two_stage --data 300w:../shared/data/lfpw/trainset#train \\
      --val 300w:../shared/data/lfpw/trainset#val --epochs 3 --lr 2e-5 --out runs/m2s_qat
"""


def _run(argv) -> int:
    import os

    from quantization import cli, pruning
    from tfalign.io import atomic_write

    p = cli.parser("python -m quantization.qat", _CLI_DOC, epochs=3, lr=2e-5)
    p.add_argument("--io-dtype", choices=("float32", "int8", "uint8"), default="float32",
                   help="TFLite input/output tensor type (default float32)")
    args = p.parse_args(argv)
    cli.check(p, args)
    arch, config, base, source = cli.load(args)
    run = cli.run_settings(args, arch, config)
    if args.epochs:
        qmodel, _ = pruning.fine_tune(lambda: quantize_model(base), run, args.out)
    else:
        qmodel = quantize_model(base)
    name = args.model or arch.name
    data = convert(arch.inference_model(config, qmodel), io_dtype=args.io_dtype)
    os.makedirs(args.out, exist_ok=True)
    path = atomic_write(os.path.join(args.out, f"{name}_qat_int8.tflite"), data)
    plain = float_weights(qmodel, arch.build(config))
    cli.write_run(args.out, run, arch, plain, {"method": "qat", "start": source, "epochs": args.epochs,
                                               "lr": args.lr, "schedule": "cosine", "tflite": os.path.basename(path)})
    print(f"wrote {path} ({len(data)} bytes) and the run folder {args.out}")
    return 0


def main(argv=None) -> int:
    from quantization import cli
    return cli.main_guard(_run, "quantization.qat", argv)


if __name__ == "__main__":
    import sys
    sys.exit(main())
