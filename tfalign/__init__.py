"""tfalign: face alignment models from papers to phones.

Heavy imports (TensorFlow) happen lazily, so ``python -m tfalign.<verb> --help`` is instant.
"""
__version__ = "0.1.0"


def load(name_or_path, num_threads: int = 1, which: str = "best"):
    """A model ready for inference: ``tfalign.load("mobile_two_stage").landmarks(image)``.

    ``name_or_path``: a packaged model name, a training run folder or an exported ``.tflite``; see
    :func:`tfalign.api.load`. Imports TensorFlow only for Keras models (a ``.tflite`` runs with LiteRT alone).
    """
    from tfalign.api import load as _load
    return _load(name_or_path, num_threads=num_threads, which=which)
