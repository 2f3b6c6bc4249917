"""web_demo/: the exported model in a browser, end to end in headless Chromium (Debian's, via playwright-core).

`npm install` + `npm run build` (once per session), the page served on 127.0.0.1 with two tiny exports (float32, int8
with uint8 I/O) of ``tests/export_helpers``' model, fed a face (LFPW's first training image when ../shared/data is
there, else a synthetic face) as a still image and as a fake camera stream (a .y4m made from the face). The page's
landmarks are compared with ``tfalign.runtime`` (Python LiteRT) on the same crop. The shipped default model (when
weights ship) also runs on the fake camera without a box, and must track the face. Skips with the reason where
Node/npm or Chromium is missing (``make venv`` installs Chromium: web_demo/scripts/install_chromium.sh).
"""
import hashlib
import json
import os
import pathlib
import shutil
import subprocess

import numpy as np
import pytest

from tests import export_helpers as H

ROOT = pathlib.Path(__file__).resolve().parents[1]
WEB = ROOT / "web_demo"
CHROMIUM = os.environ.get("TFALIGN_CHROMIUM", "/usr/bin/chromium")
# `npm install` with the committed lock, not `npm ci`: a registry that serves only this platform's optional rollup
# binaries leaves the others out of the lock, and `npm ci` then refuses the lock as out of sync (it did in CI).
NPM_INSTALL = ["npm", "install", "--no-audit", "--no-fund"]
GREEN = np.array([0, 255, 64])  # the overlay's landmark colour (src/main.js)


def _run(cmd, timeout, cwd=WEB):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _need_node():
    """Node and web_demo's locked dependencies, installed once (again only when package-lock.json is newer)."""
    if not (shutil.which("node") and shutil.which("npm")):
        pytest.skip("node/npm not found: install Node.js >= 20.19 with npm to build and test web_demo")
    stamp = WEB / "node_modules" / ".package-lock.json"
    if not stamp.is_file() or stamp.stat().st_mtime < (WEB / "package-lock.json").stat().st_mtime:
        _run(NPM_INSTALL, 600)


@pytest.fixture(scope="module")
def built():
    """The production build in web_demo/dist."""
    _need_node()
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"Chromium not found at {CHROMIUM}: run web_demo/scripts/install_chromium.sh (make venv does), "
                    "or set TFALIGN_CHROMIUM")
    _run(["npm", "run", "build"], 300)
    assert (WEB / "dist" / "litert" / "litert_wasm_internal.wasm").is_file(), "the build must serve LiteRT's WASM"
    return WEB / "dist"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny exports, float32 and int8 (uint8 I/O: LiteRT.js has no int8 tensors), with their contracts."""
    from mobile_export import contract as contract_lib, tflite
    from mobile_export.conformance import crops
    from tfalign.io import atomic_write, atomic_write_json
    from tfalign.runtime import contract_path_for

    out = tmp_path_factory.mktemp("models")
    arch, config, model = H.tiny()
    cal = crops(H.synthetic(4, config), config.input)[0]
    paths = {}
    for mode in ("none", "int8"):
        data = tflite.convert(model, mode, lambda: iter(cal), io_dtype="uint8")
        path = out / f"tiny_{mode}.tflite"
        atomic_write(str(path), data)
        atomic_write_json(contract_path_for(str(path)), contract_lib.tflite_contract(config.input, data,
                                                                                     {"name": f"tiny_{mode}"}))
        paths[mode] = path
    return paths


@pytest.fixture(scope="module")
def face(tmp_path_factory):
    """(RGB uint8 image, tight landmark box, folder holding face.png and camera.y4m)."""
    import cv2
    from tfalign.data import geometry

    data = pathlib.Path(os.environ.get("TFALIGN_DATA", ROOT.parent / "shared" / "data")) / "lfpw" / "trainset"
    if (data / "image_0001.jpg").is_file():
        from tfalign.data.readers import read_pts
        rec = read_pts(str(data / "image_0001.pts"), str(data / "image_0001.jpg"))
        image = cv2.cvtColor(cv2.imread(rec.image_path), cv2.COLOR_BGR2RGB)
    else:  # no shared data here: a synthetic face (tfalign.data.synthetic) keeps the test running
        from tfalign.data.synthetic import make_records
        rec = make_records(1, size=256)[0]
        image = rec.image
    folder = tmp_path_factory.mktemp("faces")
    # PNG: the browser and OpenCV decode it to identical pixels (JPEG decoders may differ by a level or two).
    cv2.imwrite(str(folder / "face.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    frames = _camera_frames(image)
    _write_y4m(folder / "camera.y4m", frames)
    return image, geometry.points_box(rec.points), folder, frames


CAMERA_SIZE = (640, 480)
CAMERA_SHIFTS = [(0, 0), (3, 1), (6, 2), (9, 3), (6, 4), (3, 3), (0, 2), (-3, 1)]  # px: a gently moving face


def _camera_frames(image):
    """RGB frames of the face (scaled to 400 px high) moving on a grey 640x480 background, and its placement."""
    import cv2
    h, w = image.shape[:2]
    s = 400 / h
    small = cv2.resize(image, (round(w * s), 400), interpolation=cv2.INTER_AREA)
    frames = []
    for dx, dy in CAMERA_SHIFTS:
        f = np.full((CAMERA_SIZE[1], CAMERA_SIZE[0], 3), 96, np.uint8)
        x0, y0 = (CAMERA_SIZE[0] - small.shape[1]) // 2 + dx, 40 + dy
        f[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small
        frames.append({"rgb": f, "scale": s, "offset": (x0, y0)})
    return frames


def _write_y4m(path, frames):
    """A YUV4MPEG2 4:2:0 file, what Chromium's --use-file-for-fake-video-capture plays (in a loop)."""
    import cv2
    w, h = CAMERA_SIZE
    with open(path, "wb") as fh:
        fh.write(f"YUV4MPEG2 W{w} H{h} F10:1 Ip A1:1 C420jpeg\n".encode())
        for f in frames:
            fh.write(b"FRAME\n" + cv2.cvtColor(f["rgb"], cv2.COLOR_RGB2YUV_I420).tobytes())


def _serve_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location("web_demo_serve", WEB / "scripts" / "serve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def server(built, models, face):
    """dist/ on 127.0.0.1 (a free port), with /models/ → the exports and /faces/ → the face files."""
    url, stop = _serve_module().serve_in_thread(built, {"/models/": models["none"].parent, "/faces/": face[2]})
    yield url
    stop()


def _page(url, tmp_path, mode="image", expect_error=False, **opts):
    """Runs web_demo/scripts/e2e.mjs; returns its result dict (landmarks, crop, times) and the canvas image."""
    import cv2
    out = tmp_path / f"e2e_{mode}"
    args = {"url": url, "mode": mode, "out": str(out), "chromium": CHROMIUM, **opts}
    proc = subprocess.run(["node", "scripts/e2e.mjs", json.dumps(args)], cwd=WEB, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == (1 if expect_error else 0), f"e2e.mjs: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    result = json.loads((out / "result.json").read_text())
    assert not [l for l in result["logs"] if l.startswith("OFFSITE")], "the page must load nothing from elsewhere"
    canvas = cv2.cvtColor(cv2.imread(result["canvasPng"]), cv2.COLOR_BGR2RGB)
    return result, canvas


def _page_crop(last, contract):
    inp = contract["input"]
    raw = np.frombuffer(__import__("base64").b64decode(last["crop"]), np.uint8)
    return raw.reshape(inp["height"], inp["width"], 3)


def _points_on_crop(model, crop_rgb, box):
    """Python LiteRT's landmarks (image pixels) for a given uint8 RGB crop of the face box."""
    from tfalign.data import geometry
    norm = model.run_normalized(geometry.normalize(crop_rgb, model.spec))
    return geometry.points_to_image(norm, geometry.box_affine(box, model.spec), model.spec)


def _assert_overlay(canvas, result, background):
    """Landmark dots at the drawn positions: green there in the screenshot, not green in the plain frame."""
    shown = np.asarray(result["last"]["shown"]).reshape(-1, 2)
    fw, fh = result["last"]["frame"]["width"], result["last"]["frame"]["height"]
    sx, sy = canvas.shape[1] / fw, canvas.shape[0] / fh
    inside = [(x, y) for x, y in shown if 0 <= x < fw - 0.5 and 0 <= y < fh - 0.5]
    assert len(inside) >= len(shown) // 2, "most landmarks should fall inside the frame"

    def green(img, x, y):
        return np.abs(img[int(round(y)), int(round(x))].astype(int) - GREEN).max() < 60

    drawn = np.mean([green(canvas, x * sx, y * sy) for x, y in inside])
    plain = np.mean([green(background, x, y) for x, y in inside])
    assert drawn >= 0.9, f"only {drawn:.0%} of landmark positions are drawn green"
    assert plain < 0.1, "the frame itself is green at the landmarks: the overlay check would prove nothing"


def test_core_math_matches_the_shared_golden_vectors():
    _need_node()
    proc = subprocess.run(["node", "--test", "test/"], cwd=WEB, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "# fail 0" in proc.stdout


@pytest.mark.parametrize("mode", ["none", "int8"])
def test_image_landmarks_match_python_litert_and_are_drawn(server, models, face, tmp_path, mode):
    from tfalign.data import geometry
    from tfalign.runtime import LandmarkModel

    image, box, _, _ = face
    model = LandmarkModel(str(models[mode]))
    box_arg = ",".join(f"{v:.4f}" for v in box)
    bench = {"warmupRuns": 2, "runs": 5} if mode == "none" else None
    result, canvas = _page(f"{server}?model=models/{models[mode].name}&image=faces/face.png&box={box_arg}", tmp_path,
                           benchmark=bench)
    last = result["last"]
    assert last["boxSource"] == "detector"  # a given box is used as is, no refinement
    np.testing.assert_allclose(last["box"], [float(f"{v:.4f}") for v in box], atol=1e-9)
    page_points = np.asarray(last["points"]).reshape(-1, 2)
    # The crop: the page's exact bilinear vs OpenCV's fixed-point warp differ by at most a level or two.
    page_crop = _page_crop(last, model.contract)
    py_crop = geometry.crop_image(image, last["box"], model.spec)
    diff = np.abs(page_crop.astype(int) - py_crop.astype(int))
    assert diff.max() <= 2 and diff.mean() < 0.5, f"crop differs: max {diff.max()}, mean {diff.mean():.3f}"
    # Landmarks: Python LiteRT on the page's own crop, and on its own crop of the same image and box.
    on_same_crop = np.abs(_points_on_crop(model, page_crop, last["box"]) - page_points).max()
    end_to_end = np.abs(model.predict(image, last["box"]) - page_points).max()
    assert on_same_crop <= 1.0, f"{mode}: page vs Python LiteRT on the same crop: {on_same_crop:.3f} px"
    assert end_to_end <= 1.0, f"{mode}: page vs Python LiteRT from the image: {end_to_end:.3f} px"
    assert set(last["times"]) == {"pre", "inference", "post"} and all(v >= 0 for v in last["times"].values())
    _assert_overlay(canvas, result, image)
    if bench:
        _check_benchmark(result["benchmark"], models[mode])


def _check_benchmark(doc, model_path):
    import jsonschema
    schema = json.loads((ROOT / "schemas" / "benchmark.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(doc)
    assert doc["model"]["sha256"] == hashlib.sha256(model_path.read_bytes()).hexdigest()
    assert doc["model"]["contract"] == model_path.name.replace(".tflite", ".contract.json")
    r = doc["results"][0]
    assert (r["delegate"], r["runtime"], r["runs"], r["warmup_runs"]) == ("xnnpack", "litert.js", 5, 2)
    assert 0 <= r["min_ms"] <= r["p50_ms"] <= r["p90_ms"] <= r["max_ms"]


def test_portrait_framing_then_refinement_matches_python(server, models, face, tmp_path):
    """No box: the whole image through tfalign.detect.PORTRAIT, then one re-crop on the predicted points' box."""
    from tfalign import detect
    from tfalign.data import geometry
    from tfalign.runtime import LandmarkModel

    image = face[0]
    model = LandmarkModel(str(models["none"]))
    result, _ = _page(f"{server}?model=models/{models['none'].name}&image=faces/face.png", tmp_path)
    last = result["last"]
    first = model.predict(image, detect.PORTRAIT.apply((0, 0, image.shape[1], image.shape[0])))
    refined_box = geometry.points_box(first)
    assert last["boxSource"] == "refined"
    np.testing.assert_allclose(last["box"], refined_box, atol=1.0)
    err = np.abs(model.predict(image, last["box"]) - np.asarray(last["points"]).reshape(-1, 2)).max()
    assert err <= 1.0, f"page vs Python after refinement: {err:.3f} px"


def test_fake_camera_stream_tracks_and_matches_python(server, models, face, tmp_path):
    from tfalign.data import geometry
    from tfalign.runtime import LandmarkModel
    import cv2

    image, box, folder, frames = face
    model = LandmarkModel(str(models["none"]))
    s, (x0, y0) = frames[0]["scale"], frames[0]["offset"]
    cam_box = ",".join(f"{v:.3f}" for v in (box[0] * s + x0, box[1] * s + y0, box[2] * s, box[3] * s))
    result, canvas = _page(f"{server}?model=models/{models['none'].name}&camera=1&box={cam_box}", tmp_path,
                           mode="camera", frames=8, fakeVideo=str(folder / "camera.y4m"))
    last = result["last"]
    assert result["frames"] >= 8 and not last["still"]
    assert last["frame"] == {"width": CAMERA_SIZE[0], "height": CAMERA_SIZE[1]}
    page_points = np.asarray(last["points"]).reshape(-1, 2)
    page_crop = _page_crop(last, model.contract)
    # Same crop, same landmarks: Python LiteRT on the crop the page cut from its camera frame.
    err = np.abs(_points_on_crop(model, page_crop, last["box"]) - page_points).max()
    assert err <= 1.0, f"camera: page vs Python LiteRT on the same crop: {err:.3f} px"
    # And the crop is the face of the stream: the closest y4m frame (through 4:2:0 and back) cropped at the same box.
    _closest_frame(frames, page_crop, last["box"], model)
    # Tracking: later frames crop on the previous frame's landmarks (the detector box only while none are usable).
    assert result["trackedFrames"] >= 1 and last["boxSource"] in ("tracking", "detector")
    if last["boxSource"] == "detector":
        np.testing.assert_allclose(last["box"], [float(v) for v in cam_box.split(",")], atol=1e-9)
    assert np.all(np.isfinite(last["shown"]))
    background = cv2.cvtColor(cv2.cvtColor(frames[0]["rgb"], cv2.COLOR_RGB2YUV_I420), cv2.COLOR_YUV2RGB_I420)
    _assert_overlay(canvas, result, background)


def _closest_frame(frames, page_crop, box, model):
    """Index of the stream frame whose crop at ``box`` is the page's crop (mean level difference < 6)."""
    import cv2
    from tfalign.data import geometry
    decoded = [cv2.cvtColor(cv2.cvtColor(f["rgb"], cv2.COLOR_RGB2YUV_I420), cv2.COLOR_YUV2RGB_I420) for f in frames]
    diffs = [np.abs(geometry.crop_image(d, box, model.spec).astype(int) - page_crop.astype(int)).mean()
             for d in decoded]
    assert min(diffs) < 6, f"the page's camera crop matches no frame of the stream (mean level differences {diffs})"
    return int(np.argmin(diffs))


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """The package's default model with its shipped weights, exported float32 (skips while none ship)."""
    from mobile_export import contract as contract_lib, export as export_lib, tflite
    from tfalign.io import atomic_write, atomic_write_json
    from tfalign.runtime import contract_path_for

    loaded = export_lib.load_model(None, None)
    if not loaded.weights.startswith("pretrained:"):
        pytest.skip(f"{loaded.name}: no shipped weights ({loaded.weights}); landmarks would not follow a face")
    path = tmp_path_factory.mktemp("shipped") / f"{loaded.name}.tflite"
    data = tflite.convert(loaded.inference, "none")
    atomic_write(str(path), data)
    atomic_write_json(contract_path_for(str(path)), contract_lib.tflite_contract(loaded.config.input, data,
                                                                                 {"name": loaded.name}))
    return path


def test_shipped_model_tracks_a_real_face_on_the_camera(built, shipped, face, tmp_path):
    """The trained default model on the fake camera without a box: portrait framing, then tracking on a real face."""
    from tfalign.runtime import LandmarkModel

    image, box, folder, frames = face
    if not (ROOT.parent / "shared" / "data" / "lfpw").is_dir() and "TFALIGN_DATA" not in os.environ:
        pytest.skip("needs a real face from ../shared/data (LFPW); the synthetic stand-in is not a trained model's input")
    url, stop = _serve_module().serve_in_thread(built, {"/models/": shipped.parent})
    try:
        result, canvas = _page(f"{url}?model=models/{shipped.name}&camera=1", tmp_path, mode="camera", frames=8,
                               fakeVideo=str(folder / "camera.y4m"))
    finally:
        stop()
    model = LandmarkModel(str(shipped))
    last = result["last"]
    page_points = np.asarray(last["points"]).reshape(-1, 2)
    page_crop = _page_crop(last, model.contract)
    assert np.abs(_points_on_crop(model, page_crop, last["box"]) - page_points).max() <= 1.0
    # A trained model keeps the face: every frame after the first crops on the previous landmarks.
    assert result["trackedFrames"] >= result["frames"] - 1, result
    # ... and its landmarks are on the face: mean error against LFPW's markup (moved into that camera frame).
    k = _closest_frame(frames, page_crop, last["box"], model)
    from tfalign.data.readers import read_pts
    data = pathlib.Path(os.environ.get("TFALIGN_DATA", ROOT.parent / "shared" / "data")) / "lfpw" / "trainset"
    truth = read_pts(str(data / "image_0001.pts"), str(data / "image_0001.jpg")).points * frames[k]["scale"] \
        + np.asarray(frames[k]["offset"])
    size = np.sqrt(box[2] * box[3]) * frames[k]["scale"]
    err = np.linalg.norm(page_points - truth, axis=1).mean() / size
    assert err < 0.1, f"mean landmark error {err:.3f} of the face size: the page's landmarks are not on the face"
    _assert_overlay(canvas, result, frames[k]["rgb"])


def test_copy_model_copies_pairs_and_lists_them(models, tmp_path):
    dest = tmp_path / "assets"
    script = str(WEB / "scripts" / "copy_model.sh")
    proc = subprocess.run(["bash", script, str(models["none"].parent), str(dest)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((dest / "index.json").read_text()) == {"models": ["tiny_int8.tflite", "tiny_none.tflite"]}
    assert (dest / "tiny_none.contract.json").read_bytes() == models["none"].with_suffix(".contract.json").read_bytes()
    bad = subprocess.run(["bash", script, str(tmp_path / "nowhere"), str(dest)], capture_output=True, text=True)
    assert bad.returncode == 2 and "nowhere" in bad.stderr and "not found" in bad.stderr


def test_a_missing_model_is_reported_by_name(server, tmp_path):
    result, _ = _page(f"{server}?model=models/nope.tflite", tmp_path, expect_error=True)
    assert "nope.tflite" in result["error"] and "not found" in result["error"]
