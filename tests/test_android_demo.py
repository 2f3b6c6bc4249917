"""android_demo: the plain-JVM core's JUnit tests (Debian's kotlinc + junit4, no Gradle or Maven), the golden
vectors they share with the Python package and the iOS core, the model copy script, and static checks of the
Android layer (which needs the Android SDK to build, so it is parsed, not compiled, here)."""
from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest

import app_reference as ref

REPO = pathlib.Path(__file__).resolve().parents[1]
DEMO = REPO / "android_demo"
CORE = DEMO / "core"
APP = DEMO / "app"
COPY_MODELS = DEMO / "scripts" / "copy_models.sh"
JARS = ("kotlin-stdlib.jar", "junit4.jar", "hamcrest-core.jar")


# --- the shared vectors --------------------------------------------------------------------------------------------

def test_golden_vectors_are_what_the_reference_generates():
    for path, obj in ref.generate().items():
        assert path.is_file(), f"{path} missing: run python tests/app_reference.py --write"
        assert path.read_text() == ref.dumps(obj), f"{path} is stale: run python tests/app_reference.py --write"


def test_one_euro_with_beta_zero_is_a_first_order_low_pass():
    # Independent of the reference code: with beta = 0 the cutoff is constant, y += a (x - y), a = 1 / (1 + tau / dt).
    case = next(c for c in json.loads(ref.ONE_EURO_FILE.read_text())["cases"] if c["name"] == "step")
    assert case["params"]["beta"] == 0.0
    ts, xs = case["timestamps_s"], case["inputs"]
    tau = 1.0 / (2 * np.pi * case["params"]["min_cutoff"])
    y = [xs[0]]
    for k in range(1, len(xs)):
        a = 1.0 / (1.0 + tau / (ts[k] - ts[k - 1]))
        y.append(y[-1] + a * (xs[k] - y[-1]))
    np.testing.assert_allclose(case["expected"], y, rtol=0, atol=1e-12)


def test_one_euro_speed_raises_the_cutoff():
    ramp_t = np.arange(30) / 30.0
    ramp = 100.0 * ramp_t
    lag = {}
    for beta in (0.0, 0.5):
        f = ref.OneEuroFilter(min_cutoff=1.0, beta=beta)
        out = [f(t, x) for t, x in zip(ramp_t, ramp)]
        lag[beta] = ramp[-1] - out[-1]
    assert lag[0.5] < 0.2 * lag[0.0]
    f = ref.OneEuroFilter()
    assert [f(t, 7.0) for t in ramp_t] == [7.0] * 30
    f = ref.OneEuroFilter()
    f(0.0, 1.0)
    y = f(0.1, 2.0)
    assert f(0.1, 500.0) == y and f(0.05, -500.0) == y


def test_one_euro_rejects_bad_parameters():
    with pytest.raises(ValueError, match="min_cutoff"):
        ref.OneEuroFilter(min_cutoff=0.0)


def test_app_case_contracts_follow_the_contract_schema():
    from tfalign.runtime import validate_contract

    cases = json.loads(ref.APP_CASES_FILE.read_text())["cases"]
    assert {c["contract"]["input"]["dtype"] for c in cases} == {"float32", "float16", "int8", "uint8"}
    for c in cases:
        validate_contract(c["contract"], c["name"])


def test_app_crop_matches_the_package_crop_within_one_level():
    """The apps resample with exact bilinear weights; tfalign crops with OpenCV: at most 1 level apart, rarely."""
    from tfalign.data import geometry
    from tfalign.runtime import contract_spec

    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (48, 56, 3)).astype(np.uint8)
    _, contract = ref._variant("probe", input__height=20, input__width=20, input__shape=[1, 20, 20, 3],
                               crop__shift_x=0.1)
    _, gray = ref._variant("probe_gray", input__height=20, input__width=20, input__channels=1, input__color="GRAY",
                           input__shape=[1, 20, 20, 1])
    differing = total = 0
    for _ in range(12):
        box = [*rng.uniform(-8, 40, 2), *rng.uniform(4, 40, 2)]
        ours = ref.sample_crop(image, contract, ref.crop_window(box, contract)).astype(int)
        theirs = geometry.crop_image(image, box, contract_spec(contract)).astype(int)
        assert np.abs(ours - theirs).max() <= 1, box
        differing += int((ours != theirs).sum())
        total += ours.size
        g_ours = ref.gray(ref.sample_crop(image, gray, ref.crop_window(box, gray))).astype(int)
        # mean 0, std 1: geometry.normalize returns OpenCV's gray levels unchanged.
        g_theirs = geometry.normalize(geometry.crop_image(image, box, contract_spec(gray)),
                                      types.SimpleNamespace(channels=1, mean=0.0, std=1.0)).astype(int)
        assert np.abs(g_ours - g_theirs).max() <= 1, box
    assert differing / total < 0.01


# --- the Kotlin core -----------------------------------------------------------------------------------------------

def _jvm_tools():
    missing = [t for t in ("kotlinc", "java") if shutil.which(t) is None]
    missing += [j for j in JARS if not (pathlib.Path("/usr/share/java") / j).is_file()]
    if missing:
        pytest.skip(f"Kotlin/JUnit toolchain missing ({', '.join(missing)}): `make kotlin-tools` installs Debian's "
                    "kotlin and junit4 packages")


def _run_core(golden=None, props=""):
    env = dict(os.environ, TFALIGN_JVM_PROPS=props)
    if golden is not None:
        env["TFALIGN_GOLDEN"] = str(golden)
    # The build folder is shared between runs: run_tests.sh recompiles only when a source changed.
    return subprocess.run(["bash", str(CORE / "run_tests.sh")], capture_output=True, text=True, env=env,
                          timeout=600)


def test_core_unit_tests_pass_and_write_a_schema_valid_benchmark(tmp_path):
    _jvm_tools()
    import jsonschema

    report = tmp_path / "benchmark.json"
    proc = _run_core(props=f"-Dtfalign.benchmarkOut={report}")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    m = re.search(r"OK \((\d+) tests\)", out)
    assert m and int(m.group(1)) >= 35, out[-2000:]
    schema = json.loads((REPO / "schemas" / "benchmark.schema.json").read_text())
    data = json.loads(report.read_text())
    jsonschema.Draft202012Validator(schema).validate(data)
    assert [r["delegate"] for r in data["results"]] == ["xnnpack", "xnnpack", "nnapi"]
    assert data["skipped"][0]["delegate"] == "gpu"
    # The profiler's front door reads it (python -m tfalign.profile --import).
    proc = subprocess.run([sys.executable, "-m", "tfalign.profile", "--import", str(report), "--out",
                           str(tmp_path / "profile"), "--no-progress"], capture_output=True, text=True, cwd=REPO,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "face.tflite" in proc.stdout and "Pixel 6" in proc.stdout


def test_core_unit_tests_fail_on_a_wrong_vector(tmp_path):
    _jvm_tools()
    golden = tmp_path / "golden"
    shutil.copytree(ref.GOLDEN, golden)
    cases = json.loads((golden / "app_cases.json").read_text())
    cases["cases"][5]["expected_points"][2][1] += 0.01
    (golden / "app_cases.json").write_text(json.dumps(cases))
    euro = json.loads((golden / "one_euro.json").read_text())
    euro["cases"][2]["expected"][7] += 1e-6
    (golden / "one_euro.json").write_text(json.dumps(euro))
    proc = _run_core(golden=golden)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert cases["cases"][5]["name"] in out and euro["cases"][2]["name"] in out, out[-3000:]


def test_core_request_runner_matches_the_vectors_and_rejects_bad_requests(tmp_path):
    """CliKt (used by bench/app_core_parity.py on real exported models) computes what the vectors say."""
    _jvm_tools()
    assert _run_core().returncode == 0
    golden = json.loads(ref.APP_CASES_FILE.read_text())
    cp = f"{CORE / 'build' / 'kotlinc' / 'main'}:/usr/share/java/kotlin-stdlib.jar"
    case = next(c for c in golden["cases"] if c["name"].startswith("uint8_gray_center"))
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"contract": case["contract"], "image": golden["image"], "box": case["box"],
                                   "raw_output": case["raw_output"]}))
    proc = subprocess.run(["java", "-cp", cp, "org.tfalign.core.CliKt", str(request)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    np.testing.assert_allclose(got["window"], case["expected_window"], atol=1e-9)
    np.testing.assert_array_equal(got["input"], case["expected_input"])
    np.testing.assert_allclose(np.reshape(got["points"], (-1, 2)), case["expected_points"], atol=1e-4)
    bad = dict(json.loads(request.read_text()), box=[1, 2, 3])
    request.write_text(json.dumps(bad))
    proc = subprocess.run(["java", "-cp", cp, "org.tfalign.core.CliKt", str(request)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "box must be [x, y, w, h]" in proc.stderr


# --- copy script ---------------------------------------------------------------------------------------------------

def _copy(*args):
    return subprocess.run(["bash", str(COPY_MODELS), *map(str, args)], capture_output=True, text=True, timeout=60)


def test_copy_models_mirrors_models_with_their_contracts(tmp_path):
    export, dest = tmp_path / "export", tmp_path / "assets"
    (export / "sub").mkdir(parents=True)
    (export / "a.tflite").write_bytes(b"A")
    (export / "a.contract.json").write_text("{}")
    (export / "sub" / "b.tflite").write_bytes(b"B")
    (export / "sub" / "b.contract.json").write_text("{}")
    dest.mkdir()
    (dest / "stale.tflite").write_bytes(b"old")
    (dest / "stale.contract.json").write_text("{}")
    proc = _copy(export, dest)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in dest.iterdir()) == ["a.contract.json", "a.tflite", "b.contract.json", "b.tflite"]
    assert (dest / "b.tflite").read_bytes() == b"B"


def test_copy_models_refuses_a_model_without_contract(tmp_path):
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "m.tflite").write_bytes(b"M")
    proc = _copy(tmp_path / "e", tmp_path / "d")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "m.contract.json" in proc.stderr
    proc = _copy(tmp_path / "missing", tmp_path / "d")
    assert proc.returncode == 2 and "not found" in proc.stderr
    proc = _copy("--ext", "onnx", tmp_path / "e", tmp_path / "d")
    assert proc.returncode == 2 and "--ext" in proc.stderr


# --- the Android layer (not buildable here) ------------------------------------------------------------------------

def _syntax_errors(language, path: pathlib.Path):
    import tree_sitter

    tree = tree_sitter.Parser(tree_sitter.Language(language)).parse(path.read_bytes())
    found, stack = [], [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type == "ERROR" or node.is_missing:
            found.append(f"{path.relative_to(REPO)}:{node.start_point[0] + 1}:{node.start_point[1] + 1}")
        stack.extend(node.children)
    return found


def test_android_kotlin_sources_parse():
    kotlin = pytest.importorskip("tree_sitter_kotlin", reason="tree-sitter-kotlin (setup.py extras [dev]) missing")
    files = sorted(DEMO.rglob("*.kt")) + sorted(DEMO.rglob("*.kts"))
    assert len(files) >= 15
    errors = [e for f in files for e in _syntax_errors(kotlin.language(), f)]
    assert not errors, errors


def test_android_layer_is_wired_to_the_core_and_its_resources():
    settings = (DEMO / "settings.gradle.kts").read_text()
    assert 'include(":core", ":app")' in settings
    gradle = (APP / "build.gradle.kts").read_text()
    for dep in ('project(":core")', "com.google.ai.edge.litert:litert", "litert-gpu", "androidx.camera:camera-camera2",
                "com.google.mlkit:face-detection", 'noCompress += "tflite"', "scripts/copy_models.sh"):
        assert dep in gradle, dep
    sources = {p: p.read_text() for p in (APP / "src" / "main" / "java").rglob("*.kt")}
    layout = (APP / "src" / "main" / "res" / "layout" / "activity_main.xml").read_text()
    ids = set(re.findall(r'@\+id/(\w+)', layout))
    used = {i for text in sources.values() for i in re.findall(r"R\.id\.(\w+)", text)}
    assert used and used <= ids, used - ids
    strings = set(re.findall(r'<string name="(\w+)"', (APP / "src/main/res/values/strings.xml").read_text()))
    used_strings = {s for text in sources.values() for s in re.findall(r"R\.string\.(\w+)", text)}
    assert used_strings <= strings, used_strings - strings
    manifest = (APP / "src" / "main" / "AndroidManifest.xml").read_text()
    assert 'android:name=".MainActivity"' in manifest and "android.permission.CAMERA" in manifest
    # The app layer keeps no math of its own: crop, decode, smoothing and statistics come from the core.
    app_text = "\n".join(sources.values())
    for core_api in ("InputEncoder", "LandmarkDecoder", "LandmarkSmoother", "RollingLatency", "BenchmarkRunner",
                     "BenchmarkReport", "ModelContract.parse"):
        assert core_api in app_text, core_api
    imported = set(re.findall(r"import org\.tfalign\.core\.(\w+)", app_text))
    core_names = set(re.findall(r"^(?:class|object|data class|enum class|interface) (\w+)",
                                "\n".join(p.read_text() for p in CORE.rglob("src/main/**/*.kt")), re.M))
    assert imported <= core_names, imported - core_names
