"""Named TFLite quantization presets, validated when they are made.

The exporter (``mobile_export.tflite.convert``), the QAT path and ``bench/compression.py`` all configure the
``tf.lite.TFLiteConverter`` through these, so "int8" means the same thing everywhere.

Example::

    from quantization import calibration, presets
    rep = calibration.representative_dataset(config.input, "300w:../shared/data/lfpw/trainset", count=64)
    preset = presets.for_int8(rep)            # full-integer PTQ, int8 input
    preset = presets.for_float16()            # fp16 weights
    preset = presets.for_dynamic()            # int8 weights, float activations
    preset = presets.for_qat()                # a tfmot QAT model: ranges come from its fake-quant nodes

A wrong combination (int8 without calibration data, calibration data for float16, an int8 input type for a
float model...) raises ``ValueError`` at construction, naming the argument.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Iterable, Optional

MODES = ("float32", "float16", "dynamic", "int8", "qat")
IO_DTYPES = ("float32", "int8", "uint8")


@dataclasses.dataclass(frozen=True)
class QuantizationPreset:
    """How a Keras model becomes a ``.tflite``.

    Attributes:
        mode: ``float32`` | ``float16`` | ``dynamic`` | ``int8`` (full-integer PTQ) | ``qat`` (convert a
            quantization-aware-trained model).
        representative: a callable returning an iterable of float32 input arrays (batch 1 or unbatched), the
            calibration faces (:mod:`quantization.calibration`). Required for ``int8``; optional for ``qat``, where
            it calibrates the tensors the QAT model has no fake-quant range for (layers QAT leaves float).
        io_dtype: input tensor type (and output, where the output op is quantized): ``float32`` for every mode,
            ``int8``/``uint8`` for ``int8`` and ``qat``.
    """
    mode: str
    representative: Optional[Callable[[], Iterable]] = None
    io_dtype: str = "float32"

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"quantization mode: unknown '{self.mode}' (choose from {', '.join(MODES)})")
        if self.io_dtype not in IO_DTYPES:
            raise ValueError(f"io_dtype: unknown '{self.io_dtype}' (choose from {', '.join(IO_DTYPES)})")
        if self.mode == "int8" and self.representative is None:
            raise ValueError("representative: int8 quantization needs calibration data (a callable returning "
                             "input arrays; see quantization.calibration.representative_dataset)")
        if self.representative is not None and not callable(self.representative):
            raise ValueError(f"representative: must be a callable returning an iterable of input arrays, got "
                             f"{type(self.representative).__name__}")
        if self.representative is not None and self.mode not in ("int8", "qat"):
            raise ValueError(f"representative: calibration data only applies to int8 and qat, not to '{self.mode}' "
                             "(float16 and dynamic need none)")
        if self.io_dtype != "float32" and self.mode not in ("int8", "qat"):
            raise ValueError(f"io_dtype: an {self.io_dtype} input needs an integer model (int8 or qat), not "
                             f"'{self.mode}'")

    @property
    def quantized(self) -> bool:
        return self.mode != "float32"

    def configure(self, converter, input_shape) -> None:
        """Set ``converter``'s optimizations, op sets, types and calibration data for this preset.

        ``input_shape`` is the model's static input shape with batch (e.g. ``[1, 128, 128, 3]``); calibration
        arrays are reshaped to it. Integer I/O types are *not* set here: the exporter rewrites I/O types after
        its selective quantization (``mobile_export.tflite``), which the converter's own flags cannot express.
        """
        import numpy as np

        from tfalign._keras import tf

        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if self.mode == "float32":
            return
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if self.mode == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if self.mode == "int8" or (self.mode == "qat" and self.representative is not None):
            # BUILTINS after BUILTINS_INT8: ops kept float on purpose (soft-argmax) must still find a kernel.
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                                   tf.lite.OpsSet.TFLITE_BUILTINS]
            shape = [int(d) for d in input_shape]
            representative = self.representative

            def gen():
                for x in representative():
                    yield [np.asarray(x, np.float32).reshape(shape)]

            converter.representative_dataset = gen


def for_float32() -> QuantizationPreset:
    """No quantization (the reference)."""
    return QuantizationPreset("float32")


def for_float16() -> QuantizationPreset:
    """float16 weights (half the size; GPU delegates compute in fp16, CPU dequantizes once at load)."""
    return QuantizationPreset("float16")


def for_dynamic() -> QuantizationPreset:
    """Dynamic range: int8 weights, activations quantized on the fly, float I/O. No calibration data needed."""
    return QuantizationPreset("dynamic")


def for_int8(representative: Callable[[], Iterable], io_dtype: str = "int8") -> QuantizationPreset:
    """Full-integer post-training quantization calibrated on ``representative`` (int8 or uint8 input)."""
    if io_dtype not in ("int8", "uint8"):
        raise ValueError(f"io_dtype: full-integer models take int8 or uint8 input, got '{io_dtype}'")
    return QuantizationPreset("int8", representative, io_dtype)


def for_qat(io_dtype: str = "float32", representative: Optional[Callable[[], Iterable]] = None
            ) -> QuantizationPreset:
    """Convert a model from :func:`quantization.qat.quantize_model`: its fake-quant ranges become int8 ops.

    Without ``representative`` the layers QAT left float (custom layers it has no QuantizeConfig for) stay float;
    with it their tensors are calibrated on those faces and quantized like a PTQ export, while every tensor that
    has a fake-quant range keeps the trained one (``mobile_export.tflite.convert``)."""
    return QuantizationPreset("qat", representative, io_dtype)


def keeps_float(layer) -> bool:
    """Whether ``layer`` stays float in int8 models (PTQ export and QAT alike): an explicit ``keep_float_in_int8``
    attribute wins; else the spatial softmaxes (SpatialSoftmax, SoftArgmax with ``normalize="softmax"``): a softmax
    over thousands of cells has int8 output scale 1/256, so most cells become 0 (../shared/STACK.md). SoftArgmax
    with ``none`` reads a distribution that is already normalised (DeCaFA: a SpatialSoftmax's output) and does not
    renormalise it: quantized, its thousands of small cells round to 0 and the expectation collapses towards the
    origin (DeCaFA's int8 NME was 138 % against 22 % float), so it stays float too. SoftArgmax with ``sum``
    divides by the map's own sum, which survives int8, so it is quantized."""
    from tfalign import layers as tfa_layers

    explicit = getattr(layer, "keep_float_in_int8", None)
    if explicit is not None:
        return bool(explicit)
    if isinstance(layer, tfa_layers.SpatialSoftmax):
        return True
    return isinstance(layer, tfa_layers.SoftArgmax) and layer.normalize in ("softmax", "none")


_BY_EXPORT_NAME = {"none": "float32", "float32": "float32", "float16": "float16", "dynamic": "dynamic",
                   "int8": "int8", "qat": "qat"}


def from_name(name: str, representative=None, io_dtype: Optional[str] = None) -> QuantizationPreset:
    """The preset behind an exporter ``--quantize`` value (``none`` = float32)."""
    if name not in _BY_EXPORT_NAME:
        raise ValueError(f"--quantize: unknown mode '{name}' (choose from {', '.join(_BY_EXPORT_NAME)})")
    mode = _BY_EXPORT_NAME[name]
    if io_dtype is None:
        io_dtype = "int8" if mode == "int8" else "float32"
    return QuantizationPreset(mode, representative if mode == "int8" else None, io_dtype)


__all__ = ["QuantizationPreset", "MODES", "IO_DTYPES", "for_float32", "for_float16", "for_dynamic", "for_int8",
           "for_qat", "from_name", "keeps_float"]
