"""tfalign: face alignment models from papers to phones.

Heavy imports (TensorFlow) happen lazily, so ``python -m tfalign.<verb> --help`` is instant.
"""
__version__ = "0.1.0"
