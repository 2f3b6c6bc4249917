"""Model compression for tfalign's exported models (imports flow ``tfalign`` ← ``quantization`` ← ``mobile_export``).

* :mod:`quantization.presets`: named TFLite quantization presets (``for_int8(representative)``, ``for_float16()``,
  ``for_dynamic()``, ``for_qat()``), validated at construction; the exporter configures its converter with them.
* :mod:`quantization.calibration`: representative faces from the tf.data pipeline (real or synthetic).
* :mod:`quantization.pruning`: tfmot magnitude pruning (PolynomialDecay), fine-tuning through the trainer
  (:func:`quantization.pruning.fine_tune`), ``strip_pruning``, per-layer sparsity, gzip size.
* :mod:`quantization.channel_pruning`: structured pruning: whole filters removed on the functional graph
  (residual / depthwise / concat / squeeze-excite ties), a slimmer model rebuilt: fewer MACs, lower latency.
* :mod:`quantization.qat`: quantization-aware training covering the package's own layers.

Command lines: ``python -m quantization.prune`` (magnitude / channel) and ``python -m quantization.qat``
(:mod:`quantization.cli` holds what they share); ``docs/compression.md``.

Submodules are imported on demand (tfmot is a heavy import).
"""
