"""pipnet_r18 trained on a GPU through a PyTorch mirror of the Keras graph, then imported into tfalign.

TensorFlow does not install on the lent GPU machine (its image has PyTorch, not TensorFlow, and a TensorFlow wheel is
far over what can be carried there), while one epoch of pipnet_r18 takes ~38 s on the 2 CPU cores here. So the same
network is written once more in PyTorch, layer for layer (``R18PIP``: tfalign's ResNet-18 already pads like
PyTorch, so every convolution has the same geometry), trained there on the *same* samples — tfalign's own pipeline
(``tfalign.data.pipeline._Source``: crop, augmentation, flip permutation) imports without TensorFlow — with the
same loss (``tfalign.models.pipnet.pip_loss``, eq. 5) and the same decode, and the weights come back as float16
chunks that ``import`` loads into ``tfalign``'s Keras pipnet_r18 by layer name. ``import`` refuses weights whose
Keras outputs differ from the PyTorch model's on the validation crops it returns, so a layout mistake cannot
ship.

Usage::

    # on the GPU machine (PyTorch, numpy, OpenCV, Pillow; no TensorFlow), LFPW copied into an ignored folder of the
    # working tree (never committed). The shipped weights: recipe B of this command (then --seed 1 for replicates).
    python bench/pipnet_gpu.py train --data 300w:.devdata/lfpw/trainset --out $OUT --minutes 60 \\
        --max-epochs 450 --val-every 10 --recipe A=adam:1e-3:16 --recipe B=adamw:1e-3:16:0.05
    # here: check and import one recipe's weights as a tfalign run folder (bench/pipnet.py --run reads it)
    python bench/pipnet_gpu.py import --from DIR --recipe B --out runs/pipnet_r18_gpu_seed0_B
    python bench/pipnet.py --ship pipnet_r18=runs/pipnet_r18_gpu_seed0_B

Two recipes train side by side on one GPU (one process each, half the CPU cores each for the sampler):
450 epochs x 45 steps took 290 s on an H200. ``--minutes`` shortens the cosine schedule when the budget is
smaller than --max-epochs needs (planned from the speed of epochs 3-5). The loss and the decode were checked
against tfalign's on the same random maps (masks included): equal to float32 rounding.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
import types

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

PRESET = "pipnet_r18"
CHUNK_BYTES = 15 * 2 ** 20  # files that come back from the GPU machine are capped at 16 MiB each
VERIFY_FACES = 8  # validation crops whose PyTorch outputs travel back for the import check


# --- shared facts (no TensorFlow): the preset's config as JSON, the NRM average -----------------------------------
def input_namespace(cfg_input: dict):
    """An object with the InputSpec fields the data pipeline reads (tfalign.models.base needs TensorFlow)."""
    from tfalign.schemes import get_scheme
    ns = types.SimpleNamespace(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg_input.items()})
    ns.num_points = sum(get_scheme(s).num_points for s in ns.schemes)
    return ns


def merge_matrix(neighbors) -> np.ndarray:
    """tfalign.models.pipnet.nrm_merge_matrix (that module imports TensorFlow); ``import`` checks they agree."""
    nb = np.asarray(neighbors, np.int64)
    n, c = nb.shape
    m = np.zeros((n, n + n * c), np.float32)
    m[np.arange(n), np.arange(n)] = 1.0
    for j in range(n):
        for k in range(c):
            m[nb[j, k], n + j * c + k] = 1.0
    return m / m.sum(axis=1, keepdims=True)


# --- PyTorch side ----------------------------------------------------------------------------------------------
def torch_model(num_points: int, num_neighbors: int, head_std: float):
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1)
            self.down = None
            if stride != 1 or cin != cout:
                self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, 0, bias=False),
                                          nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1))

        def forward(self, x):
            y = torch.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            return torch.relu(y + (x if self.down is None else self.down(x)))

    class R18PIP(nn.Module):
        """tfalign's resnet18 backbone + PIP heads; layer names map 1:1 onto the Keras ones (``KERAS_NAMES``)."""

        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64, eps=1e-5, momentum=0.1)
            blocks, cin = [], 64
            for stage, cout in enumerate((64, 128, 256, 512), start=1):
                for b in range(2):
                    blocks.append(Block(cin, cout, 2 if stage > 1 and b == 0 else 1))
                    cin = cout
            self.blocks = nn.ModuleList(blocks)
            n, c = num_points, num_neighbors
            self.heads = nn.ModuleDict({"score": nn.Conv2d(512, n, 1), "offset_x": nn.Conv2d(512, n, 1),
                                        "offset_y": nn.Conv2d(512, n, 1), "neighbor_x": nn.Conv2d(512, n * c, 1),
                                        "neighbor_y": nn.Conv2d(512, n * c, 1)})
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            for h in self.heads.values():
                nn.init.normal_(h.weight, std=head_std)
                nn.init.zeros_(h.bias)

        def forward(self, image_uint8):
            # tfalign: x = (pixel - 127.5) / 127.5, then the backbone's Rescaling to (pixel - 114.5) / 57.6.
            x = (image_uint8.float() - 114.5) / 57.6
            x = torch.relu(self.bn1(self.conv1(x)))
            x = nn.functional.max_pool2d(x, 3, 2, 1)
            for block in self.blocks:
                x = block(x)
            return {k: h(x) for k, h in self.heads.items()}

    return R18PIP()


def keras_names() -> dict:
    """PyTorch parameter-owner module name → Keras layer name of tfalign's pipnet_r18."""
    names = {"conv1": "resnet18_conv1", "bn1": "resnet18_bn1"}
    for i in range(8):
        prefix = f"resnet18_layer{i // 2 + 1}_{i % 2}"
        names.update({f"blocks.{i}.conv1": f"{prefix}_conv1", f"blocks.{i}.bn1": f"{prefix}_bn1",
                      f"blocks.{i}.conv2": f"{prefix}_conv2", f"blocks.{i}.bn2": f"{prefix}_bn2"})
        if i in (2, 4, 6):  # the first block of stages 2-4 halves the resolution: 1x1 stride-2 shortcut
            names.update({f"blocks.{i}.down.0": f"{prefix}_down_conv", f"blocks.{i}.down.1": f"{prefix}_down_bn"})
    for k in ("score", "offset_x", "offset_y", "neighbor_x", "neighbor_y"):
        names[f"heads.{k}"] = f"pip_{k}"
    return names


def to_keras_arrays(model) -> dict:
    """{keras layer name: [arrays in Keras order]}: conv kernels OIHW → HWIO; BN gamma, beta, mean, variance."""
    from torch import nn
    mapping, out = keras_names(), {}
    for name, module in model.named_modules():
        if name not in mapping:
            continue
        if isinstance(module, nn.Conv2d):
            arrays = [module.weight.detach().cpu().numpy().transpose(2, 3, 1, 0)]
            if module.bias is not None:
                arrays.append(module.bias.detach().cpu().numpy())
        else:
            arrays = [t.detach().cpu().numpy() for t in (module.weight, module.bias, module.running_mean,
                                                         module.running_var)]
        out[mapping[name]] = arrays
    return out


def pack(arrays: dict) -> tuple:
    """{layer: [arrays]} → (index, byte chunks of ≤ CHUNK_BYTES): float16, concatenated in order."""
    flat, index, offset = [], [], 0
    for layer, values in arrays.items():
        for j, a in enumerate(values):
            index.append({"layer": layer, "i": j, "shape": list(a.shape), "offset": offset})
            flat.append(np.asarray(a, np.float16).ravel())
            offset += flat[-1].size
    blob = np.concatenate(flat).tobytes()
    return index, [blob[s:s + CHUNK_BYTES] for s in range(0, len(blob), CHUNK_BYTES)]


def unpack(index: list, chunks: list) -> dict:
    """Inverse of :func:`pack`: {layer: [float32 arrays in Keras order]}."""
    blob = b"".join(chunks)
    total = max((e["offset"] + int(np.prod(e["shape"])) for e in index), default=0)
    if len(blob) != 2 * total:
        raise ValueError(f"weight chunks hold {len(blob)} bytes, the index needs {2 * total} (truncated transfer?)")
    flat = np.frombuffer(blob, np.float16)
    out = {}
    for e in sorted(index, key=lambda e: (e["layer"], e["i"])):
        size = int(np.prod(e["shape"]))
        out.setdefault(e["layer"], []).append(flat[e["offset"]:e["offset"] + size].astype(np.float32)
                                              .reshape(e["shape"]))
    return out


def set_keras_weights(model, per_layer: dict) -> None:
    """Load :func:`unpack`'s arrays by layer name; the two sets of layer names must be the same."""
    weighted = {layer.name for layer in model.layers if layer.weights}
    if set(per_layer) != weighted:
        raise ValueError(f"layers differ: only PyTorch {sorted(set(per_layer) - weighted)}, "
                         f"only Keras {sorted(weighted - set(per_layer))}")
    for name, arrays in per_layer.items():
        model.get_layer(name).set_weights(arrays)


def decode(maps, merge):
    """tfalign's PIPDecode in PyTorch: argmax cell + its offsets, averaged with the neighbours' predictions."""
    import torch
    score = maps["score"]
    b, n, h, w = score.shape
    best = score.flatten(2).argmax(-1)  # [B, N]
    col, row = (best % w).float(), torch.div(best, w, rounding_mode="floor").float()

    def pick(key, per):
        m = maps[key].float().flatten(2).view(b, n, per, h * w)
        return m.gather(3, best[:, :, None, None].expand(b, n, per, 1))[..., 0]  # [B, N, per]
    c = maps["neighbor_x"].shape[1] // n
    x = torch.cat([col + pick("offset_x", 1)[..., 0], (col[..., None] + pick("neighbor_x", c)).flatten(1)], 1)
    y = torch.cat([row + pick("offset_y", 1)[..., 0], (row[..., None] + pick("neighbor_y", c)).flatten(1)], 1)
    mt = merge.t()
    return torch.stack([x @ mt / w, y @ mt / h], -1)


def pip_loss(maps, points, mask, neighbors, alpha, beta):
    """tfalign.models.pipnet.pip_loss (eq. 5, no STC task) on [B, C, H, W] maps; targets at the positive cells."""
    import torch
    score = maps["score"].float()
    b, n, h, w = score.shape
    sx, sy = points[..., 0] * w, points[..., 1] * h
    cx, cy = sx.floor().clamp(0, w - 1), sy.floor().clamp(0, h - 1)
    cell = (cy * w + cx).long()  # [B, N]
    target = torch.zeros_like(score).flatten(2).scatter_(2, cell[..., None], 1.0).view_as(score)
    m = mask[:, :, None, None]
    loss_s = ((score - target) ** 2 * m).sum() / (mask.sum() * h * w).clamp_min(1e-9)

    def at_cell(key, per):
        v = maps[key].float().flatten(2).view(b, n, per, h * w)
        return v.gather(3, cell[:, :, None, None].expand(b, n, per, 1))[..., 0]
    loss_o = (((at_cell("offset_x", 1)[..., 0] - (sx - cx)).abs() + (at_cell("offset_y", 1)[..., 0] - (sy - cy)).abs())
              * mask).sum() / (2 * mask.sum()).clamp_min(1e-9)
    c = neighbors.shape[1]
    nb_m = mask[:, neighbors] * mask[..., None]  # [B, N, C]
    tx, ty = sx[:, neighbors] - cx[..., None], sy[:, neighbors] - cy[..., None]
    loss_n = (((at_cell("neighbor_x", c) - tx).abs() + (at_cell("neighbor_y", c) - ty).abs()) * nb_m).sum() \
        / (2 * nb_m.sum()).clamp_min(1e-9)
    return loss_s + alpha * loss_o + beta * loss_n, (loss_s, loss_o, loss_n)


def inter_ocular_nme(pred, truth, left=36, right=45) -> np.ndarray:
    """Per face: mean point error / outer-eye-corner distance (the crop is a similarity of the image)."""
    norm = np.linalg.norm(truth[:, left] - truth[:, right], axis=-1)
    return np.linalg.norm(pred - truth, axis=-1).mean(-1) / norm


def _recipes(items):
    out = {}
    for item in items:
        name, _, body = item.partition("=")
        parts = body.split(":")
        if not name or len(parts) not in (3, 4) or parts[0] not in ("adam", "adamw"):
            raise SystemExit(f"--recipe {item!r}: expected NAME=adam|adamw:LR:BATCH[:WEIGHT_DECAY]")
        out[name] = {"optimizer": parts[0], "lr": float(parts[1]), "batch": int(parts[2]),
                     "weight_decay": float(parts[3]) if len(parts) == 4 else 0.0}
    return out


def train(args) -> int:
    """One PyTorch process per recipe (they share the GPU); each trains for the same wall-clock budget."""
    import multiprocessing as mp
    recipes = _recipes(args.recipe)
    os.makedirs(args.out, exist_ok=True)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_train_one, args=(args, name, r, len(recipes))) for name, r in recipes.items()]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return max(p.exitcode or 0 for p in procs)


def _train_one(args, name, recipe, n_recipes):
    import torch
    import cv2
    from tfalign.data import pipeline, spec as data_spec

    cv2.setNumThreads(1)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.benchmark = True
    with open(os.path.join(REPO, "tfalign", "weights", "pipnet_mbv3", "config.json"), encoding="utf-8") as fh:
        cfg = json.load(fh)  # same input spec and neighbour table as the pipnet_r18 preset
    spec = input_namespace(cfg["input"])
    neighbors = np.asarray(cfg["neighbors"], np.int64)
    records = data_spec.load_records(args.data)
    train_recs = data_spec.split_records(records, "train")[:args.train_faces or None]
    val_recs = data_spec.split_records(records, "val")
    aug = pipeline.AugmentConfig()
    src = pipeline._Source(train_recs, spec, aug, True, args.seed, True)  # noqa: SLF001 - the pipeline's sampler
    val_src = pipeline._Source(val_recs, spec, aug, False, 0, True)  # noqa: SLF001
    val = [val_src.sample(i, 0) for i in range(len(val_recs))]
    val_img = torch.from_numpy(np.stack([v[0] for v in val])).permute(0, 3, 1, 2).contiguous()
    val_pts = np.stack([v[1] for v in val])

    n_train = len(train_recs)

    class Samples(torch.utils.data.Dataset):
        """Position p of the whole run: face perm(epoch)[k] of epoch p // n, k = p % n; each position has its own
        augmentation (the pipeline's seed/position rule), so a run is reproducible whatever the worker count."""

        def __len__(self):
            return args.max_epochs * n_train

        def __getitem__(self, p):
            epoch, k = divmod(int(p), n_train)
            i = int(np.random.default_rng([args.seed, epoch]).permutation(n_train)[k])
            image, points, mask = src.sample(i, p)[:3]
            return torch.from_numpy(image).permute(2, 0, 1), torch.from_numpy(points), torch.from_numpy(mask)

    workers = max(1, (os.cpu_count() or 2) // n_recipes - 1)
    batch = recipe["batch"]
    # Workers fork before CUDA starts in this process.
    # One loader for the whole run (workers start once); positions are read in order, an epoch is n // batch steps.
    stream = iter(torch.utils.data.DataLoader(Samples(), batch_size=batch, shuffle=False, drop_last=True,
                                              num_workers=workers, pin_memory=True, prefetch_factor=4,
                                              persistent_workers=True, multiprocessing_context="fork"))

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = torch_model(spec.num_points, neighbors.shape[1], cfg["head_init_std"]).to(dev)
    model = model.to(memory_format=torch.channels_last)
    opt_cls = torch.optim.AdamW if recipe["optimizer"] == "adamw" else torch.optim.Adam
    opt = opt_cls(model.parameters(), lr=recipe["lr"], weight_decay=recipe["weight_decay"])
    nb_t = torch.from_numpy(neighbors).to(dev)
    merge = torch.from_numpy(merge_matrix(neighbors)).to(dev)
    alpha = beta = 0.1  # §4.1.2 at stride 32
    steps_per_epoch = len(train_recs) // batch
    log = {"recipe": recipe, "name": name, "device": str(dev), "torch": torch.__version__,
           "train_faces": len(train_recs), "val_faces": len(val_recs), "steps_per_epoch": steps_per_epoch,
           "epochs": [], "seed": args.seed, "command": list(sys.argv),
           "input": cfg["input"], "neighbors": neighbors.tolist(), "head_init_std": cfg["head_init_std"]}

    def evaluate():
        model.eval()
        with torch.no_grad(), torch.autocast(dev.type, torch.bfloat16, enabled=dev.type == "cuda"):
            preds = []
            for s in range(0, len(val_img), 32):
                preds.append(decode(model(val_img[s:s + 32].to(dev).contiguous(
                    memory_format=torch.channels_last)), merge).float().cpu().numpy())
        model.train()
        return float(inter_ocular_nme(np.concatenate(preds), val_pts).mean())

    budget = args.minutes * 60.0
    t0 = time.time()
    total_epochs = args.max_epochs
    epoch = 0
    while epoch < total_epochs:
        model.train()
        losses = []
        for _ in range(steps_per_epoch):
            images, points, mask = next(stream)
            step = epoch * steps_per_epoch + len(losses)
            lr = recipe["lr"] * 0.5 * (1 + math.cos(math.pi * min(1.0, step / (total_epochs * steps_per_epoch))))
            for g in opt.param_groups:
                g["lr"] = lr
            images = images.to(dev, non_blocking=True).contiguous(memory_format=torch.channels_last)
            with torch.autocast(dev.type, torch.bfloat16, enabled=dev.type == "cuda"):
                maps = model(images)
            loss, _ = pip_loss(maps, points.to(dev), mask.to(dev), nb_t, alpha, beta)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        epoch += 1
        elapsed = time.time() - t0
        if epoch == 2:
            warm = elapsed
        elif epoch == 5:
            # The cosine schedule needs its length: as many epochs as the budget allows at the speed of epochs 3-5
            # (the first ones include worker start-up and cuDNN autotuning: 8 s instead of 0.6 s on the H200).
            total_epochs = max(6, min(args.max_epochs, 5 + int((budget - elapsed) / ((elapsed - warm) / 3))))
            log["epochs_planned"] = total_epochs
        row = {"epoch": epoch, "loss": float(np.mean(losses)), "lr": lr, "seconds": round(elapsed, 1)}
        if epoch % args.val_every == 0 or epoch == total_epochs:
            row["val_nme"] = evaluate()
            print(f"[{name}] epoch {epoch}/{total_epochs} loss {row['loss']:.4f} val NME {row['val_nme']:.4f} "
                  f"({elapsed:.0f} s)", flush=True)
        log["epochs"].append(row)
        if elapsed > budget * 1.15:  # slower than measured (shared GPU/CPU): stop rather than miss the deadline
            log["stopped_early"] = True
            break
    log["seconds"] = round(time.time() - t0, 1)
    _save(model, merge, val_img, dev, log, args.out, name)


def _save(model, merge, val_img, dev, log, out, name):
    """float16 weights in ≤15 MiB chunks + the PyTorch outputs of the first validation crops, computed with those
    float16 weights, which ``import`` must reproduce in Keras."""
    import torch
    index, chunks = pack(to_keras_arrays(model))
    # The reference outputs come from the float16-rounded weights, i.e. exactly what Keras will hold.
    with torch.no_grad():
        for p in list(model.parameters()) + list(model.buffers()):
            if p.dtype.is_floating_point:
                p.copy_(p.half().float())
        model.eval()
        maps = model(val_img[:VERIFY_FACES].to(dev).float())
        ref = decode(maps, merge).cpu().numpy()
        score = maps["score"].cpu().numpy().transpose(0, 2, 3, 1)
    log.update(index=index, chunks=len(chunks), verify={
        "landmarks": ref.tolist(), "score": np.round(score, 5).tolist()})
    files = [(f"{name}_weights{k}.bin", c) for k, c in enumerate(chunks)]
    files.append((f"{name}_log.json", json.dumps(log).encode()))
    for file_name, data in files:  # temp file + rename: a killed run leaves no half-written chunk
        path = os.path.join(out, file_name)
        with open(path + ".tmp", "wb") as fh:
            fh.write(data)
        os.replace(path + ".tmp", path)
    print(f"[{name}] saved {len(chunks)} chunk(s); final val NME {log['epochs'][-1].get('val_nme')}", flush=True)


# --- TensorFlow side -------------------------------------------------------------------------------------------
def import_run(args) -> int:
    """Load one recipe's weights into tfalign's pipnet_r18, check them against the PyTorch outputs, write a run."""
    from tfalign.config import to_dict
    from tfalign.data import spec as data_spec
    from tfalign.io import atomic_write_json
    from tfalign.models.base import resolve
    from tfalign.models import pipnet
    from tfalign.training.data import make_dataset

    with open(os.path.join(args.source, f"{args.recipe}_log.json"), encoding="utf-8") as fh:
        log = json.load(fh)
    chunks = []
    for k in range(log["chunks"]):
        with open(os.path.join(args.source, f"{args.recipe}_weights{k}.bin"), "rb") as fh:
            chunks.append(fh.read())
    arch, config = resolve(PRESET)
    if not np.allclose(merge_matrix(config.neighbors), pipnet.nrm_merge_matrix(config.neighbors)):
        raise SystemExit("bench/pipnet_gpu.py: merge_matrix differs from tfalign.models.pipnet.nrm_merge_matrix")
    # The GPU side read the input spec and neighbour table from pipnet_mbv3's config.json (no TensorFlow there to
    # resolve the preset): they must be the preset's, or the heads would be read against other neighbours.
    preset = json.loads(json.dumps({"input": to_dict(config.input), "neighbors": [list(r) for r in config.neighbors]}))
    for key in ("input", "neighbors"):
        if key in log and log[key] != preset[key]:
            raise SystemExit(f"bench/pipnet_gpu.py: {args.source}: the run's {key} differs from the {PRESET} preset's")
    model = arch.build(config)
    try:
        set_keras_weights(model, unpack(log["index"], chunks))
    except ValueError as exc:
        raise SystemExit(f"bench/pipnet_gpu.py: {args.source}: {exc}") from None

    val = data_spec.split_records(data_spec.load_records(args.data), "val")
    batch = next(iter(make_dataset(val[:VERIFY_FACES], config.input, training=False, batch_size=VERIFY_FACES,
                                   seed=0)))
    order = np.argsort(batch["index"].numpy())
    out = model(batch["image"], training=False)
    got = out["landmarks"].numpy()[order]
    want = np.asarray(log["verify"]["landmarks"], np.float32)
    score_err = np.abs(out["score"].numpy()[order] - np.asarray(log["verify"]["score"], np.float32)).max()
    dist = np.linalg.norm(got - want, axis=-1) * config.input.width  # px, per face and point
    # An argmax near-tie (two cells within float noise of each other; PyTorch ran on a GPU) can move a point by
    # most of a cell, so the points are checked as a fraction, the score maps everywhere.
    close = float(np.mean(dist < 0.05))
    px = float(np.median(dist))
    print(f"Keras vs PyTorch on {VERIFY_FACES} val crops: landmarks median {px:.4f} px, max {dist.max():.3f} px, "
          f"{close:.1%} within 0.05 px; score max |diff| {score_err:.2e}")
    if close < 0.98 or score_err > 1e-2:
        raise SystemExit("bench/pipnet_gpu.py: the imported weights do not reproduce the PyTorch outputs")

    os.makedirs(args.out, exist_ok=True)
    model.save_weights(os.path.join(args.out, "best.weights.h5"))
    # The recipe as a tfalign TrainSpec, so `python -m tfalign.train --set train.*=...` repeats it on TensorFlow.
    r = log["recipe"]
    n_epochs = log["epochs"][-1]["epoch"]
    config = dataclasses.replace(config, train=dataclasses.replace(
        config.train, batch_size=r["batch"], epochs=n_epochs, optimizer=r["optimizer"], learning_rate=r["lr"],
        schedule="cosine", weight_decay=r["weight_decay"]))
    epochs, last = [], (0, 0.0)
    for row in log["epochs"]:
        if "val_nme" in row:  # validated every --val-every epochs; seconds = mean wall time per epoch since the last
            per = (row["seconds"] - last[1]) / max(1, row["epoch"] - last[0])
            epochs.append({"epoch": row["epoch"], "loss": row["loss"], "val_nme": row["val_nme"], "lr": row["lr"],
                           "seconds": round(per, 2)})
            last = (row["epoch"], row["seconds"])
    atomic_write_json(os.path.join(args.out, "config.json"), {
        "model": PRESET, "config": to_dict(config), "init": None, "steps_per_epoch_effective": log["steps_per_epoch"],
        "trained_with": {"script": "bench/pipnet_gpu.py", "framework": f"torch {log['torch']}",
                         "device": log["device"], "recipe": log["recipe"], "epochs": len(log["epochs"]),
                         "seconds": log["seconds"], "import_check": {"median_px": px, "max_px": float(dist.max()), "within_0.05px": close}}})
    atomic_write_json(os.path.join(args.out, "history.json"), {
        "epochs": epochs, "sessions": [{"command": " ".join(log["command"])}],
        "note": "val_nme of the weights after the last epoch (cosine schedule to 0); best.weights.h5 holds the last "
                "epoch's weights, not a validation-selected one"})
    print(f"wrote {args.out} (final val NME {epochs[-1]['val_nme']:.4f} by PyTorch)")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train with PyTorch (no TensorFlow needed)")
    t.add_argument("--data", required=True, help="LFPW spec without a split suffix, e.g. 300w:DIR (#train is used, "
                                                 "#val evaluated)")
    t.add_argument("--out", required=True, help="folder for the weight chunks and logs")
    t.add_argument("--minutes", type=float, default=7.0, help="wall-clock training budget per recipe")
    t.add_argument("--max-epochs", type=int, default=400, help="upper bound on the epochs the budget allows")
    t.add_argument("--val-every", type=int, default=10, help="validate every this many epochs")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--train-faces", type=int, default=0, help="use only the first N training faces (smoke tests)")
    t.add_argument("--recipe", action="append", required=True,
                   help="NAME=adam|adamw:LR:BATCH[:WEIGHT_DECAY]; several train side by side on one GPU")
    i = sub.add_parser("import", help="load a recipe's weights into tfalign (TensorFlow) and write a run folder")
    i.add_argument("--from", dest="source", required=True, help="folder holding NAME_log.json and the chunks")
    i.add_argument("--recipe", required=True, help="which recipe's weights (NAME)")
    i.add_argument("--data", default="300w:" + os.path.join(os.path.dirname(REPO), "shared", "data", "lfpw",
                                                            "trainset"), help="LFPW spec (its #val is checked)")
    i.add_argument("--out", required=True, help="run folder to write (config.json, history.json, best.weights.h5)")
    args = p.parse_args(argv)
    return train(args) if args.cmd == "train" else import_run(args)


if __name__ == "__main__":
    raise SystemExit(main())
