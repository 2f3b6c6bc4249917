import os
import pathlib
import random

import numpy as np
import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as tfalign._keras: grouped-conv gradients on any x86 CPU

REPO = pathlib.Path(__file__).resolve().parents[1]
DATA = pathlib.Path(os.environ.get("TFALIGN_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)
    try:
        from tfalign._keras import tf
        tf.random.set_seed(0)
    except Exception:  # pragma: no cover - TensorFlow missing is reported by the tests that need it
        pass


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """../shared/data (or $TFALIGN_DATA); tests that need it skip with the reason where it is absent."""
    if not (DATA / "lfpw").is_dir():
        pytest.skip(f"real face data not found at {DATA} (set TFALIGN_DATA to the shared/data folder)")
    return DATA
