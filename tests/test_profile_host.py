"""Host latency profiler and the `python -m tfalign.profile` front door (tiny models, few runs)."""
import json

import numpy as np
import pytest
from profile_helpers import tiny_models, write_contract  # noqa: F401  (fixture)

from mobile_export.profile import common, host
from tfalign import profile as cli


def test_every_setting_is_measured_with_ordered_percentiles(tiny_models):
    doc = host.profile(tiny_models["float"], threads=(1, 2), xnnpack=(True, False), runs=12, warmup=1,
                       progress=False)
    common.validate_benchmark(doc)
    assert [(r["delegate"], r["threads"]) for r in doc["results"]] == [("xnnpack", 1), ("xnnpack", 2),
                                                                       ("cpu", 1), ("cpu", 2)]
    for r in doc["results"]:
        assert len(r["samples_ms"]) == 12
        assert r["min_ms"] <= r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] <= r["max_ms"]
        assert r["p50_ms"] == pytest.approx(float(np.median(r["samples_ms"])))
        assert r["init_ms"] > 0 and r["first_ms"] > 0
        assert r["peak_memory_mb"] is not None and r["peak_memory_mb"] >= 0
    assert doc["model"]["size_bytes"] == tiny_models["float"].stat().st_size
    assert doc["model"]["sha256"] == common.sha256_file(tiny_models["float"])


def test_xnnpack_switch_really_changes_the_graph(tiny_models):
    on = common.make_interpreter(tiny_models["float"], xnnpack=True)
    off = common.make_interpreter(tiny_models["float"], xnnpack=False)
    on.allocate_tensors()
    off.allocate_tensors()
    assert "DELEGATE" in [o["op_name"] for o in on._get_ops_details()]
    assert "DELEGATE" not in [o["op_name"] for o in off._get_ops_details()]


def test_without_contract_the_fallback_is_said(tiny_models):
    doc = host.profile(tiny_models["int8"], threads=(1,), xnnpack=(False,), runs=3, warmup=0, progress=False)
    assert "no contract beside the model" in doc["contract_source"]
    assert doc["inputs"][0]["dtype"] == "int8" and doc["inputs"][0]["shape"] == [1, 16, 16, 3]
    assert "no contract" in host.table(doc)


def test_contract_beside_the_model_drives_the_input(tiny_models, tmp_path):
    model = tmp_path / "with_contract.tflite"
    model.write_bytes(tiny_models["int8"].read_bytes())
    contract_path = write_contract(model, scale=1 / 128, zero_point=0)
    doc = host.profile(model, threads=(1,), xnnpack=(True,), runs=3, warmup=0, progress=False)
    assert doc["contract_source"] == str(contract_path) and doc["model"]["contract"] == contract_path.name
    contract, _ = common.load_contract(model)
    interp = common.make_interpreter(model)
    [x] = common.make_inputs(interp.get_input_details(), contract)
    # Pixels 0..255 normalised to [-1, 1] then quantized with the contract's scale 1/128: the full int8 range.
    assert x.dtype == np.int8 and x.min() >= -128 and x.max() <= 127 and int(x.max()) - int(x.min()) > 200


def test_broken_contract_is_an_error_naming_it(tiny_models, tmp_path):
    model = tmp_path / "broken.tflite"
    model.write_bytes(tiny_models["float"].read_bytes())
    (tmp_path / "broken.contract.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken.contract.json"):
        host.profile(model, threads=(1,), xnnpack=(True,), runs=1, warmup=0, progress=False)


def test_chart_is_a_png(tiny_models, tmp_path):
    doc = host.profile(tiny_models["float"], threads=(1,), xnnpack=(True, False), runs=3, warmup=0,
                       progress=False)
    path = host.chart(doc, tmp_path / "c.png")
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_cli_json_prints_p50(tiny_models, capsys):
    assert cli.main([str(tiny_models["float"]), "--json", "--threads", "1", "--xnnpack", "on",
                     "--runs", "5"]) == 0
    doc = json.loads(capsys.readouterr().out)
    [r] = doc["host"]["results"]
    assert r["p50_ms"] > 0 and r["delegate"] == "xnnpack" and r["threads"] == 1


def test_cli_table_and_out_folder(tiny_models, tmp_path, capsys):
    out = tmp_path / "prof"
    assert cli.main([str(tiny_models["int8"]), "--threads", "1", "--runs", "4", "--out", str(out),
                     "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "p50 ms" in text and "xnnpack" in text and "cpu" in text
    saved = json.loads((out / "tiny_int8.host.json").read_text())
    common.validate_benchmark(saved)
    assert (out / "tiny_int8.host.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("argv, needle", [
    (["missing.tflite"], "missing.tflite: model file not found"),
    (["{txt}"], "expected a .tflite file"),
    (["{bad}"], "not a TFLite flatbuffer"),
    (["{model}", "--runs", "0"], "--runs must be >= 1"),
    (["{model}", "--devices", "nokia_3310"], "unknown device 'nokia_3310'"),
    (["--import", "{txt}"], "not a JSON file"),
])
def test_bad_input_is_one_line_and_exit_2(argv, needle, tiny_models, tmp_path, capsys):
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"0123456789abcdef")
    argv = [a.format(txt=txt, bad=bad, model=tiny_models["float"]) for a in argv]
    assert cli.main(argv + ["--no-progress", "--threads", "1", "--xnnpack", "on"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


def test_bad_flag_values_are_rejected_by_argparse(capsys):
    for argv in (["m.tflite", "--threads", "0"], ["m.tflite", "--xnnpack", "maybe"]):
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        assert exc.value.code == 2


def test_help_explains_every_flag(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    for flag in ("--json", "--threads", "--xnnpack", "--runs", "--per-op", "--devices", "--import", "--adb",
                 "--out", "--benchmark-binary"):
        assert flag in text


ZEN3 = ["sse4_2", "avx", "avx2", "fma", "f16c"]  # AMD EPYC family 25 model 1: no 8-bit dot product


@pytest.mark.parametrize("features,noted", [
    (ZEN3, True), (ZEN3 + ["avx512f", "avx512_vnni"], False), (ZEN3 + ["avx_vnni"], False),
    (ZEN3 + ["amx_tile", "amx_int8"], False), (["asimd"], True), (["asimd", "asimddp"], False),
    ([], False),  # features unknown (no /proc/cpuinfo): nothing is claimed
])
def test_int8_timing_note_names_a_cpu_without_an_8_bit_dot_product(features, noted):
    note = common.int8_timing_note(features)
    assert (note is not None) == noted
    if noted:
        assert "dot-product" in note and "--devices" in note


@pytest.mark.parametrize("features,mode,noted", [(ZEN3, "int8", True), (ZEN3, "float", False),
                                                 (ZEN3 + ["avx512_vnni"], "int8", False)])
def test_host_profile_of_int8_says_when_the_cpu_cannot_show_its_speed(tiny_models, monkeypatch, features, mode,
                                                                      noted):
    real = common.host_device
    monkeypatch.setattr(common, "host_device", lambda: {**real(), "cpu_features": features})
    doc = host.profile(tiny_models[mode], threads=(1,), xnnpack=(True,), runs=2, warmup=0, progress=False)
    assert ("int8_note" in doc) == noted
    assert ("8-bit dot-product" in host.table(doc)) == noted
