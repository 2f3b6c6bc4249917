"""The export pipeline behind the CLI: load a model, convert, build the contract, check parity, write atomically.

It only talks to the Architecture interface (``arch.inference_model(config, model)``, ``config.input``): no
per-model code. Used by ``mobile_export.cli`` and by the tests.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from typing import Optional

import numpy as np

from tfalign.io import atomic_path
from tfalign.runtime import METADATA_NAME, LandmarkModel, contract_path_for

WEIGHTS_ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tfalign", "weights")
RANDOM_INIT_SEED = 0
PROVENANCE_FILE = "model_card.json"  # optional, beside shipped weights: {"license": ..., "training_data": ...}


@dataclasses.dataclass
class LoadedModel:
    name: str
    architecture: str
    config: object
    inference: object  # keras.Model: one image input, one landmarks output
    weights: str  # "pretrained:<folder>" | "run:<dir>" | "random-init"
    license: str = "unspecified"
    training_data: str = "unspecified"


@dataclasses.dataclass(frozen=True)
class Job:
    target: str  # tflite | coreml
    quantize: str
    io_dtype: str = "int8"
    palettize: Optional[int] = None
    stem: str = ""

    @property
    def suffix(self) -> str:
        return ".tflite" if self.target == "tflite" else ".mlpackage"

    def paths(self, out: str) -> dict:
        model = os.path.join(out, self.stem + self.suffix)
        root = os.path.join(out, self.stem)
        return {"model": model, "contract": contract_path_for(model), "summary": root + ".summary.json"}


def default_stem(name: str, target: str, quantize: str, palettize: Optional[int] = None) -> str:
    """``<name>_<float32|float16|dynamic|int8>`` for TFLite; ``<name>_coreml_<fp16|int8w|palN>`` for CoreML, so the
    two targets' contracts (``<stem>.contract.json``) never collide."""
    if target == "tflite":
        return f"{name}_{quantize if quantize != 'none' else 'float32'}"
    kind = f"pal{palettize}" if palettize else ("int8w" if quantize in ("int8", "dynamic") else "fp16")
    return f"{name}_coreml_{kind}"


def with_overrides(arch, config, keras_model, sets=()):
    """Apply export-time ``--set key=value`` config changes (e.g. DeCaFA's ``exit_stage``, Pose-Tree-MoE's
    ``top_k``) to a loaded model: rebuilt from the new config with the same weights. Changes that alter the
    weights (widths, landmark count...) are refused, naming the ``--set``."""
    if not sets:
        return config, keras_model
    from tfalign import config as cfg_lib
    from tfalign.training.runconfig import apply_sets

    data = apply_sets(cfg_lib.to_dict(config), sets)
    new_config = arch.config_from_dict(data, where="--set")
    rebuilt = arch.build(new_config)
    old, new = keras_model.get_weights(), rebuilt.get_weights()
    if len(old) != len(new) or any(a.shape != b.shape for a, b in zip(old, new)):
        raise ValueError(f"--set {' '.join(sets)}: changes the model's weights; only settings that keep them "
                         "(e.g. exit_stage, top_k) can change at export time — retrain for the others")
    rebuilt.set_weights(old)
    return new_config, rebuilt


def load_model(model: Optional[str], model_dir: Optional[str], sets=()) -> LoadedModel:
    """``--model NAME`` / ``--model-dir DIR`` / neither (the package default) → the inference model.

    ``sets``: ``key=value`` config changes applied before the inference model is made (:func:`with_overrides`).
    """
    from tfalign.models.base import WEIGHTS_FILE, load_weights_folder, pretrained_folder, resolve

    if model_dir:
        from tfalign.training import load_model_dir, read_run

        arch, config, keras_model = load_model_dir(model_dir)
        config, keras_model = with_overrides(arch, config, keras_model, sets)
        run = read_run(model_dir)
        data = run.get("data") or f"see {os.path.join(model_dir, 'config.json')}"
        return LoadedModel(os.path.basename(os.path.normpath(model_dir)), arch.name, config,
                           arch.inference_model(config, keras_model), f"run:{model_dir}",
                           training_data=data if isinstance(data, str) else ", ".join(map(str, data)))
    name = model or "mobile_two_stage"
    try:
        arch, config = resolve(name)
    except KeyError as exc:
        raise ValueError(f"--model: {exc.args[0]}") from None
    folder = pretrained_folder(name, WEIGHTS_ROOT) or os.path.join(WEIGHTS_ROOT, name)
    if os.path.isfile(os.path.join(folder, WEIGHTS_FILE)):
        keras_model, config = load_weights_folder(arch, folder, name)
        config, keras_model = with_overrides(arch, config, keras_model, sets)
        card = _read_card(folder)
        return LoadedModel(name, arch.name, config, arch.inference_model(config, keras_model),
                           f"pretrained:{os.path.relpath(folder, os.path.dirname(os.path.dirname(WEIGHTS_ROOT)))}",
                           card.get("license", "unspecified"), card.get("training_data", "unspecified"))
    from tfalign._keras import keras

    # Seeded, so a random-init export (tests, demos before weights ship) is the same model on every run.
    keras.utils.set_random_seed(RANDOM_INIT_SEED)
    keras_model = arch.build(config)
    config, keras_model = with_overrides(arch, config, keras_model, sets)
    return LoadedModel(name, arch.name, config, arch.inference_model(config, keras_model), "random-init",
                       training_data="none: random initialisation (no shipped weights found in "
                                     f"{os.path.relpath(folder)})")


def weights_fingerprint(model) -> str:
    """sha256 of the model's weights (float32, model order): which weights a golden file was made with."""
    import hashlib

    digest = hashlib.sha256()
    for w in model.get_weights():
        digest.update(np.ascontiguousarray(w, np.float32).tobytes())
    return digest.hexdigest()


PRUNE_KINDS = ("magnitude", "channels")


def parse_prune(spec: str) -> tuple:
    """``magnitude:S`` (unstructured, target sparsity S) or ``channels:R`` (remove fraction R of the filters)."""
    kind, _, value = spec.partition(":")
    try:
        amount = float(value)
    except ValueError:
        amount = -1.0
    if kind not in PRUNE_KINDS or not 0.0 < amount < 1.0:
        raise ValueError(f"--prune: expected magnitude:S or channels:R with 0 < S, R < 1, got '{spec}'")
    return kind, amount


def prune(loaded: LoadedModel, spec: str) -> dict:
    """Prune ``loaded.inference`` in place of the loaded model (one shot, no fine-tuning); returns a report.

    The exporter only applies quantization/'s pruning; accuracy after a one-shot prune is the user's to check
    (fine-tune with ``quantization.pruning.fine_tune`` and export the run with ``--model-dir`` instead).
    """
    kind, amount = parse_prune(spec)
    before = int(loaded.inference.count_params())
    if kind == "magnitude":
        from quantization import pruning

        loaded.inference = pruning.one_shot(loaded.inference, amount)
        report = {"sparsity": pruning.sparsity_report(loaded.inference)}
    else:
        from quantization import channel_pruning

        loaded.inference, _ = channel_pruning.prune_channels(loaded.inference, amount)
        report = {}
    loaded.weights += f" pruned {spec} (one shot)"
    return {"spec": spec, "params_before": before, "params_after": int(loaded.inference.count_params()), **report}


def _read_card(folder: str) -> dict:
    path = os.path.join(folder, PROVENANCE_FILE)
    if not os.path.isfile(path):
        return {}
    from tfalign.config import load_json
    return load_json(path)


def check_destinations(out: str, jobs, force: bool) -> None:
    """Fail before any work when a destination exists and ``--force`` was not given."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out}: exists and is not a folder")
    for job in jobs:
        for path in job.paths(out).values():
            if os.path.exists(path) and not force:
                raise FileExistsError(f"{path} exists; pass --force to overwrite it")


class Faces:
    """Calibration and parity-check faces, made once and shared by every target of a run."""

    def __init__(self, input_spec, calibration=None, calibration_size=64, check=None, check_size=16):
        self.input_spec = input_spec
        self.calibration, self.calibration_size = calibration, calibration_size
        self.check, self.check_size = check, check_size
        self._cal = self._chk = None

    def _records(self, spec, size, seed, flag):
        from mobile_export import conformance

        return conformance.face_records(spec, size, self.input_spec, seed, flag)

    def calibration_crops(self) -> np.ndarray:
        from mobile_export import conformance

        if self._cal is None:
            recs = self._records(self.calibration, self.calibration_size, 0, "--calibration")
            self._cal = conformance.crops(recs, self.input_spec)[0]
        return self._cal

    @property
    def _check_from_calibration(self) -> bool:
        # Real calibration faces and no --check: compare on that dataset too (another random sample, seed 1). A
        # model trained on real faces is out of distribution on the procedural ones, where float and int8 drift
        # apart although they agree on faces like the ones it will see.
        return self.check is None and self.calibration is not None

    def check_records(self) -> list:
        if self._chk is None:
            # seed 1: never the calibration faces (seed 0) when both are synthetic
            spec, flag = ((self.calibration, "--calibration") if self._check_from_calibration
                          else (self.check, "--check"))
            self._chk = self._records(spec, self.check_size, 1, flag)
        return self._chk

    @property
    def calibration_source(self) -> str:
        return self.calibration or f"synthetic:{self.calibration_size} (tfalign.data.synthetic, seed 0)"

    @property
    def check_source(self) -> str:
        if self._check_from_calibration:
            return f"{self.calibration} ({self.check_size} faces, seed 1: --calibration's dataset, no --check given)"
        return self.check or f"synthetic:{self.check_size} (tfalign.data.synthetic, seed 1)"


def _model_info(loaded: LoadedModel, job: Job, license: Optional[str]) -> dict:
    info = {"name": loaded.name, "architecture": loaded.architecture, "file": job.stem + job.suffix,
            "quantization": job.quantize,
            "license": license or loaded.license, "training_data": loaded.training_data, "weights": loaded.weights}
    if job.palettize:
        info["compression"] = {"palettize_bits": job.palettize}
    return info


@dataclasses.dataclass
class Prepared:
    """A converted, checked target waiting to be written: the model, its contract and its summary."""
    job: Job
    artefact: object  # .tflite bytes or a coremltools MLModel
    contract: dict
    summary: dict


def prepare(loaded: LoadedModel, job: Job, faces: Faces, license: Optional[str] = None, threads: int = 1,
            gate: bool = True) -> Prepared:
    """Convert and check one target in memory (nothing is written). ValueError when parity fails and ``gate``."""
    if job.target == "tflite":
        artefact, contract, summary = _tflite(loaded, job, faces, license, threads)
    else:
        artefact, contract, summary = _coreml(loaded, job, faces, license)
    parity = summary.get("parity")
    if gate and parity is not None and not parity["passed"]:
        hint = ""
        if job.quantize in ("int8", "dynamic") and faces.calibration is None:
            # A model trained on real faces sees the procedural faces as out of distribution: its activations
            # there are neither the ranges to calibrate on nor a stable place to compare float and int8.
            hint = ("; it was calibrated and checked on synthetic faces: for a model trained on real faces pass "
                    "real ones, e.g. --calibration 300w:DIR#train --check 300w:DIR#val")
        raise ValueError(f"{job.stem}{job.suffix}: exported model differs from Keras beyond tolerance "
                         f"({parity['metric']} {parity[parity['metric']]:.3g} > {parity['tolerance']:g}); nothing "
                         f"was written (use --no-check to write it anyway){hint}")
    return Prepared(job, artefact, contract, summary)


def write(prepared: Prepared, out: str, force: bool = False) -> dict:
    """Write a prepared target into ``out``; returns its summary with the file paths."""
    paths = prepared.job.paths(out)
    prepared.summary["files"] = dict(paths)
    _write_all(paths, prepared.artefact, prepared.contract, prepared.summary, force)
    return prepared.summary


def export(loaded: LoadedModel, job: Job, out: str, faces: Faces, force: bool = False,
           license: Optional[str] = None, threads: int = 1, gate: bool = True) -> dict:
    """Convert, check and write one target. Returns the summary (also written as ``<stem>.summary.json``)."""
    return write(prepare(loaded, job, faces, license, threads, gate), out, force)


def _write_all(paths: dict, artefact, contract: dict, summary: dict, force: bool) -> None:
    """Stage contract, summary and model as temporary files beside their targets, then rename them into place.

    Any failure while staging leaves every destination untouched (old files included); the renames at the end
    are the only steps that touch the destinations. The model is renamed first and the contract last, so a
    reader that finds a contract finds its model.
    """
    with atomic_path(paths["contract"], overwrite=force) as tmp_contract, \
            atomic_path(paths["summary"], overwrite=force) as tmp_summary, \
            atomic_path(paths["model"], overwrite=force) as tmp_model:
        for tmp, obj in ((tmp_contract, contract), (tmp_summary, summary)):
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(obj, fh, indent=2)
                fh.write("\n")
        if isinstance(artefact, (bytes, bytearray)):
            with open(tmp_model, "wb") as fh:
                fh.write(artefact)
                fh.flush()
                os.fsync(fh.fileno())
        else:  # a CoreML model: coremltools insists on the .mlpackage extension
            staged = tmp_model + ".mlpackage"
            try:
                artefact.save(staged)
                os.replace(staged, tmp_model)
            finally:
                if os.path.exists(staged):
                    shutil.rmtree(staged, ignore_errors=True)


def _tflite(loaded: LoadedModel, job: Job, faces: Faces, license, threads: int):
    from mobile_export import conformance, contract as contract_lib, tflite

    spec = loaded.config.input
    representative = None
    if job.quantize == "int8":
        crops = faces.calibration_crops()
        representative = lambda: iter(crops)  # noqa: E731
    raw = tflite.convert(loaded.inference, job.quantize, representative, job.io_dtype)
    contract = contract_lib.tflite_contract(spec, raw, _model_info(loaded, job, license))
    data = tflite.embed_metadata(raw, json.dumps(contract, separators=(",", ":")).encode("utf-8"))
    # Run the exact bytes that will be written, through the contract-only runtime the apps mirror.
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, job.stem + ".tflite")
        with open(path, "wb") as fh:
            fh.write(data)
        runner = LandmarkModel(path, contract, num_threads=threads)
        records = faces.check_records()
        parity = conformance.tflite_parity(loaded.inference, runner, records, spec, job.quantize)
        x = conformance.crops(records[:1], spec)[0][0]
        latency = conformance.host_latency(runner, x)
    latency["threads"] = threads
    summary = {
        "model": loaded.name, "architecture": loaded.architecture, "weights": loaded.weights,
        "target": "tflite", "quantize": job.quantize, "io_dtype": contract["input"]["dtype"],
        "output_dtype": contract["outputs"][0]["dtype"],
        "size_bytes": len(data), "params": int(loaded.inference.count_params()),
        **tflite.inspect(data),
        "parity": {**parity, "faces_source": faces.check_source},
        "calibration": faces.calibration_source if job.quantize == "int8" else None,
        "host_latency": latency,
        "metadata": METADATA_NAME,
    }
    return data, contract, summary


def _coreml(loaded: LoadedModel, job: Job, faces: Faces, license):
    from mobile_export import coreml

    spec = loaded.config.input
    info = _model_info(loaded, job, license)
    mlmodel, contract = coreml.convert(loaded.inference, spec, info, quantize=job.quantize, palettize=job.palettize)
    check = coreml.verify(mlmodel, loaded.inference, contract, job.palettize)
    summary = {
        "model": loaded.name, "architecture": loaded.architecture, "weights": loaded.weights,
        "target": "coreml", "quantize": job.quantize, "palettize": job.palettize,
        "size_bytes": None, "params": int(loaded.inference.count_params()),
        **check,
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.mlpackage")
        mlmodel.save(path)
        summary["size_bytes"] = _tree_size(path)
        parity = coreml.predict_parity(path, loaded.inference, faces.check_records(), spec, job.quantize)
    if parity is not None:
        summary["parity"] = {**parity, "faces_source": faces.check_source}
    else:
        summary["parity_note"] = "CoreML cannot predict on this OS (macOS only): spec and weights verified instead"
    return mlmodel, contract, summary


def _tree_size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def format_summary(s: dict) -> str:
    """Human table of a summary (the JSON holds everything)."""
    lines = [f"{s['target']:7s} {s['files']['model']}"]
    size = s.get("size_bytes")
    lines.append(f"  size          {size / 1024:.1f} KiB" if size else "  size          ?")
    lines.append(f"  weights       {s['weights']}   params {s['params']:,}")
    if "ops" in s:
        hist = ", ".join(f"{k} {v}" for k, v in s["ops"].items())
        lines.append(f"  ops ({s['num_ops']})      {hist}")
    if s.get("quantize") == "int8" and "int8_coverage" in s:
        lines.append(f"  int8 coverage {100 * s['int8_coverage']:.1f}% of compute ops "
                     f"(float: {len(s['float_ops'])})   I/O {s['io_dtype']} → {s['output_dtype']}")
    if "coreml_ops" in s:
        hist = ", ".join(f"{k} {v}" for k, v in s["coreml_ops"].items())
        lines.append(f"  MIL ops       {hist}")
        lines.append(f"  weights check {s['weights_checked']} Keras kernels found ({s['weights_folded']} with BN folded), "
                     f"max relative error {s['weights_max_rel_err']:.3g} (tol {s['weights_tolerance']:g})")
    p = s.get("parity")
    if p:
        verdict = "PASS" if p["passed"] else "FAIL"
        lines.append(f"  parity        {verdict} on {p['faces']} faces: max |Δ| {p['max_abs']:.2e} (crop units), "
                     f"NME vs Keras {p['nme']:.4f} ({p['metric']} tol {p['tolerance']:g}); NME vs truth: "
                     f"Keras {p['nme_keras_vs_truth']:.4f}, exported {p['nme_exported_vs_truth']:.4f}")
    elif s.get("parity_note"):
        lines.append(f"  parity        {s['parity_note']}")
    lat = s.get("host_latency")
    if lat:
        lines.append(f"  host latency  {lat['median_ms']:.2f} ms median, p90 {lat['p90_ms']:.2f} ms "
                     f"({lat['threads']} thread, LiteRT)")
        if lat.get("x86_amx") == "available" and s.get("quantize") == "int8":
            # AMX int8 tiles are 64 channels wide: small mobile layers ran slower than float32 (docs/compression.md)
            lines.append("                this CPU has Intel AMX, which XNNPACK used for int8 and no phone has; "
                         "phone-like timing: python -m tfalign.profile MODEL --no-amx")
        elif s.get("quantize") == "int8":
            from mobile_export.profile.common import int8_timing_note
            note = int8_timing_note(lat.get("cpu_features"))
            if note:
                lines.append(f"                {note}")
    return "\n".join(lines)
