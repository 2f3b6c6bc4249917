"""Crash-safe checkpoint folders: pointers replaced only after a complete write, last and best kept."""
import json
import os

import pytest

from tfalign.training.checkpoints import CheckpointStore


@pytest.fixture
def ckpt():
    from tfalign._keras import tf
    v = tf.Variable(1.0)
    return tf.train.Checkpoint(v=v), v


def test_pointers_and_pruning(tmp_path, ckpt):
    checkpoint, v = ckpt
    store = CheckpointStore(str(tmp_path))
    assert store.pointer("last") is None and store.prefix("best") is None
    for epoch, improved in ((1, True), (2, True), (3, False), (4, False)):
        v.assign(float(epoch))
        store.save(checkpoint, epoch, {"epoch": epoch, "val_nme": 0.1 * epoch}, improved)
    assert store.pointer("last")["epoch"] == 4 and store.pointer("best")["epoch"] == 2
    assert store.pointer("best")["val_nme"] == pytest.approx(0.2)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["best.json", "epoch-0002", "epoch-0004", "last.json"]
    assert json.loads((tmp_path / "checkpoints/epoch-0004/state.json").read_text())["epoch"] == 4
    checkpoint.read(store.prefix("best")).assert_consumed()
    assert float(v.numpy()) == 2.0


def test_a_write_that_dies_leaves_the_previous_checkpoint(tmp_path, ckpt, monkeypatch):
    checkpoint, v = ckpt
    store = CheckpointStore(str(tmp_path))
    store.save(checkpoint, 1, {"epoch": 1}, True)

    def dies(prefix):
        os.makedirs(os.path.dirname(prefix), exist_ok=True)
        open(prefix + ".index", "w").close()  # half a checkpoint, then the crash
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "write", dies)
    with pytest.raises(KeyboardInterrupt):
        store.save(checkpoint, 2, {"epoch": 2}, True)
    assert store.pointer("last")["epoch"] == 1 and store.pointer("best")["epoch"] == 1
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["best.json", "epoch-0001", "last.json"]


def test_stale_temporary_folders_are_cleaned_on_the_next_save(tmp_path, ckpt):
    checkpoint, _ = ckpt
    stale = tmp_path / "checkpoints" / ".epoch-0002.abc.tmp"
    stale.mkdir(parents=True)
    CheckpointStore(str(tmp_path)).save(checkpoint, 1, {"epoch": 1}, False)
    assert not stale.exists()


def test_a_pointer_to_a_missing_folder_is_an_error(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints/last.json").write_text('{"epoch": 3, "dir": "epoch-0003"}')
    with pytest.raises(ValueError, match="epoch-0003, which is missing or incomplete"):
        CheckpointStore(str(tmp_path)).pointer("last")


def test_other_workers_write_nothing_into_the_run(tmp_path, ckpt):
    checkpoint, _ = ckpt
    CheckpointStore(str(tmp_path), is_chief=False).save(checkpoint, 1, {"epoch": 1}, True)
    assert not (tmp_path / "checkpoints").exists()
