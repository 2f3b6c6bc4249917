"""Crash-safe checkpoints: a kill -9 at any instant leaves a complete last checkpoint to resume from.

Layout under ``DIR/checkpoints``::

    epoch-0007/ckpt.*        tf.train.Checkpoint (model, optimizer with its step counter, epoch, RNG, best NME)
    epoch-0007/state.json    the same counters in readable form
    last.json, best.json     pointers: {"epoch": 7, "dir": "epoch-0007", "val_nme": ...}

A checkpoint folder is written under a temporary name and renamed when complete; only then is the pointer file
replaced (``tfalign.io.atomic_write_json``). Folders no pointer names any more are deleted afterwards, so at
most two are kept (last and best). Under multi-worker training every worker must take part in writing (reading
variables may need a collective), but only the chief writes into ``DIR``; the others write to a scratch folder
that is deleted at once.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile

from tfalign.io import atomic_path, atomic_write_json

PREFIX = "ckpt"


class CheckpointStore:
    def __init__(self, out_dir: str, is_chief: bool = True):
        self.root = os.path.join(out_dir, "checkpoints")
        self.is_chief = is_chief

    # ------------------------------------------------------------------ reading
    def pointer(self, which: str = "last"):
        """The ``last``/``best`` pointer dict, or None when there is no complete checkpoint."""
        path = os.path.join(self.root, f"{which}.json")
        if not os.path.exists(path):
            return None
        with open(path, encoding="utf-8") as fh:
            info = json.load(fh)
        if not os.path.exists(os.path.join(self.root, info["dir"], PREFIX + ".index")):
            raise ValueError(f"{path}: points to {info['dir']}, which is missing or incomplete")
        return info

    def prefix(self, which: str = "last"):
        info = self.pointer(which)
        return None if info is None else os.path.join(self.root, info["dir"], PREFIX)

    # ------------------------------------------------------------------ writing
    def save(self, checkpoint, epoch: int, state: dict, improved: bool) -> None:
        """Write ``checkpoint`` for the finished ``epoch`` (1-based); mark it best when ``improved``."""
        name = f"epoch-{epoch:04d}"
        if not self.is_chief:
            scratch = tempfile.mkdtemp(prefix="tfalign-worker-ckpt-")
            try:
                checkpoint.write(os.path.join(scratch, PREFIX))
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            return
        os.makedirs(self.root, exist_ok=True)
        final = os.path.join(self.root, name)
        with atomic_path(final) as tmp:
            os.makedirs(tmp)
            checkpoint.write(os.path.join(tmp, PREFIX))
            atomic_write_json(os.path.join(tmp, "state.json"), state)
            _fsync_dir(tmp)
        _fsync_dir(self.root)
        pointer = {"epoch": epoch, "dir": name, **{k: state[k] for k in ("val_nme",) if k in state}}
        if improved:
            atomic_write_json(os.path.join(self.root, "best.json"), pointer)
        atomic_write_json(os.path.join(self.root, "last.json"), pointer)
        self._prune()

    def _prune(self) -> None:
        keep = {p["dir"] for p in (self.pointer("last"), self.pointer("best")) if p}
        for entry in os.listdir(self.root):
            full = os.path.join(self.root, entry)
            # Stale ".epoch-*.tmp" folders are what a kill during a write leaves behind.
            if os.path.isdir(full) and entry not in keep and (entry.startswith("epoch-")
                                                               or entry.startswith(".epoch-")):
                shutil.rmtree(full, ignore_errors=True)


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
