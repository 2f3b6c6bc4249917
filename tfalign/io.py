"""Atomic file writes: a reader never sees a half-written export, checkpoint or report."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile


@contextlib.contextmanager
def atomic_path(path: str, overwrite: bool = True):
    """Yield a temporary path in the target's folder; on success it replaces ``path`` in one rename.

    On an exception the temporary file (or folder) is removed and ``path`` is untouched.
    ``overwrite=False`` refuses to replace an existing ``path`` (FileExistsError naming it).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"{path} exists; pass --force to overwrite it")
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    os.close(fd)
    os.unlink(tmp)  # let the writer create a file or a folder (e.g. a .mlpackage) at tmp
    try:
        yield tmp
        if os.path.isdir(path) and not os.path.islink(path):
            # os.replace cannot swap a non-empty folder: move the old one aside, then delete it.
            old = tmp + ".old"
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write(path: str, data, overwrite: bool = True) -> str:
    """Write bytes or str to ``path`` atomically. Returns ``path``."""
    mode = "wb" if isinstance(data, (bytes, bytearray)) else "w"
    with atomic_path(path, overwrite) as tmp:
        with open(tmp, mode, **({} if mode == "wb" else {"encoding": "utf-8"})) as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return path


def atomic_write_json(path: str, obj, overwrite: bool = True) -> str:
    return atomic_write(path, json.dumps(obj, indent=2, sort_keys=False) + "\n", overwrite)
