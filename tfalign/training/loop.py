"""The training loop shared by every architecture.

A custom loop (not ``Model.fit``) because the architectures' losses take the whole batch dict and several
outputs, and because resuming must restore the data order too. One epoch = ``steps_per_epoch`` steps over a
dataset rebuilt with a seed drawn from a checkpointed ``tf.random.Generator``: after a kill the resumed run
draws the same seeds, sees the same batches in the same order and continues the same schedule.
"""
from __future__ import annotations

import math
import os
import sys
import time

import numpy as np

from tfalign.io import atomic_path, atomic_write_json
from tfalign.training import data as data_lib
from tfalign.training.checkpoints import CheckpointStore
from tfalign.training.evaluation import landmark_fn
from tfalign.training.runconfig import RunSettings, resolve_model, versions

BEST_WEIGHTS = "best.weights.h5"


GROUPED_CONV_HELP = (
    "this model has grouped convolutions, and TensorFlow was imported with oneDNN off, whose CPU kernels have no "
    "gradient for them (TF's default on CPUs without AVX-512 VNNI/BF16 or AMX). Set TF_ENABLE_ONEDNN_OPTS=1 before "
    "TensorFlow is first imported (tfalign sets it when it imports TensorFlow itself; import tfalign before "
    "tensorflow, or export the variable)")


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss became NaN); the message says where the last good checkpoint is."""


def prepare_out_dir(out_dir: str, resume: bool) -> None:
    """Refuse an unwritable ``--out``, a resume without a checkpoint, or overwriting another run."""
    has_run = os.path.exists(os.path.join(out_dir, "config.json"))
    if resume:
        if not has_run:
            raise ValueError(f"--resume: {out_dir} holds no training run (no config.json)")
        if CheckpointStore(out_dir).pointer("last") is None:
            raise ValueError(f"--resume: {out_dir} has no complete checkpoint yet (the run stopped during its "
                             "first epoch); start it again without --resume into an empty --out")
    elif has_run:
        raise ValueError(f"--out {out_dir}: already holds a training run; pass --resume to continue it or choose "
                         "another folder")
    try:
        os.makedirs(out_dir, exist_ok=True)
        with atomic_path(os.path.join(out_dir, ".write-test")) as tmp:
            with open(tmp, "w") as fh:
                fh.write("ok")
        os.unlink(os.path.join(out_dir, ".write-test"))
    except OSError as exc:
        raise ValueError(f"--out {out_dir}: cannot write there ({exc.strerror or exc})") from None


def model_inputs(model, batch: dict):
    """What to call ``model`` with: the batch entries named like its ``keras.Input`` layers.

    Architectures that need more than the image (image pairs, poses) give their inputs those names.
    """
    names = list(model.input_names)
    if len(names) == 1:  # a lone input is the image, whatever the architecture named it
        return batch[names[0] if names[0] in batch else "image"]
    missing = [n for n in names if n not in batch]
    if missing:
        raise ValueError(f"model inputs {missing} are not in the data batch (it has {sorted(batch)}); the "
                         "architecture's InputSpec must ask the pipeline for them")
    return {n: batch[n] for n in names}


def twin_view(batch: dict) -> dict:
    """The batch as seen by the model's second run on a paired sample: ``image2`` in place of ``image``."""
    return {**batch, "image": batch["image2"]}


class Trainer:
    """Trains one run into ``out_dir``. Build with validated inputs (``tfalign.train`` does that)."""

    def __init__(self, run: RunSettings, out_dir: str, *, resume: bool = False, command=None,
                 distribution=None, progress: bool = True, log_every: int = 10, model_fn=None, callbacks=()):
        """``model_fn`` (optional): builds the model to train instead of ``arch.build(config)``, e.g. a pruned or
        quantization-aware copy of a trained model (``quantization/``); called inside the strategy scope.
        ``callbacks``: Keras callbacks driven by the loop (``set_model``, ``set_params`` with ``epochs``, ``steps``
        and ``iterations``, the optimizer's step variable, ``on_train_begin``, ``on_train_batch_begin`` before every
        step, ``on_epoch_end``), e.g. tfmot's ``UpdatePruningStep``."""
        from tfalign.training.distribute import make_distribution
        self.model_fn = model_fn
        self.callbacks = list(callbacks)
        self.run = run
        self.out_dir = out_dir
        self.resume = resume
        self.command = list(command or sys.argv)
        self.progress = progress
        self.log_every = max(1, int(log_every))
        self.arch, self.config = resolve_model(run.model, run.config)
        self.spec = self.config.input
        self.skipped = [] if run.skip_bad else None
        loaded = (data_lib.load_specs(run.data, "--data", self.skipped),
                  data_lib.load_specs(run.val, "--val", self.skipped))
        data_lib.check_schemes(loaded[0], self.spec, "--data")
        data_lib.check_schemes(loaded[1], self.spec, "--val")
        self.train_records = [r for _, recs in loaded[0] for r in recs]
        self.val_sets = loaded[1]
        if len(self.train_records) < run.batch_size:
            # Training batches are full (the remainder of a pass is dropped): fewer faces than one batch would
            # give an endless stream of nothing.
            raise ValueError(f"--batch-size {run.batch_size}: larger than the {len(self.train_records)} training "
                             "faces of --data")
        self.steps_per_epoch = run.steps_per_epoch or max(1, len(self.train_records) // run.batch_size)
        self.dist = distribution or make_distribution(run.strategy)
        self.store = CheckpointStore(out_dir, self.dist.is_chief)
        self._build()

    # ------------------------------------------------------------------ set-up
    def _build(self):
        from tfalign._keras import keras, tf
        from tfalign.training.schedules import make_optimizer
        strategy = self.dist.strategy
        # Python, NumPy and TensorFlow seeds: the initial weights are a function of --seed.
        keras.utils.set_random_seed(self.run.seed)
        with strategy.scope():
            self.model = self.model_fn() if self.model_fn else self.arch.build(self.config)
            if self.run.init and not self.resume:
                # On resume the checkpoint holds the weights; the starting weights matter only once.
                from tfalign.training import init_weights
                init_weights(self.model, self.run.init, self.run.model)
            self.optimizer = make_optimizer(self.config.train, self.steps_per_epoch, self.run.epochs)
            self.optimizer.build(self.model.trainable_variables)
        # Outside the strategy scope: one plain generator per worker, identical on all of them.
        self.rng = tf.random.Generator.from_seed(self.run.seed)
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.best_nme = tf.Variable(math.inf, dtype=tf.float64, trainable=False, name="best_val_nme")
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer, epoch=self.epoch,
                                              rng=self.rng, best_val_nme=self.best_nme)
        self._train_step = self._make_train_step()
        self._predict = landmark_fn(self.model)

    def _make_train_step(self):
        from tfalign._keras import tf
        strategy, model, optimizer, arch, config = (self.dist.strategy, self.model, self.optimizer, self.arch,
                                                    self.config)
        replicas = float(strategy.num_replicas_in_sync)

        def step_fn(batch):
            with tf.GradientTape() as tape:
                outputs = model(model_inputs(model, batch), training=True)
                if config.input.pair:
                    # Paired-view losses (coherent / consistency) compare the model on both views in one step.
                    outputs = {**outputs, "twin": model(model_inputs(model, twin_view(batch)), training=True)}
                total, parts = arch.loss(config, outputs, batch)
                if model.losses:
                    total = total + tf.add_n(model.losses)
                # Each replica's loss is a mean over its share of the batch; summing gradients of loss/replicas
                # over replicas gives the gradient of the global-batch mean.
                scaled = total / replicas
            grads = tape.gradient(scaled, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return {"loss": total, **parts}

        @tf.function
        def train_step(iterator):
            values = strategy.run(step_fn, args=(next(iterator),))
            return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in values.items()}

        return train_step

    # ------------------------------------------------------------------ records
    def _write_config(self):
        if not self.dist.is_chief:
            return
        atomic_write_json(os.path.join(self.out_dir, "config.json"), {
            "format": "tfalign-run/1",
            "architecture": self.arch.name,
            **self.run.to_json(),
            "steps_per_epoch_effective": self.steps_per_epoch,
            "train_faces": len(self.train_records),
            "val_faces": {spec: len(recs) for spec, recs in self.val_sets},
            "num_workers": self.dist.num_workers,
            "num_replicas": self.dist.num_replicas,
            "skipped_records": [str(e) for e in self.skipped or []],
            "versions": versions(),
            "command": self.command,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        })

    def _load_history(self, upto: int) -> dict:
        path = os.path.join(self.out_dir, "history.json")
        history = {"epochs": [], "sessions": []}
        if self.resume and os.path.exists(path):
            import json
            with open(path, encoding="utf-8") as fh:
                history = json.load(fh)
            # Epochs logged after the checkpoint we resume from are trained again: forget them.
            history["epochs"] = [e for e in history["epochs"] if e["epoch"] <= upto]
        history["sessions"].append({"command": self.command, "start_epoch": upto + 1, "versions": versions(),
                                    "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        return history

    # ------------------------------------------------------------------ the loop
    def fit(self) -> dict:
        """Train until ``run.epochs``; returns the history dict (also in ``DIR/history.json``)."""
        from tfalign._keras import tf
        start = 0
        if self.resume:
            prefix = self.store.prefix("last")
            self.checkpoint.read(prefix).assert_existing_objects_matched()
            start = int(self.epoch.numpy())
        else:
            self._write_config()
        history = self._load_history(start)
        writers = self._summary_writers()
        for cb in self.callbacks:
            cb.set_model(self.model)
            # As keras' fit does, plus the step counter: the model is not compiled, so model.optimizer is None here.
            cb.set_params({"epochs": self.run.epochs, "steps": self.steps_per_epoch, "verbose": 0,
                           "iterations": self.optimizer.iterations})
            cb.on_train_begin()
        for epoch in range(start + 1, self.run.epochs + 1):
            # Drawn before the epoch and saved after it: a resumed run draws exactly the seeds it would have.
            epoch_seed = int(self.rng.uniform_full_int([], tf.int64).numpy() & 0x7FFFFFFF)
            t0 = time.time()
            try:
                train_stats = self._train_epoch(epoch, epoch_seed, writers)
            except tf.errors.InvalidArgumentError as exc:
                if "grouped convolutions are not supported" not in str(exc):
                    raise
                raise TrainingError(GROUPED_CONV_HELP) from None
            train_seconds = time.time() - t0
            for cb in self.callbacks:
                cb.on_epoch_end(epoch)
            val = self._validate()
            primary = val["primary"]
            improved = primary < float(self.best_nme.numpy())
            if improved:
                self.best_nme.assign(primary)
            self.epoch.assign(epoch)
            record = {"epoch": epoch, "seed": epoch_seed, "seconds": round(time.time() - t0, 3),
                      "train_seconds": round(train_seconds, 3),
                      "faces_per_second": round(self.steps_per_epoch * self.run.batch_size / train_seconds, 2),
                      # With a schedule, tf_keras reports the rate of the last step taken.
                      "learning_rate": float(self.optimizer.learning_rate.numpy()),
                      "step": int(self.optimizer.iterations.numpy()), "train": train_stats,
                      "val": val["table"], "val_nme": primary, "best": improved}
            history["epochs"].append(record)
            self._log_epoch(writers, record)
            # History first, then the checkpoint: after a kill the history may be one epoch ahead (trimmed on
            # resume), never behind.
            if self.dist.is_chief:
                atomic_write_json(os.path.join(self.out_dir, "history.json"), history)
            if improved:
                self._save_best_weights()
            self.store.save(self.checkpoint, epoch, {"epoch": epoch, "step": record["step"], "val_nme": primary,
                                                     "best_val_nme": float(self.best_nme.numpy())}, improved)
        return history

    def _train_epoch(self, epoch: int, seed: int, writers) -> dict:
        from tfalign._keras import tf
        ds = data_lib.make_dataset(self.train_records, self.spec, training=True, batch_size=self.run.batch_size,
                                   seed=seed)
        options = tf.data.Options()
        # Every worker reads the same seeded stream and keeps its share of each global batch, so a global batch
        # is the same whatever the number of workers.
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        iterator = iter(self.dist.strategy.experimental_distribute_dataset(ds.with_options(options)))
        sums: dict[str, float] = {}
        bar = _progress(self.steps_per_epoch, f"epoch {epoch}/{self.run.epochs}",
                        self.progress and self.dist.is_chief)
        try:
            for i in range(self.steps_per_epoch):
                for cb in self.callbacks:
                    cb.on_train_batch_begin(i)
                values = {k: float(v.numpy()) for k, v in self._train_step(iterator).items()}
                if not math.isfinite(values["loss"]):
                    last = self.store.pointer("last")
                    raise TrainingError(f"the loss became {values['loss']} at epoch {epoch}, step {i + 1}; last "
                                        f"good checkpoint: {last['dir'] if last else 'none'} in {self.out_dir}")
                for k, v in values.items():
                    sums[k] = sums.get(k, 0.0) + v
                bar.update(1)
                bar.set_postfix(loss=f"{sums['loss'] / (i + 1):.4g}", refresh=False)
                step = int(self.optimizer.iterations.numpy())
                if writers and step % self.log_every == 0:
                    with writers["train"].as_default(step=step):
                        for k, v in values.items():
                            tf.summary.scalar(f"step/{k}", v)
        finally:
            bar.close()
        return {k: v / self.steps_per_epoch for k, v in sums.items()}

    def _validate(self) -> dict:
        from tfalign.training.evaluation import predict_keras, score, targets
        table, primary = {}, None
        for spec, records in self.val_sets:
            pred = predict_keras(self._predict, records, self.spec, self.run.batch_size,
                                 lambda b: model_inputs(self.model, b))
            result = score(pred, *targets(records, self.spec.schemes), self.spec.schemes)
            table[spec] = result["summary"]
            if primary is None:
                primary = result["primary"]
        return {"table": table, "primary": primary}

    def _save_best_weights(self):
        path = os.path.join(self.out_dir, BEST_WEIGHTS)
        if not self.dist.is_chief:  # reading the weights may need every worker; write them where nobody looks
            import tempfile
            with tempfile.TemporaryDirectory(prefix="tfalign-worker-") as scratch:
                self.model.save_weights(os.path.join(scratch, BEST_WEIGHTS))
            return
        with atomic_path(path) as tmp:
            # Keras picks the weights format from the suffix, so the temporary file must end in .weights.h5 too.
            named = tmp + ".weights.h5"
            try:
                self.model.save_weights(named)
                os.replace(named, tmp)
            finally:
                if os.path.exists(named):
                    os.unlink(named)

    # ------------------------------------------------------------------ logging
    def _summary_writers(self):
        if not self.dist.is_chief:
            return None
        from tfalign._keras import tf
        root = os.path.join(self.out_dir, "tensorboard")
        return {"train": tf.summary.create_file_writer(os.path.join(root, "train")),
                "val": tf.summary.create_file_writer(os.path.join(root, "val"))}

    def _log_epoch(self, writers, record):
        if writers:
            from tfalign._keras import tf
            with writers["train"].as_default(step=record["epoch"]):
                for k, v in record["train"].items():
                    tf.summary.scalar(f"epoch/{k}", v)
                tf.summary.scalar("epoch/learning_rate", record["learning_rate"])
            with writers["val"].as_default(step=record["epoch"]):
                for spec, summary in record["val"].items():
                    for key, value in _flatten(summary).items():
                        tf.summary.scalar(f"{spec}/{key}", value)
            for w in writers.values():
                w.flush()
        if not self.dist.is_chief:
            # One line per epoch from the other workers too, so a stuck or missing worker shows in its log.
            print(f"worker {self.dist.worker_index}/{self.dist.num_workers}: epoch {record['epoch']} done at step "
                  f"{record['step']}, loss {record['train']['loss']:.4g}", file=sys.stderr, flush=True)
        else:
            star = " (best)" if record["best"] else ""
            print(f"epoch {record['epoch']}/{self.run.epochs}: loss {record['train']['loss']:.4g}, "
                  f"val NME {record['val_nme']:.4%}{star}, lr {record['learning_rate']:.3g}, "
                  f"{record['faces_per_second']:.0f} faces/s, {record['seconds']:.1f}s", file=sys.stderr,
                  flush=True)


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="step", disable=not enabled, file=sys.stderr, dynamic_ncols=True,
                mininterval=0.5)


def _flatten(obj, prefix: str = "") -> dict:
    out = {}
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "/"))
        elif isinstance(v, (int, float, np.floating)) and math.isfinite(float(v)):
            out[key] = float(v)
    return out
