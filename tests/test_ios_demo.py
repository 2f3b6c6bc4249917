"""ios_demo: what can be checked without a Swift toolchain — the sources parse (tree-sitter's Swift grammar), the
golden files the XCTests read exist and are what the Python package generates, the Swift code uses the contract and
benchmark field names of the JSON Schemas and the shared one-euro defaults, and the Xcode project spec and copy
script are consistent. On macOS with Swift, the XCTests themselves run (marker ``macos``)."""
from __future__ import annotations

import json
import pathlib
import platform
import re
import shutil
import subprocess

import pytest

import app_reference as ref

REPO = pathlib.Path(__file__).resolve().parents[1]
IOS = REPO / "ios_demo"
CORE = IOS / "TFAlignCore"
APP = IOS / "TFAlignDemo"
KOTLIN_CORE = REPO / "android_demo" / "core" / "src" / "main" / "kotlin" / "org" / "tfalign" / "core"


def _swift_files():
    return sorted(IOS.rglob("*.swift"))


def test_swift_sources_parse_without_errors():
    swift = pytest.importorskip("tree_sitter_swift", reason="tree-sitter-swift (setup.py extras [dev]) missing")
    import tree_sitter

    parser = tree_sitter.Parser(tree_sitter.Language(swift.language()))
    files = _swift_files()
    assert len(files) >= 18, [f.name for f in files]
    errors = []
    for f in files:
        stack = [parser.parse(f.read_bytes()).root_node]
        while stack:
            node = stack.pop()
            if node.type == "ERROR" or node.is_missing:
                errors.append(f"{f.relative_to(REPO)}:{node.start_point[0] + 1}:{node.start_point[1] + 1}")
            stack.extend(node.children)
    assert not errors, errors


def test_syntax_check_catches_a_broken_file():
    swift = pytest.importorskip("tree_sitter_swift", reason="tree-sitter-swift (setup.py extras [dev]) missing")
    import tree_sitter

    parser = tree_sitter.Parser(tree_sitter.Language(swift.language()))
    source = (CORE / "Sources" / "TFAlignCore" / "OneEuro.swift").read_bytes()
    for good, bad in ((b"let tau = 1 / (2 * Double.pi * cutoff)", b"let tau = 1 / (2 * Double.pi * cutoff"),
                      (b"public mutating func reset() { initialized = false }",
                       b"public mutating func reset() { initialized = false")):
        assert good in source
        assert parser.parse(source.replace(good, bad, 1)).root_node.has_error, bad


def test_xctests_read_golden_files_that_exist_and_are_current():
    golden_swift = (CORE / "Tests" / "TFAlignCoreTests" / "Golden.swift").read_text()
    levels = int(re.search(r"for _ in 0\.\.<(\d+) \{ url = url\.deletingLastPathComponent\(\) \}", golden_swift).group(1))
    here = CORE / "Tests" / "TFAlignCoreTests" / "Golden.swift"
    assert here.parents[levels - 1] == REPO, "Golden.swift must climb to the repository root"
    assert 'appendingPathComponent("tests/golden")' in golden_swift
    tests_text = "\n".join(p.read_text() for p in (CORE / "Tests").rglob("*.swift"))
    names = set(re.findall(r'Golden\.json\("([^"]+)"\)', tests_text))
    assert names == {"one_euro.json", "app_cases.json"}
    for name in names:
        path = ref.GOLDEN / name
        assert path.is_file(), path
    export = json.loads(ref.APP_CASES_FILE.read_text())["export_golden"]
    assert export is not None, "the export's golden landmarks are missing from tests/golden"
    assert (ref.GOLDEN / export["png"]).is_file() and (ref.GOLDEN / export["source"]).is_file()
    assert 'get("png")' in tests_text and "CGImageSourceCreateWithURL" in tests_text
    for path, obj in ref.generate().items():
        assert path.read_text() == ref.dumps(obj), f"{path} is stale: run python tests/app_reference.py --write"


def _swift_core_text():
    return "\n".join(p.read_text() for p in (CORE / "Sources").rglob("*.swift"))


def _schema_properties(schema: dict) -> set:
    """Every property name declared anywhere in a JSON Schema."""
    names, stack = set(), [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            names.update(node.get("properties", {}))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return names


@pytest.mark.parametrize("language", ["swift", "kotlin"])
def test_contract_parsers_read_only_schema_fields(language):
    contract_text = (CORE / "Sources" / "TFAlignCore" / "Contract.swift" if language == "swift"
                     else KOTLIN_CORE / "Contract.kt").read_text()
    pattern = r'(?:get|opt)\("(\w+)"\)' if language == "swift" else r'(?:n|root|it)(?:\.opt\(|\[)"(\w+)"'
    fields = set(re.findall(pattern, contract_text))
    schema = json.loads((REPO / "schemas" / "contract.schema.json").read_text())
    allowed = _schema_properties(schema)
    assert {"format_version", "scale", "zero_point", "shift_x", "origin", "normalization", "border"} <= fields
    assert fields <= allowed, fields - allowed


def test_benchmark_report_uses_schema_names():
    schema = json.loads((REPO / "schemas" / "benchmark.schema.json").read_text())
    result_props = schema["properties"]["results"]["items"]["properties"]
    text = _swift_core_text()
    report = text[text.index("public func dictionary()"):text.index("public func jsonData()")]
    keys = set(re.findall(r'"(\w+)":', report))
    allowed = _schema_properties(schema) | {"skipped", "error"}  # skipped: configurations that failed, with why
    assert {"p50_ms", "p90_ms", "init_ms", "compute_units", "sha256"} <= keys
    assert keys <= allowed, keys - allowed
    units = re.search(r"computeUnitNames = \[([^\]]+)\]", text).group(1)
    assert re.findall(r'"(\w+)"', units) == result_props["compute_units"]["enum"]
    assert '"delegate": "coreml"' in report and "coreml" in result_props["delegate"]["enum"]
    kotlin = (KOTLIN_CORE / "Benchmark.kt").read_text()
    delegates = re.search(r"val DELEGATES = listOf\(([^)]+)\)", kotlin).group(1)
    assert re.findall(r'"(\w+)"', delegates) == result_props["delegate"]["enum"]


def test_one_euro_defaults_agree_everywhere():
    defaults = json.loads(ref.ONE_EURO_FILE.read_text())["defaults"]
    assert defaults == ref.ONE_EURO_DEFAULTS
    swift = re.search(r"init\(minCutoff: Double = ([\d.]+), beta: Double = ([\d.]+), dCutoff: Double = ([\d.]+)\)",
                      _swift_core_text())
    kotlin = re.search(r"OneEuroParams\(val minCutoff: Double = ([\d.]+), val beta: Double = ([\d.]+), "
                       r"val dCutoff: Double = ([\d.]+)\)", (KOTLIN_CORE / "OneEuro.kt").read_text())
    for found in (swift, kotlin):
        assert found, "default one-euro parameters not found"
        assert [float(v) for v in found.groups()] == [defaults["min_cutoff"], defaults["beta"], defaults["d_cutoff"]]


def test_xcode_project_spec_and_package_are_consistent():
    spec = (IOS / "project.yml").read_text()
    for path in re.findall(r"path: (\S+)", spec):
        assert (IOS / path).exists(), path
    package = (CORE / "Package.swift").read_text()
    assert '.target(name: "TFAlignCore")' in package and (CORE / "Sources" / "TFAlignCore").is_dir()
    assert 'testTarget(name: "TFAlignCoreTests"' in package and (CORE / "Tests" / "TFAlignCoreTests").is_dir()
    plist = (APP / "Info.plist").read_text()
    assert "NSCameraUsageDescription" in plist and "UIFileSharingEnabled" in plist
    app_text = "\n".join(p.read_text() for p in APP.glob("*.swift"))
    for api in ("VNDetectFaceRectanglesRequest", "MLModelConfiguration", "computeUnits", "InputEncoder",
                "LandmarkDecoder", "LandmarkSmoother", "RollingLatency", "BenchmarkRunner", "BenchmarkReport",
                "ModelContract.load", "AVCaptureVideoDataOutput"):
        assert api in app_text, api
    # The app keeps no math of its own: no second one-euro or percentile implementation.
    assert not re.search(r"\btau\b|percentile\(", app_text)


def test_ios_copy_script_copies_mlpackages_with_contracts(tmp_path):
    export = tmp_path / "coreml"
    pkg = export / "face.mlpackage" / "Data" / "com.apple.CoreML" / "weights"
    pkg.mkdir(parents=True)
    (pkg / "weight.bin").write_bytes(b"w")
    (export / "face.contract.json").write_text("{}")
    models = tmp_path / "Models"
    proc = subprocess.run(["bash", str(IOS / "scripts" / "copy_models.sh"), str(export), str(models)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (models / "face.mlpackage" / "Data" / "com.apple.CoreML" / "weights" / "weight.bin").read_bytes() == b"w"
    assert (models / "face.contract.json").is_file()
    assert 'DEST_DIR' in (IOS / "scripts" / "copy_models.sh").read_text()


@pytest.mark.macos
def test_swift_package_tests_pass_on_macos():
    if platform.system() != "Darwin" or shutil.which("swift") is None:
        pytest.skip("needs macOS with a Swift toolchain (Xcode)")
    proc = subprocess.run(["swift", "test"], cwd=CORE, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
