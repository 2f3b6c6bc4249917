"""Keras inference model → ``.tflite`` bytes: builtin ops only, static batch 1, four quantization modes.

Modes (``quantize``):
    * ``none``: float32.
    * ``float16``: float16 weights, float32 compute where the delegate prefers it.
    * ``dynamic``: int8 weights, activations quantized on the fly (float32 I/O).
    * ``int8``: full-integer post-training quantization calibrated on a representative set, int8 or uint8 input
      (``io_dtype``). Layers whose maths int8 breaks — spatial softmaxes (:class:`SpatialSoftmax`, and
      :class:`SoftArgmax` with ``normalize="softmax"``: a softmax over thousands of cells has output scale 1/256,
      so most cells become 0 and the expected coordinate collapses; see ``../shared/STACK.md``) — stay float
      through the quantizer's node denylist (:func:`keeps_float`). When the landmark output is produced by such a layer it stays float32, which is also the
      more accurate choice: an 8-bit normalised coordinate is a 1/255-of-the-crop grid (1 px at 256).
      The policy is by layer *type*, not by model: any layer class can opt in with ``keep_float_in_int8 = True``.

Anything that would need Flex (SELECT_TF_OPS) or a custom op fails with :class:`ExportError` naming the
TensorFlow op and the Keras layer it came from: none of the interpreters the apps ship can run those models.
"""
from __future__ import annotations

import collections
import re
from typing import Callable, Iterable, Optional

import numpy as np

from tfalign._keras import keras, tf
from quantization.presets import keeps_float  # noqa: F401  (the int8 float-keep policy, shared with QAT)
from tfalign.layers import COORDINATE_SCOPE
from tfalign.runtime import METADATA_NAME

QUANTIZE_MODES = ("none", "float16", "dynamic", "int8", "qat")
IO_DTYPES = ("int8", "uint8")
# Ops that only move data between int8 and float: not counted when measuring int8 coverage.
_CAST_OPS = {"QUANTIZE", "DEQUANTIZE"}
_FLOAT_TYPES = {"FLOAT32", "FLOAT16", "FLOAT64"}
_QUANT_TYPES = {"INT8", "UINT8", "INT16"}


class ExportError(ValueError):
    """The model cannot be exported as asked; the message names the op/layer/argument and what to do."""


def static_function(model):
    """Concrete function of ``model`` with a static batch of 1 (the exported models' shape)."""
    if len(model.inputs) != 1:
        raise ExportError(f"model {model.name}: expected one image input, got {len(model.inputs)}")
    shape = [1] + [int(d) for d in model.inputs[0].shape[1:]]
    if any(d <= 0 for d in shape):
        raise ExportError(f"model {model.name}: input shape {model.inputs[0].shape} is not static")
    name = model.inputs[0].name.split(":")[0]
    fn = tf.function(lambda x: model(x, training=False))
    return fn.get_concrete_function(tf.TensorSpec(shape, tf.float32, name=name))


def convert(model, quantize: str = "none", representative: Optional[Callable[[], Iterable]] = None,
            io_dtype: str = "int8", preset=None) -> bytes:
    """Convert a single-input Keras model to TFLite bytes (builtin ops only).

    Args:
        model: functional Keras model (the architecture's ``inference_model``).
        quantize: one of :data:`QUANTIZE_MODES`.
        representative: for ``int8``, a callable returning an iterable of float32 arrays shaped like the input
            (batch 1); calibration data.
        io_dtype: for ``int8``: ``int8`` or ``uint8`` input (and output, where the output op is quantized).
        preset: a ``quantization.presets.QuantizationPreset`` instead of ``quantize``/``representative``/
            ``io_dtype`` (``for_qat()`` converts a quantization-aware-trained model).
    """
    from quantization import presets

    if preset is not None:
        quantize = {"float32": "none"}.get(preset.mode, preset.mode)
        representative = preset.representative
        io_dtype = preset.io_dtype if preset.io_dtype != "float32" else "int8"
    if quantize not in QUANTIZE_MODES:
        raise ExportError(f"--quantize: unknown mode '{quantize}' (choose from {', '.join(QUANTIZE_MODES)})")
    if io_dtype not in IO_DTYPES:
        raise ExportError(f"--io-dtype: unknown dtype '{io_dtype}' (choose from {', '.join(IO_DTYPES)})")
    if quantize == "int8" and representative is None:
        raise ExportError("int8 quantization needs calibration data (representative faces)")
    if preset is None:
        preset = presets.from_name(quantize, representative, io_dtype if quantize == "int8" else None)
    # A QAT model with calibration data: the fake-quant ranges are kept and the tensors without one (layers QAT
    # left float) get calibrated ranges, in the same selective path as PTQ.
    calibrate = quantize == "int8" or (quantize == "qat" and representative is not None)
    if quantize == "int8":
        from tfalign.layers import with_group_impl
        model = with_group_impl(model, "native")  # same outputs; a smaller int8 file (see with_group_impl)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([static_function(model)], model)
    # The converter settings of each mode live in quantization/presets.py, shared with QAT and the benchmarks.
    preset.configure(converter, [1] + list(model.inputs[0].shape[1:]))
    if calibrate:
        # Calibrate only, then quantize ourselves: the public converter cannot keep chosen nodes float.
        converter._experimental_calibrate_only = True  # noqa: SLF001 - the documented selective-quantization path
    try:
        result = converter.convert()
    except Exception as exc:  # ConverterError and friends: explain in terms of the user's layers
        raise _explain(exc, model) from None
    if calibrate:
        result = _quantize_calibrated(result, model, io_dtype if quantize == "int8" else preset.io_dtype)
    elif quantize == "qat" and preset.io_dtype != "float32":
        from tensorflow.lite.python import util as tfl_util
        dtype = tf.int8 if preset.io_dtype == "int8" else tf.uint8
        result = bytes(tfl_util.modify_model_io_type(result, dtype, dtype))
    check_builtin(result, model)
    return result


def _quantize_calibrated(calibrated: bytes, model, io_dtype: str) -> bytes:
    from tensorflow.lite.python import convert as tfl_convert
    from tensorflow.lite.python import util as tfl_util

    deny = float_nodes(calibrated, model)
    quantized = tfl_convert.mlir_quantize(calibrated, fully_quantize=False, denylisted_nodes=deny or None)
    if io_dtype == "float32":  # QAT models keep float I/O unless asked otherwise (presets.for_qat)
        return bytes(quantized)
    dtype = tf.int8 if io_dtype == "int8" else tf.uint8
    # A float output (produced by a float-kept layer) stays float32: modify_model_io_type leaves it alone.
    return bytes(tfl_util.modify_model_io_type(quantized, dtype, dtype))


def _layer_scopes(model) -> tuple[set, set, set]:
    """Names of all layers, of the layers that must stay float in int8, and of those whose sampling coordinates
    stay float (``float_coordinates_in_int8``; a QAT wrapper stands for the layer it wraps, whose scope it takes in
    the graph)."""
    names, keep, coords = set(), set(), set()
    for layer in model.submodules:
        if isinstance(layer, keras.layers.Layer):
            names.add(layer.name)
            if keeps_float(layer):
                keep.add(layer.name)
            if getattr(getattr(layer, "layer", layer), "float_coordinates_in_int8", False):
                coords.add(layer.name)
    return names, keep, coords


def _scope_of(tensor_name: str, names: set) -> Optional[str]:
    """The innermost Keras layer named in a TFLite tensor name such as ``model/soft_argmax/MatMul``.

    Layer names may hold "/" themselves (keras.applications: ``expanded_conv_6/depthwise``): runs of consecutive
    path parts are tried too. Unmatched, such ops inherited the scope of whatever fed them in ``float_nodes``, so a
    float-kept layer dragged the int8 convolutions after it into float.
    """
    found = None
    for name in tensor_name.split(";"):
        parts = name.split("/")
        for end in range(1, len(parts) + 1):
            for start in range(end):
                if "/".join(parts[start:end]) in names:
                    found = "/".join(parts[start:end])
                    break
    return found


# TensorFlow numbers a name scope entered twice in one layer: sample_coords, sample_coords_1, ...
_COORDINATES = re.compile(rf"/{COORDINATE_SCOPE}(_\d+)?/")


def float_nodes(calibrated: bytes, model) -> list:
    """Output tensor names of the ops that belong to float-kept layers (the quantizer's node denylist), and of the
    sampling-coordinate ops of layers with ``float_coordinates_in_int8`` (the deformable convolution).

    Ops are attributed to layers by the layer scope in their output tensor name; an op whose output was renamed
    (the graph output, ``StatefulPartitionedCall:0``) inherits the layer of the op that feeds it.
    """
    names, keep, coords = _layer_scopes(model)
    if not keep and not coords:
        return []
    sub, _, tensor_names = _graph(calibrated)
    deny = []
    for op, scope in zip(sub.operators, op_scopes(sub, tensor_names, names)):
        outputs = [tensor_names[t] for t in op.outputs]
        if scope in keep or (scope in coords and any(_COORDINATES.search(n) for n in outputs)):
            deny.extend(outputs)
    return deny


def op_scopes(sub, tensor_names, names: set) -> list:
    """The Keras layer each operator of subgraph ``sub`` belongs to (None when unknown), in operator order.

    By the layer scope in the op's output tensor names (:func:`_scope_of`); an op whose output was renamed (the
    graph output, ``StatefulPartitionedCall:0``) inherits the layer of the op that feeds it. Shared by the PTQ
    denylist (:func:`float_nodes`) and the QAT rewrite (``quantization.qat.float_layers``).
    """
    producer, scopes = {}, []
    for op_index, op in enumerate(sub.operators):
        for t in op.outputs:
            producer[t] = op_index
    for op in sub.operators:
        scope = next((s for s in (_scope_of(tensor_names[t], names) for t in op.outputs) if s), None)
        if scope is None:
            fed = [scopes[producer[t]] for t in op.inputs if t >= 0 and producer.get(t, len(scopes)) < len(scopes)]
            scope = next((s for s in fed if s), None)
        scopes.append(scope)
    return scopes


def _graph(model_bytes: bytes):
    from tensorflow.lite.tools import flatbuffer_utils

    obj = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    sub = obj.subgraphs[0]
    names = [t.name.decode("utf-8") if isinstance(t.name, bytes) else str(t.name) for t in sub.tensors]
    return sub, obj, names


def op_names(model_bytes: bytes) -> list:
    """Op type of every operator of the main subgraph, in execution order (``CONV_2D``, ``CUSTOM:Foo``...)."""
    sub, obj, _ = _graph(model_bytes)
    return _op_names(sub, obj)


def _op_names(sub, obj) -> list:
    from tensorflow.lite.tools import flatbuffer_utils

    out = []
    for op in sub.operators:
        code = obj.operatorCodes[op.opcodeIndex]
        name = flatbuffer_utils.opcode_to_name(obj, op.opcodeIndex)
        if name == "CUSTOM" and code.customCode:
            name = "CUSTOM:" + _decode(code.customCode)
        out.append(name)
    return out


def check_builtin(model_bytes: bytes, model=None) -> None:
    """Raise ExportError when the flatbuffer holds a custom/Flex op (no app interpreter can run it)."""
    sub, obj, tensor_names = _graph(model_bytes)
    names = _layer_scopes(model)[0] if model is not None else set()
    for op, kind in zip(sub.operators, _op_names(sub, obj)):
        if kind.startswith("CUSTOM") or kind.startswith("FLEX") or "Flex" in kind:
            tensor = tensor_names[op.outputs[0]] if len(op.outputs) else "?"
            layer = _scope_of(tensor, names) or tensor
            raise ExportError(f"op {kind} (layer '{layer}') is not a TFLite builtin op: rewrite that layer with "
                              "builtin ops (see tfalign/layers.py)")


def inspect(model_bytes: bytes) -> dict:
    """Op histogram and int8 coverage.

    Coverage = ops with an 8/16-bit integer output / (those + ops with a float output). QUANTIZE/DEQUANTIZE (pure
    conversions) and index arithmetic with only int32/bool outputs (casts, comparisons of sampling coordinates)
    are in neither count, so a float model scores 0 and a fully quantized one 1.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    sub, obj, tensor_names = _graph(model_bytes)
    kinds = _op_names(sub, obj)
    float_ops = []
    quantized = 0
    for op, kind in zip(sub.operators, kinds):
        if kind in _CAST_OPS:
            continue
        types = {flatbuffer_utils.type_to_name(sub.tensors[t].type) for t in op.outputs}
        if types & _FLOAT_TYPES:
            float_ops.append(f"{kind} {tensor_names[op.outputs[0]]}")
        elif types & _QUANT_TYPES:
            quantized += 1
    counted = quantized + len(float_ops)
    return {
        "ops": dict(sorted(collections.Counter(kinds).items())),
        "num_ops": len(kinds),
        "int8_coverage": round(quantized / counted, 4) if counted else 0.0,
        "float_ops": float_ops,
    }


def embed_metadata(model_bytes: bytes, data: bytes, name: str = METADATA_NAME) -> bytes:
    """Add (or replace) a metadata entry ``name`` holding ``data`` in a ``.tflite`` flatbuffer.

    The entry is a plain TFLite metadata buffer, so any flatbuffer reader finds it without tflite-support
    (``tfalign.runtime.read_tflite_metadata``).
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    obj = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(data, dtype=np.uint8)
    obj.buffers.append(buffer)
    meta = schema.MetadataT()
    meta.name = name
    meta.buffer = len(obj.buffers) - 1
    obj.metadata = [m for m in (obj.metadata or []) if _decode(m.name) != name] + [meta]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(obj))


def _decode(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


_TF_OP = re.compile(r"'(tf\.[A-Za-z0-9_]+)' op")
_LOC = re.compile(r'fused\["([A-Za-z0-9_]+):", (?:callsite\()?"([^"@]+)@')


def _explain(exc: Exception, model) -> ExportError:
    """A converter failure → one sentence naming the unsupported op and the Keras layer that emits it."""
    names = _layer_scopes(model)[0]
    found = []
    for err in getattr(exc, "errors", None) or []:
        op = getattr(getattr(err, "operator", None), "name", "") or ""
        layer = None
        for call in getattr(getattr(err, "location", None), "call", []) or []:
            layer = _scope_of(getattr(call, "name", "").split("@")[0], names) or layer
        if op:
            found.append((op, layer))
    text = str(exc)
    if not found:
        ops = _TF_OP.findall(text)
        layers = [_scope_of(path, names) for _, path in _LOC.findall(text)]
        found = [(op, next((x for x in layers if x), None)) for op in dict.fromkeys(ops)]
    if found:
        parts = [f"op {op} (layer '{layer or '?'}')" for op, layer in dict.fromkeys(found)]
        return ExportError("not convertible to TFLite builtin ops: " + "; ".join(parts)
                           + ". Flex/custom ops run in no app interpreter: rewrite that layer with builtin ops "
                           "(tfalign/layers.py has exportable sampling, RoIAlign and soft-argmax)")
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return ExportError(f"TFLite conversion failed: {first}")


class Runner:
    """A ``.tflite`` on float inputs, for benches and tests: the input is quantized and the output dequantized
    from the tensor details (int8 or uint8), so float and integer exports are compared on the same numbers.

    Unlike :class:`tfalign.runtime.LandmarkModel` it needs no contract (crops in, raw output out). Static batch 1:
    ``runner(x)`` takes ``[1, ...]``, ``runner.batch(xs)`` runs ``[B, ...]`` one sample at a time.
    """

    def __init__(self, model_bytes: bytes, num_threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_content=model_bytes, num_threads=num_threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    def set_input(self, x) -> None:
        x = np.asarray(x, np.float32)
        if self.input["dtype"] != np.float32:
            scale, zero = self.input["quantization"]
            info = np.iinfo(self.input["dtype"])
            x = np.clip(np.round(x / scale + zero), info.min, info.max)
        self.interpreter.set_tensor(self.input["index"], x.astype(self.input["dtype"]))

    def get_output(self) -> np.ndarray:
        y = self.interpreter.get_tensor(self.output["index"])
        if self.output["dtype"] != np.float32:
            scale, zero = self.output["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        return y

    def __call__(self, x) -> np.ndarray:
        self.set_input(x)
        self.interpreter.invoke()
        return self.get_output()

    def batch(self, xs) -> np.ndarray:
        return np.stack([self(x[None])[0] for x in np.asarray(xs, np.float32)])
