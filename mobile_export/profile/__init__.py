"""Latency of exported models: measured on the host, per op, estimated per phone, imported from real phones.

Front door: ``python -m tfalign.profile`` (tfalign/profile.py). Parts:
- ``host``: LiteRT interpreter, XNNPACK on/off × threads, warm-up, p50/p90/p99, init time, peak RSS growth;
- ``perop``: every op timed alone in a sub-model cut from the flatbuffer, MACs and bytes per op, sum vs whole;
- ``phones``: per-device, per-delegate ESTIMATES from per-op costs, calibrated on published phone latencies
  (``published.json``), device profiles in ``devices.json``, reference workloads in ``workloads.json``
  (bench/calibrate_phones.py), with leave-one-out error;
- ``importer``: merges measurement JSON (schemas/benchmark.schema.json) from the apps, ``--adb`` and hosts;
- ``benchmark_tool``: parser for LiteRT's ``benchmark_model`` output and an ``adb`` runner.

Only the .tflite and the contract JSON beside it are read: no architecture code.
"""
