"""tf.distribute strategies by name, and who is the chief.

* ``default``: one device (the first GPU if any, else the CPU).
* ``mirrored``: all local GPUs of one machine (synchronous all-reduce).
* ``multiworker``: :class:`tf.distribute.MultiWorkerMirroredStrategy` over the machines listed in ``TF_CONFIG``
  (every worker runs the same command; the chief, worker 0, writes checkpoints, logs and the best model).
* ``tpu``: :class:`tf.distribute.TPUStrategy` on the TPU named by ``TPU_NAME`` (or the local one).

The global batch (``--batch-size``) is split evenly over all replicas, so the same command trains the same
model on 1 device or 16 (the learning rate is not rescaled: change it with ``--set train.learning_rate=...``).
"""
from __future__ import annotations

import dataclasses
import json
import os

STRATEGIES = ("default", "mirrored", "multiworker", "tpu")


@dataclasses.dataclass
class Distribution:
    strategy: object
    name: str
    is_chief: bool
    worker_index: int
    num_workers: int

    @property
    def num_replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)


def check_strategy_args(name: str) -> None:
    """Cheap checks that need no TensorFlow, so a bad command fails before anything heavy starts."""
    if name not in STRATEGIES:
        raise ValueError(f"--strategy: unknown strategy '{name}' ({', '.join(STRATEGIES)})")
    if name == "multiworker":
        raw = os.environ.get("TF_CONFIG")
        if not raw:
            raise ValueError("--strategy multiworker: the TF_CONFIG environment variable is not set "
                             "(see docs/training.md)")
        try:
            tf_config = json.loads(raw)
            workers = tf_config["cluster"]["worker"]
            task = tf_config["task"]
            if task["type"] not in ("worker", "chief") or not isinstance(task["index"], int):
                raise KeyError("task")
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"--strategy multiworker: TF_CONFIG is not a valid cluster spec ({exc!r}); expected "
                             '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", '
                             '"index": 0}}') from None
        if not workers:
            raise ValueError("--strategy multiworker: TF_CONFIG lists no workers")


def is_chief_from_env(name: str) -> bool:
    """Whether this process will be the chief, from TF_CONFIG alone (before TensorFlow starts)."""
    if name != "multiworker":
        return True
    tf_config = json.loads(os.environ["TF_CONFIG"])
    task = tf_config["task"]
    if tf_config["cluster"].get("chief"):
        return task["type"] == "chief"
    return task["type"] == "worker" and task["index"] == 0


def make_distribution(name: str = "default") -> Distribution:
    check_strategy_args(name)
    from tfalign._keras import tf
    if name == "default":
        gpus = tf.config.list_logical_devices("GPU")
        strategy = tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
        return Distribution(strategy, name, True, 0, 1)
    if name == "mirrored":
        return Distribution(tf.distribute.MirroredStrategy(), name, True, 0, 1)
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=os.environ.get("TPU_NAME", ""))
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return Distribution(tf.distribute.TPUStrategy(resolver), name, True, 0, 1)
    # RING all-reduce works over plain TCP (CPU workers, mixed clusters); NCCL is picked automatically per GPU.
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.AUTO)
    strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    cluster = strategy.cluster_resolver.cluster_spec().as_dict()
    task_type, task_id = strategy.cluster_resolver.task_type, int(strategy.cluster_resolver.task_id)
    # With a "chief" task it is the chief; otherwise worker 0 (TensorFlow's own convention).
    has_chief = bool(cluster.get("chief"))
    index = task_id + (1 if has_chief else 0) if task_type == "worker" else 0
    num_workers = len(cluster.get("worker", [])) + len(cluster.get("chief", []))
    return Distribution(strategy, name, index == 0, index, num_workers)
