"""--import: phone/host benchmark JSON (schemas/benchmark.schema.json) merged into one table and chart."""
import copy
import json

import pytest

from mobile_export.profile import common, importer
from tfalign import profile as cli

SHA = "ab" * 32
PHONE = {
    "format_version": 1, "created": "2026-11-21T07:00:00Z", "tool": {"name": "tfalign-android", "version": "0.1"},
    "device": {"model": "Pixel 7", "manufacturer": "Google", "soc": "GS201", "os": "Android 14 (API 34)"},
    "model": {"file": "face_int8.tflite", "sha256": SHA, "size_bytes": 90000},
    "results": [
        {"runtime": "litert", "runtime_version": "1.2.0", "delegate": "xnnpack", "threads": 4, "runs": 100,
         "init_ms": 12.0, "p50_ms": 1.8, "p90_ms": 2.1},
        {"runtime": "litert", "delegate": "gpu", "threads": None, "init_ms": 300.0, "p50_ms": 2.6, "p90_ms": 3.0},
    ],
}
IPHONE = {
    "format_version": 1, "device": {"model": "iPhone15,2", "soc": "A16", "os": "iOS 17.5"},
    "model": {"file": "face.mlpackage", "sha256": "cd" * 32},
    "results": [{"runtime": "coreml", "delegate": "coreml", "compute_units": "all", "p50_ms": 0.9, "p90_ms": 1.1,
                 "init_ms": 80.0}],
}


def _write(tmp_path, name, doc):
    p = tmp_path / name
    p.write_text(json.dumps(doc))
    return p


def test_schema_accepts_the_app_documents():
    common.validate_benchmark(PHONE)
    common.validate_benchmark(IPHONE)


def test_merge_makes_one_row_per_result_sorted_by_model_and_p50(tmp_path):
    merged = importer.merge([_write(tmp_path, "p7.json", PHONE), _write(tmp_path, "ip.json", IPHONE)])
    assert [(r["device"], r["delegate"], r["p50_ms"]) for r in merged["rows"]] == [
        ("iPhone15,2", "coreml", 0.9), ("Pixel 7", "xnnpack", 1.8), ("Pixel 7", "gpu", 2.6)]
    assert merged["rows"][0]["compute_units"] == "all"
    assert merged["warnings"] == []
    text = importer.table(merged)
    assert "Pixel 7" in text and "iPhone15,2" in text and "A16" in text and "1.800" in text


def test_same_name_different_files_are_flagged(tmp_path):
    other = copy.deepcopy(PHONE)
    other["model"]["sha256"] = "ef" * 32
    merged = importer.merge([_write(tmp_path, "a.json", PHONE), _write(tmp_path, "b.json", other)])
    assert len(merged["warnings"]) == 1 and "face_int8.tflite" in merged["warnings"][0]


@pytest.mark.parametrize("mutate, needle", [
    (lambda d: d["results"][0].pop("p50_ms"), "results/0: 'p50_ms' is a required property"),
    (lambda d: d["model"].update(sha256="xyz"), "model/sha256"),
    (lambda d: d["results"][1].update(delegate="tpu"), "results/1/delegate"),
    (lambda d: d.update(results=[]), "results"),
])
def test_invalid_documents_name_the_file_and_field(tmp_path, mutate, needle):
    doc = copy.deepcopy(PHONE)
    mutate(doc)
    path = _write(tmp_path, "bad.json", doc)
    with pytest.raises(ValueError) as exc:
        importer.merge([path])
    assert str(path) in str(exc.value) and needle in str(exc.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ValueError, match="nothere.json: file not found"):
        importer.merge([tmp_path / "nothere.json"])


def test_cli_import_writes_table_json_and_chart(tmp_path, capsys):
    out = tmp_path / "out"
    rc = cli.main(["--import", str(_write(tmp_path, "p7.json", PHONE)), str(_write(tmp_path, "ip.json", IPHONE)),
                   "--out", str(out)])
    assert rc == 0
    assert "Pixel 7" in capsys.readouterr().out
    saved = json.loads((out / "imported.json").read_text())
    assert len(saved["rows"]) == 3
    assert (out / "imported.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_import_bad_file_exit_2(tmp_path, capsys):
    doc = copy.deepcopy(PHONE)
    del doc["device"]
    assert cli.main(["--import", str(_write(tmp_path, "x.json", doc))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "x.json" in err[0] and "device" in err[0]
