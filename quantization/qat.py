"""Quantization-aware training (tfmot) that covers the package's own layers.

``tfmot.quantization.keras.quantize_model`` refuses models with custom layers (and the known gaps for
soft-argmax, point sampling and resizing: tensorflow/model-optimization #372, #602). Here every layer is annotated
individually (``quantize_annotate_layer``) and the model is quantized with ``quantize_apply`` inside
``quantize_scope``; what each layer gets is decided by :func:`rule`:

=============================================  =================================================================
layer                                           QAT treatment
=============================================  =================================================================
Conv2D, DepthwiseConv2D, Dense, BN, ReLU, ...  tfmot's default 8-bit registry (Conv+BN folding, per-channel)
BN not after a convolution                      :class:`OutputQuantizeConfig` (pre-activation blocks: MUL/ADD int8)
``SeparableConv2D``                             annotated for tfmot's layout transform (→ depthwise + 1 × 1 conv)
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
``DeformableConv2D``                            :class:`DeformableQuantizeConfig`: 8-bit combining matrix and output;
                                                offsets and samples calibrated at conversion (:func:`convert`)
``StopGradient``, ``ReplicateChannels``         :class:`NoOpQuantizeConfig`: identity, channel tiling
soft-argmax family (``SoftArgmax``,             :class:`FloatQuantizeConfig`: left float on purpose. A softmax over
``SpatialSoftmax``, ``SumSoftArgmax``,          H·W cells has int8 output scale 1/256 (the map collapses) and an
``RefineOffset``, ``PIPDecode``)                8-bit coordinate is a 1/255 grid (../shared/STACK.md); in TFLite the
                                                heatmaps are dequantized once and the expectation runs in float, as
                                                in the PTQ export (``keep_float_in_int8``); the converter quantizes
                                                a softmax regardless, so :func:`convert` rewrites these layers' ops
                                                to float (:func:`float_layers`)
any layer with ``keep_float_in_int8 = True``     float, like in the PTQ export (``presets.keeps_float``), e.g. the
                                                two-stage model's ``RoIAlign``
anything else                                   left float (not annotated), listed by :func:`coverage`
=============================================  =================================================================

The QAT model trains with the shared trainer (:func:`quantization.pruning.fine_tune`) and converts with
:func:`convert` (``presets.for_qat()`` + :func:`float_layers` + :func:`float_islands`).

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


class DeformableQuantizeConfig(OutputQuantizeConfig):
    """``DeformableConv2D``: its combining matrix (most of its weights and MACs) gets tfmot's 8-bit kernel
    quantizer for ``Dense`` (symmetric, per tensor), its output an 8-bit range, so the int8 model's next
    convolution reads the range QAT trained. The offset convolution is left to calibration: its output is
    sampling coordinates, and the sampled values, offsets and the matmul's input are tensors inside the layer
    that no fake-quant can reach, so :func:`convert` calibrates them (:func:`calibrated_inside`)."""

    calibrates_inside = True

    def get_weights_and_quantizers(self, layer):
        return [(layer.combine.kernel, _q.quantizers.LastValueQuantizer(num_bits=8, per_axis=False, symmetric=True,
                                                                        narrow_range=True))]

    def set_quantize_weights(self, layer, quantize_weights):
        layer.combine.kernel = quantize_weights[0]


_CONFIGS = {"output": OutputQuantizeConfig, "groupconv": GroupConvQuantizeConfig, "noop": NoOpQuantizeConfig,
            "float": FloatQuantizeConfig, "deformable": DeformableQuantizeConfig}


def _mobile_layers():
    # Custom layers of the architectures, found by registered name so quantization/ needs no model imports.
    get = keras.utils.get_registered_object
    return {n: get(f"tfalign>{n}") for n in ("SumSoftArgmax", "RefineOffset", "StopGradient", "PatchesToGroups",
                                               "PIPDecode", "HardSwish", "HardSigmoid")}


def rule(layer, foldable=None) -> str:
    """Which treatment ``layer`` gets: ``registry`` | ``output`` | ``groupconv`` | ``deformable`` | ``noop`` |
    ``float`` | ``none``.

    ``foldable``: names of the BatchNormalization layers tfmot folds into their convolution (:func:`foldable_norms`
    of the model being quantized); without it a BN counts as foldable when it directly follows a convolution.
    """
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
    if isinstance(layer, custom.get("StopGradient") or ()) or getattr(layer, "repeats_channels", None):
        return "noop"  # identity / channel tiling (dense U-Net's ReplicateChannels): values and scale unchanged
    if isinstance(layer, tfa_layers.DeformableConv2D):
        return "deformable"
    if isinstance(layer, _L.InputLayer):
        return "none"
    if isinstance(layer, _L.SeparableConv2D):
        return "registry"  # not in tfmot's registry, but its layout transform splits it into depthwise + 1 × 1
    if isinstance(layer, _L.BatchNormalization):
        # After a convolution quantize_apply's transforms fold it into the kernel; a pre-activation BN (dense
        # U-Net's blocks: BN → ReLU → conv) has nothing to fold into and tfmot refuses it: its output is quantized.
        folds = _follows_conv(layer) if foldable is None else layer.name in foldable
        return "registry" if folds else "output"
    if registry.Default8BitQuantizeRegistry().supports(layer):
        return "registry"
    if isinstance(layer, (_L.Multiply, _L.Rescaling)) or getattr(layer, "elementwise", False):
        return "output"
    # TFOpLambda (tensor operators, e.g. MobileNetV3's hard-swish ``relu6(x + 3) * (1/6)``) stays float: tfmot's
    # quantize_apply cannot re-clone an annotated TFOpLambda (its input arrives as a list; tests/test_qat.py).
    return "none"


def _foldable_conv(layer) -> bool:
    return isinstance(layer, (_L.Conv2D, _L.DepthwiseConv2D)) and getattr(layer, "groups", 1) == 1


def _follows_conv(layer) -> bool:
    nodes = getattr(layer, "_inbound_nodes", [])
    if len(nodes) != 1:
        return False
    inbound = nodes[0].inbound_layers
    inbound = inbound if not isinstance(inbound, (list, tuple)) else (inbound[0] if len(inbound) == 1 else None)
    return _foldable_conv(inbound) and len(getattr(inbound, "_outbound_nodes", [])) == 1


def foldable_norms(model) -> set:
    """BatchNormalization layers of ``model`` that directly follow a convolution read by nothing else: tfmot's
    Conv+BN transforms fold exactly these. Counted on ``model``'s own graph, since a layer also used in another
    model (a distillation teacher, a stripped pruning copy) has nodes there too."""
    inbound, readers = {}, {}
    for nodes in model._nodes_by_depth.values():
        for node in nodes:
            parents = node.inbound_layers
            parents = list(parents) if isinstance(parents, (list, tuple)) else [parents]
            inbound[node.layer.name] = parents
            for p in parents:
                readers[p.name] = readers.get(p.name, 0) + 1
    return {layer.name for layer in model.layers if isinstance(layer, _L.BatchNormalization)
            and len(inbound.get(layer.name, [])) == 1 and _foldable_conv(inbound[layer.name][0])
            and readers.get(inbound[layer.name][0].name) == 1}


def _float_island_layer(layer) -> bool:
    # Layers QAT fake-quantizes (so the convolution after them gets an int8 input) but whose int8 TFLite kernel is
    # slow: convert() turns their int8 op back into dequantize → float op → quantize (float_islands).
    return bool(getattr(layer, "keep_float_in_int8", False)) and bool(getattr(layer, "elementwise", False))


def _builtin_code(operator_code) -> int:
    # Codes above 127 live only in builtinCode; older files hold small ones only in deprecatedBuiltinCode.
    return max(operator_code.builtinCode, operator_code.deprecatedBuiltinCode)


def _opcode_index(codes, code: int) -> int:
    """Index of builtin ``code`` in a model's operator-code table, appended (version 1) when missing."""
    from tensorflow.lite.python import schema_py_generated as schema

    for i, c in enumerate(codes):
        if _builtin_code(c) == code:
            return i
    c = schema.OperatorCodeT()
    c.builtinCode, c.deprecatedBuiltinCode, c.version = code, min(code, 127), 1
    codes.append(c)
    return len(codes) - 1


def _float_tensor(model, sub, src, suffix: str, data=None) -> int:
    """Append a float32 tensor shaped like ``src`` to subgraph ``sub``: an activation, or a constant holding
    ``data``. Returns its index."""
    import numpy as np
    from tensorflow.lite.python import schema_py_generated as schema

    f = schema.TensorT()
    f.shape, f.shapeSignature, f.type = src.shape, src.shapeSignature, schema.TensorType.FLOAT32
    f.name = (src.name.decode() if isinstance(src.name, bytes) else str(src.name)) + suffix
    f.buffer = 0  # the empty buffer: an activation
    if data is not None:
        b = schema.BufferT()
        b.data = np.frombuffer(np.ascontiguousarray(data, np.float32).tobytes(), np.uint8)
        model.buffers.append(b)
        f.buffer = len(model.buffers) - 1
    sub.tensors.append(f)
    return len(sub.tensors) - 1


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
        return _builtin_code(codes[op.opcodeIndex])

    def opcode(code: int) -> int:
        return _opcode_index(codes, code)

    integer = (schema.TensorType.INT8, schema.TensorType.UINT8)
    for sub in model.subgraphs:
        rewritten = []
        for op in sub.operators:
            if code_of(op) not in targets or len(op.inputs) != 1 or len(op.outputs) != 1 or any(
                    sub.tensors[t].type not in integer for t in (op.inputs[0], op.outputs[0])):
                rewritten.append(op)
                continue
            floats = [_float_tensor(model, sub, sub.tensors[t], "/float") for t in (op.inputs[0], op.outputs[0])]
            deq, quant = schema.OperatorT(), schema.OperatorT()
            deq.opcodeIndex, deq.inputs, deq.outputs = opcode(builtin.DEQUANTIZE), [op.inputs[0]], [floats[0]]
            quant.opcodeIndex, quant.inputs, quant.outputs = opcode(builtin.QUANTIZE), [floats[1]], [op.outputs[0]]
            op.inputs, op.outputs = [floats[0]], [floats[1]]
            rewritten += [deq, op, quant]
        sub.operators = rewritten
    return bytes(fb.convert_object_to_bytearray(model))


# Ops that only move or select values: exact in int8, so they are made float only when everything they read is.
_MOVERS = ("RESHAPE", "TRANSPOSE", "CONCATENATION", "STRIDED_SLICE", "SLICE", "SQUEEZE", "EXPAND_DIMS", "PACK",
           "UNPACK", "GATHER", "GATHER_ND", "SPLIT", "SPLIT_V")


def float_layers(model_bytes: bytes, model) -> bytes:
    """Run the ops of ``model``'s float-kept layers (rule ``float``: the soft-argmax family, ``keep_float_in_int8``)
    in float, as the PTQ export's denylist does.

    The QAT converter has no denylist: a softmax whose input carries a fake-quant range becomes an int8 SOFTMAX
    (fixed output scale 1/256: a map over thousands of cells rounds to 0) and the soft-argmax FULLY_CONNECTED after
    it int8 too, whatever the layer's QuantizeConfig says (DeCaFA's QAT export output all-zero points). Each int8
    op attributed to such a layer (``mobile_export.tflite.op_scopes``, as the PTQ denylist) is
    rewritten to float: int8 activations it reads get a DEQUANTIZE, int8 constants (weights, bias) are dequantized
    in place, its outputs become float and get a QUANTIZE only where an int8 op still reads them. Value-moving ops
    (reshape, transpose, slice...) after it follow when all they read is float, and a DEQUANTIZE of a float
    result is dropped, so the points leave the model at float precision.
    """
    import numpy as np
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils as fb

    from mobile_export.tflite import op_scopes  # the same op → layer attribution as the PTQ denylist

    names, keep = set(), set()
    for layer in model.submodules:
        if not isinstance(layer, keras.layers.Layer):
            continue
        names.add(layer.name)
        inner = getattr(layer, "layer", layer)  # tfmot's QuantizeWrapper "quant_x" around layer x
        if inner is not layer and not isinstance(inner, keras.layers.Layer):
            continue
        if rule(inner) == "float":
            keep.update({layer.name, inner.name})
    if not keep:
        return model_bytes
    builtin = schema.BuiltinOperator
    op_names = {v: k for k, v in vars(builtin).items() if not k.startswith("_")}
    fbm = fb.read_model_from_bytearray(bytearray(model_bytes))
    codes, sub = fbm.operatorCodes, fbm.subgraphs[0]
    integer = (schema.TensorType.INT8, schema.TensorType.UINT8, schema.TensorType.INT16)
    np_type = {schema.TensorType.INT8: np.int8, schema.TensorType.UINT8: np.uint8,
               schema.TensorType.INT16: np.int16, schema.TensorType.INT32: np.int32}

    def kind(op) -> str:
        return op_names.get(_builtin_code(codes[op.opcodeIndex]), "")

    def opcode(code: int) -> int:
        return _opcode_index(codes, code)

    def tname(t) -> str:
        n = sub.tensors[t].name
        return n.decode() if isinstance(n, bytes) else str(n)

    def constant(t) -> bool:
        buf = fbm.buffers[sub.tensors[t].buffer]
        return buf.data is not None and len(buf.data) > 0

    def quantized(t) -> bool:
        q = sub.tensors[t].quantization
        return q is not None and q.scale is not None and len(q.scale) > 0

    def new_float_tensor(src, suffix, data=None) -> int:
        return _float_tensor(fbm, sub, src, suffix, data)

    def dequantized_constant(t) -> int:
        src = sub.tensors[t]
        q = src.quantization
        raw = np.frombuffer(bytes(bytearray(fbm.buffers[src.buffer].data)), np_type[src.type])
        values = raw.reshape([int(d) for d in src.shape]) if src.shape is not None and len(src.shape) else raw
        scale, zero = np.asarray(q.scale, np.float32), np.asarray(q.zeroPoint if q.zeroPoint is not None else [0])
        if scale.size > 1:  # per-channel along quantizedDimension
            shape = [1] * values.ndim
            shape[q.quantizedDimension] = scale.size
            scale, zero = scale.reshape(shape), zero.reshape(shape) if zero.size > 1 else zero
        return new_float_tensor(src, "/dequantized", (values.astype(np.float32) - zero) * scale)

    readers, quantized_from = {}, {}
    for i, op in enumerate(sub.operators):
        for t in op.inputs:
            if t >= 0:
                readers.setdefault(t, []).append(i)
        # An int8 tensor the converter quantized from a float one (a float softmax's 1/256-step output): float
        # readers take the float original, not a quantize → dequantize round trip.
        if kind(op) == "QUANTIZE" and sub.tensors[op.inputs[0]].type == schema.TensorType.FLOAT32:
            quantized_from[op.outputs[0]] = op.inputs[0]
    graph_outputs = set(sub.outputs)
    float_of, alias, rewritten, changed = {}, {}, [], False
    targets = set()
    scopes = op_scopes(sub, [tname(t) for t in range(len(sub.tensors))], names)
    for i, (op, scope) in enumerate(zip(sub.operators, scopes)):
        if scope in keep and kind(op) not in _MOVERS and kind(op) not in ("QUANTIZE", "DEQUANTIZE") and any(
                sub.tensors[t].type in integer for t in list(op.inputs) + list(op.outputs) if t >= 0):
            targets.add(i)
    for i, op in enumerate(sub.operators):
        op.inputs = [alias.get(t, t) for t in op.inputs]
        acts = [t for t in op.inputs if t >= 0 and not constant(t)]
        if kind(op) == "DEQUANTIZE" and acts and all(t in float_of for t in acts):
            alias[op.outputs[0]] = float_of[acts[0]]  # already float: readers take the float tensor directly
            changed = True
            continue
        follow = (kind(op) in _MOVERS and acts and all(t in float_of for t in acts)
                  and all(sub.tensors[t].type in integer for t in op.outputs))
        if i not in targets and not follow:
            rewritten.append(op)
            continue
        changed = True
        inputs = []
        for t in op.inputs:
            if t < 0 or (sub.tensors[t].type not in integer and not (
                    sub.tensors[t].type == schema.TensorType.INT32 and quantized(t) and constant(t))):
                inputs.append(t)  # float tensors, int32 shapes/indices
            elif t in float_of:
                inputs.append(float_of[t])
            elif t in quantized_from:
                float_of[t] = quantized_from[t]
                inputs.append(float_of[t])
            elif constant(t):
                inputs.append(dequantized_constant(t))
            else:
                f = new_float_tensor(sub.tensors[t], "/float")
                deq = schema.OperatorT()
                deq.opcodeIndex, deq.inputs, deq.outputs = opcode(builtin.DEQUANTIZE), [t], [f]
                rewritten.append(deq)
                float_of[t] = f
                inputs.append(f)
        op.inputs = inputs
        outputs, requantize = [], []
        for t in op.outputs:
            if sub.tensors[t].type not in integer:
                outputs.append(t)
                continue
            f = new_float_tensor(sub.tensors[t], "/float")
            float_of[t] = f
            outputs.append(f)
            requantize.append((f, t))
        op.outputs = outputs
        rewritten.append(op)
        for f, t in requantize:
            # Still read as int8 by an op that stays int8 (or a graph output): quantize back with the same scale.
            if t in graph_outputs or any(r not in targets for r in readers.get(t, [])):
                quant = schema.OperatorT()
                quant.opcodeIndex, quant.inputs, quant.outputs = opcode(builtin.QUANTIZE), [f], [t]
                rewritten.append(quant)
    if not changed:
        return model_bytes
    sub.operators = rewritten
    sub.outputs = [alias.get(t, t) for t in sub.outputs]
    # A QUANTIZE whose int8 result nobody reads any more (its readers were all made float) is dead weight.
    read = {t for op in sub.operators for t in op.inputs} | set(sub.outputs)
    sub.operators = [op for op in sub.operators if not (kind(op) == "QUANTIZE" and op.outputs[0] not in read)]
    return bytes(fb.convert_object_to_bytearray(fbm))


def convert(model, io_dtype: str = "float32", representative=None) -> bytes:
    """The int8 ``.tflite`` of a QAT model (``presets.for_qat``): float-kept layers run float
    (:func:`float_layers`), slow int8 ops made float islands (:func:`float_islands`).

    ``representative`` (calibration faces, as for PTQ): the layers QAT leaves float because no QuantizeConfig
    covers them (rule ``none``: Pose-Tree-MoE's expert stacks) and the tensors inside partly covered layers (the
    deformable convolution's offsets and samples, :func:`calibrated_inside`) are quantized too, with ranges
    calibrated on those faces, while every fake-quantized tensor keeps its trained range. Without it they stay
    float and the QAT model is only as fast as its covered part."""
    from mobile_export import tflite  # quantization ← mobile_export: imported only when converting
    if representative is not None and not uncovered(model) and not calibrated_inside(model):
        # Fully covered: the QAT converter's own path. The calibrated path would also re-derive the ranges of
        # tensors between fake-quant nodes (concatenations, the float RoIAlign's requantized output), and on the
        # two-stage model it measured no faster.
        representative = None
    data = tflite.convert(model, preset=presets.for_qat(io_dtype, representative))
    return float_islands(float_layers(data, model))


def uncovered(qat_model) -> list:
    """Names of the layers of a QAT model that compute without fake-quant nodes because no rule covers them
    (:func:`rule` ``none``: custom layers such as Pose-Tree-MoE's experts, the deformable convolution)."""
    from tensorflow_model_optimization.python.core.quantization.keras.quantize_layer import QuantizeLayer
    from tensorflow_model_optimization.python.core.quantization.keras.quantize_wrapper import QuantizeWrapper

    return [layer.name for layer in qat_model.layers
            if not isinstance(layer, (QuantizeWrapper, QuantizeLayer, _L.InputLayer)) and rule(layer) == "none"]


def calibrated_inside(qat_model) -> list:
    """Names of the QAT model's wrapped layers whose QuantizeConfig fake-quantizes weights and output only, leaving
    tensors inside the layer without a range (``calibrates_inside``: the deformable convolution)."""
    return [layer.layer.name for layer in qat_model.layers
            if getattr(getattr(layer, "quantize_config", None), "calibrates_inside", False)]


def coverage(model) -> dict:
    """``{rule: [layer names]}`` for ``model``: what QAT will quantize and what stays float."""
    out: dict = {}
    foldable = foldable_norms(model)
    for layer in model.layers:
        out.setdefault(rule(layer, foldable), []).append(layer.name)
    return out


def annotate(model):
    """A copy of ``model`` with every layer annotated per :func:`rule` (weights shared with ``model``)."""
    regrouped = {}

    foldable = foldable_norms(model)

    def clone(layer):
        kind = rule(layer, foldable)
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
                                            tfa_layers.PointPatches, tfa_layers.BilinearSample,
                                            tfa_layers.DeformableConv2D)})
    objects.update({n: c for n, c in _mobile_layers().items() if c is not None})
    return _q.quantize_scope(objects)


def _renamed(node, old: str, new: str):
    # Inbound-node / output-layer entries of a functional config are [layer_name, node_index, tensor_index, ...].
    if isinstance(node, list):
        if len(node) >= 3 and node[0] == old and isinstance(node[1], int):
            return [new] + node[1:]
        return [_renamed(n, old, new) for n in node]
    if isinstance(node, dict):
        return {k: _renamed(v, old, new) for k, v in node.items()}
    return node


def split_separable(model):
    """``model`` with every ``SeparableConv2D`` ``x`` as its two halves, ``DepthwiseConv2D`` ``x_dw`` then 1 × 1
    ``Conv2D`` ``x_pw`` (the same weights and outputs); ``model`` itself when it has none.

    tfmot's own layout transform makes the same split but names the halves ``depthwise_conv2d``/``conv2d``, so
    :func:`calibrate_ranges` found no float tensor for them (their ranges stayed at [-6, 6]), :func:`float_weights`
    no counterpart, and the pointwise half kept a fake-quant on its pre-BatchNorm output that the TFLite export
    folds away (the BN amplified that 8-bit noise: the dense U-Net's QAT model was 21 % worse than float before
    any training). Split here, the pointwise half is a plain convolution that tfmot folds with its BN.
    """
    seps = [layer for layer in model.layers if isinstance(layer, _L.SeparableConv2D)]
    if not seps:
        return model
    config = model.get_config()
    entries = []
    for entry in config["layers"]:
        if entry["class_name"] != "SeparableConv2D":
            entries.append(entry)
            continue
        c, name = entry["config"], entry["config"]["name"]
        dw = {"name": f"{name}_dw", "kernel_size": c["kernel_size"], "strides": c["strides"], "padding": c["padding"],
              "data_format": c["data_format"], "dilation_rate": c["dilation_rate"],
              "depth_multiplier": c.get("depth_multiplier", 1), "use_bias": False, "activation": "linear",
              "dtype": c.get("dtype", "float32")}
        pw = {"name": f"{name}_pw", "filters": c["filters"], "kernel_size": [1, 1], "padding": "valid",
              "data_format": c["data_format"], "use_bias": c["use_bias"], "activation": c["activation"],
              "dtype": c.get("dtype", "float32")}
        nodes = len(entry["inbound_nodes"])
        entries.append({"class_name": "DepthwiseConv2D", "config": dw, "name": dw["name"],
                        "inbound_nodes": entry["inbound_nodes"]})
        entries.append({"class_name": "Conv2D", "config": pw, "name": pw["name"],
                        "inbound_nodes": [[[dw["name"], i, 0, {}]] for i in range(nodes)]})
    for layer in seps:
        entries = [e if e["name"] == f"{layer.name}_pw" else
                   {**e, "inbound_nodes": _renamed(e["inbound_nodes"], layer.name, f"{layer.name}_pw")}
                   for e in entries]
        config["output_layers"] = _renamed(config["output_layers"], layer.name, f"{layer.name}_pw")
    config["layers"] = entries
    split = keras.Model.from_config(config)  # the package's layers are registered (tfalign._keras.register)
    by_name = {layer.name: layer for layer in model.layers}
    for layer in split.layers:
        if layer.name in by_name:
            layer.set_weights(by_name[layer.name].get_weights())
    for layer in seps:
        split.get_layer(f"{layer.name}_dw").set_weights([layer.depthwise_kernel.numpy()])
        split.get_layer(f"{layer.name}_pw").set_weights(
            [layer.pointwise_kernel.numpy()] + ([layer.bias.numpy()] if layer.use_bias else []))
    return split


def init_weight_ranges(qat_model) -> int:
    """Set every weight quantizer's range from its weight, as tfmot's last-value quantizers do on each training
    step: until that first step they hold [-6, 6], and a model evaluated or exported before training rounded
    kernels of ±0.2 to {-0.047, 0, 0.047}. Returns how many weights were set."""
    count = 0
    for layer in qat_model.layers:
        for weight, quantizer, variables in getattr(layer, "_weight_vars", []):
            quantizer(weight, True, weights=variables)
            count += 1
    return count


def quantize_model(model, calibration=None, freeze_bn: bool = False):
    """The quantization-aware copy of ``model`` (fake-quant nodes per :data:`rule`), weights copied.

    Output structure is kept (a dict of outputs stays a dict), so the architecture's loss and the trainer work
    on it unchanged. Separable convolutions become their depthwise and pointwise halves (:func:`split_separable`),
    weight ranges start at the weights' own (:func:`init_weight_ranges`). ``calibration``: input batches (an
    iterable of arrays) that set every activation range before training starts (:func:`calibrate_ranges`);
    without them tfmot's ranges start at [-6, 6]. ``freeze_bn``: :func:`freeze_batch_norms`.
    """
    model = split_separable(model)
    annotated = annotate(model)
    with scope():
        qat_model = _q.quantize_apply(annotated)
    init_weight_ranges(qat_model)
    if calibration is not None:
        calibrate_ranges(qat_model, model, calibration)
    if freeze_bn:
        freeze_batch_norms(qat_model)
    return qat_model


def freeze_batch_norms(model) -> int:
    """Make every batch normalization of ``model`` (inside QAT wrappers and nested models too) normalize with its
    moving statistics, which then stay where the float training left them; returns how many.

    A QAT fine-tune runs a few hundred steps at a small batch: batch statistics of 8 faces are noisy, each step
    moves the moving averages towards them, and the converted model folds whatever those averages ended at into
    its int8 kernels. Jacob et al. 2018 (§3.2, "batch normalization folding") freeze the statistics for the same
    reason. A non-trainable Keras BatchNormalization runs in inference mode; its γ and β go on training when it
    sits in a tfmot ``QuantizeWrapperV2`` (every BN of a :func:`quantize_model` copy: the wrapper keeps the
    wrapped layer's weights in its own trainable list) and are frozen with it otherwise."""
    count = 0
    for layer in model.layers:
        bn = getattr(layer, "layer", layer)  # a QuantizeWrapper's wrapped layer, or the layer itself
        if isinstance(bn, _L.BatchNormalization):
            bn.trainable = False
            count += 1
        elif isinstance(layer, keras.Model):
            count += freeze_batch_norms(layer)
    return count


def calibrate_ranges(qat_model, model, batches) -> dict:
    """Start every activation range of ``qat_model`` where ``model``'s own tensors are on ``batches``.

    tfmot's moving-average quantizers start at [-6, 6] and move with decay 0.999: after the few hundred steps of a
    QAT fine-tune a tensor that spans ±20 (pre-activation BN outputs, heatmap logits) is still clipped at ±6, and
    a ReLU output wastes half its 256 steps on negatives. Each range is set to the min and max over ``batches`` of
    the float model's tensor that the quantizer sees (layer ``x`` ↔ wrapper ``quant_x``;
    a QuantizeLayer reads the tensor of the layer before it), always including 0. Returns ``{layer: (lo, hi)}``.
    """
    import numpy as np
    from tensorflow_model_optimization.python.core.quantization.keras.quantize_layer import QuantizeLayer

    targets = {}
    for layer in qat_model.layers:
        found = {w.name.split("/")[-1].split(":")[0]: w for w in layer.weights}
        if isinstance(layer, QuantizeLayer):  # its range variables are named after the layer (quantize_layer_1_min)
            inbound = layer._inbound_nodes[0].inbound_layers  # qat_model was just built: one node
            inbound = inbound[0] if isinstance(inbound, (list, tuple)) else inbound
            source = getattr(inbound, "layer", inbound).name
            targets.setdefault(source, []).append((found[f"{layer.name}_min"], found[f"{layer.name}_max"]))
        inner = getattr(layer, "layer", None)
        for kind in ("output", "post_activation"):
            if inner is not None and f"{kind}_min" in found:
                targets.setdefault(inner.name, []).append((found[f"{kind}_min"], found[f"{kind}_max"]))
    names, tensors = [], []
    for name in targets:
        try:
            layer = model.get_layer(name)
        except ValueError:
            continue
        try:
            out = layer.output
        except AttributeError:  # used in several graphs: the model's own is its first node
            out = layer.get_output_at(0)
        if not isinstance(out, (list, tuple, dict)):
            names.append(name)
            tensors.append(out)
    if not names:
        return {}
    probe = keras.Model(model.inputs, tensors)
    lows, highs = [], []
    for batch in batches:
        outs = probe(batch, training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        lows.append([float(np.min(o)) for o in outs])
        highs.append([float(np.max(o)) for o in outs])
    if not lows:
        raise ValueError("calibrate_ranges: no calibration batches")
    lo, hi = np.min(lows, axis=0), np.max(highs, axis=0)  # as the PTQ converter's calibration: all batches
    ranges = {}
    for name, a, b in zip(names, lo, hi):
        a, b = min(float(a), 0.0), max(float(b), 0.0)
        if b - a < 1e-6:
            continue
        for vmin, vmax in targets[name]:
            vmin.assign(a)
            vmax.assign(b)
        ranges[name] = (a, b)
    return ranges


__all__ = ["NoOpQuantizeConfig", "FloatQuantizeConfig", "OutputQuantizeConfig", "GroupConvQuantizeConfig",
           "DeformableQuantizeConfig", "rule", "coverage", "uncovered", "calibrated_inside", "foldable_norms",
           "annotate", "scope", "quantize_model", "freeze_batch_norms", "calibrate_ranges", "split_separable",
           "init_weight_ranges", "float_layers", "float_islands", "convert", "float_weights", "main"]


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
        if isinstance(layer, _L.SeparableConv2D) and layer.name not in wrappers:  # trained as split_separable's halves
            halves = [wrappers.get(f"{layer.name}_{h}") for h in ("dw", "pw")]
            if None in halves:
                raise ValueError(f"float_weights: separable layer '{layer.name}' has no _dw/_pw halves in the QAT "
                                 "model")
            found = {short(v): v for half in halves for v in half.weights}
            names = {"depthwise_kernel": "depthwise_kernel", "pointwise_kernel": "kernel", "bias": "bias"}
            layer.set_weights([found[names[short(w)]].numpy() for w in layer.weights])
            continue
        if layer.name not in wrappers:
            raise ValueError(f"float_weights: layer '{layer.name}' has no counterpart in the QAT model")
        # The wrapper holds the inner layer's variables (the kernel is swapped for its fake-quantized tensor, so
        # the inner layer no longer lists it) next to the quantizers' own (kernel_min, optimizer_step...): match
        # by variable name and shape, in order, since a layer with sublayers (DeformableConv2D's offset
        # convolution and combining matrix) has two variables named "kernel".
        found: dict = {}
        for v in wrappers[layer.name].weights:
            found.setdefault((short(v), tuple(v.shape)), []).append(v)
        values, missing = [], []
        for w in layer.weights:
            same = found.get((short(w), tuple(w.shape)))
            if same:
                values.append(same.pop(0).numpy())
            else:
                missing.append(short(w))
        if missing:
            raise ValueError(f"float_weights: QAT layer '{wrappers[layer.name].name}' has no {missing}")
        layer.set_weights(values)
    return model


_CLI_DOC = """Quantization-aware training of a trained tfalign model: ``python -m quantization.qat``.

The model is copied with tfmot fake-quant nodes (quantization.qat rules: the package's own layers included), its
activation ranges set from --calibration-size --data faces, fine-tuned through the trainer at a low learning
rate, and converted to a full-integer TFLite (the soft-argmax family and MobileNetV3's HARD_SWISH stay float, as
in the PTQ export; layers QAT cannot wrap are quantized with ranges calibrated on the same faces unless
--uncovered float). OUT receives:
  <model>_qat_int8.tflite   the QAT int8 model (float input/output unless --io-dtype)
  best.weights.h5, config.json
                            a run folder with the QAT-trained *float* weights (fake-quant removed) of the last epoch:
                            python -m tfalign.export --model-dir OUT --quantize int8 --calibration SPEC
                            re-quantizes them with calibrated ranges (PTQ of the QAT-adapted weights)

Example:
  python -m quantization.qat --model mobile_two_stage --data 300w:../shared/data/lfpw/trainset#train \\
      --val 300w:../shared/data/lfpw/trainset#val --epochs 3 --lr 2e-5 --out runs/m2s_qat
  # the float model as teacher and frozen batch-norm statistics (dense_unet_w64: +3.2 % → +1.6 % NME as int8)
  python -m quantization.qat --model dense_unet_w64 --data 300w:../shared/data/lfpw/trainset#train \\
      --val 300w:../shared/data/lfpw/trainset#val --epochs 3 --steps 15 --batch-size 8 --lr 2e-5 \\
      --distill 1 --distill-outputs heatmaps1,heatmaps2 --freeze-bn --out runs/w64_qat
"""


def _run(argv) -> int:
    import os

    from quantization import cli, pruning
    from tfalign.io import atomic_write

    p = cli.parser("python -m quantization.qat", _CLI_DOC, epochs=3, lr=2e-5)
    p.add_argument("--io-dtype", choices=("float32", "int8", "uint8"), default="float32",
                   help="TFLite input/output tensor type (default float32)")
    p.add_argument("--calibration-size", type=int, default=32, metavar="N",
                   help="--data faces that set the activation ranges before fine-tuning (default 32; 0: tfmot's "
                        "[-6, 6] start)")
    p.add_argument("--uncovered", choices=("calibrate", "float"), default="calibrate",
                   help="layers QAT has no QuantizeConfig for (qat.uncovered, e.g. Pose-Tree-MoE's experts) "
                        "and the tensors inside partly covered ones (qat.calibrated_inside: the deformable "
                        "convolution's offsets and samples): 'calibrate' quantizes them in the .tflite with ranges "
                        "from --calibration-size --data faces (as PTQ; the fake-quantized tensors keep their trained "
                        "ranges), 'float' leaves them float (default calibrate)")
    p.add_argument("--freeze-bn", action="store_true",
                   help="batch normalizations normalize with their moving statistics, which stay as the float "
                        "training left them (qat.freeze_batch_norms: small-batch statistics otherwise move what is "
                        "folded into the int8 kernels; γ and β still train; default: statistics update)")
    cli.add_distill(p, "fine-tune with the float model as teacher, adding W x the distance between the "
                       "fake-quantized and the float model's outputs")
    args = p.parse_args(argv)
    cli.check(p, args)
    cli.check_distill(p, args)
    if args.freeze_bn and args.epochs == 0:
        p.error("--freeze-bn: needs --epochs > 0 (it acts on the fine-tune)")
    if args.calibration_size < 0:
        p.error(f"--calibration-size must be >= 0, got {args.calibration_size}")
    if args.uncovered == "calibrate" and not args.calibration_size:
        p.error("--uncovered calibrate needs calibration faces: --calibration-size > 0 (or --uncovered float)")
    arch, config, base, source = cli.load(args)
    run = cli.run_settings(args, arch, config)
    batches = None
    if args.calibration_size and args.data:
        from quantization.calibration import calibration_batches
        batches = calibration_batches(config.input, args.data, args.calibration_size)
    teach = {}
    if args.epochs:
        from quantization import distill
        build, teach = distill.builder(base, base, args.distill, outputs=args.distill_outputs,
                                       match=distill.architecture_match(arch, config),
                                       prepare=lambda m: quantize_model(m, batches, freeze_bn=args.freeze_bn))
        trained, _ = pruning.fine_tune(build, run, args.out)
        qmodel = distill.student_of(trained)
    else:
        qmodel = quantize_model(base, batches)
    name = args.model or arch.name
    representative = None
    if args.uncovered == "calibrate" and batches is not None:
        from quantization.calibration import representative_from
        representative = representative_from(batches)  # the faces that set the ranges, not read again
    data = convert(arch.inference_model(config, qmodel), io_dtype=args.io_dtype, representative=representative)
    os.makedirs(args.out, exist_ok=True)
    path = atomic_write(os.path.join(args.out, f"{name}_qat_int8.tflite"), data)
    plain = float_weights(qmodel, arch.build(config))
    cli.write_run(args.out, run, arch, plain, {"method": "qat", "start": source, "epochs": args.epochs,
                                               "lr": args.lr, "schedule": "cosine", "distill": teach,
                                               "freeze_bn": args.freeze_bn, "tflite": os.path.basename(path)})
    print(f"wrote {path} ({len(data)} bytes) and the run folder {args.out}")
    return 0


def main(argv=None) -> int:
    from quantization import cli
    return cli.main_guard(_run, "quantization.qat", argv)


if __name__ == "__main__":
    import sys
    sys.exit(main())
