"""bench/compression.py's report side: the goals, the Markdown table, and the CPU each model's rows ran on."""
from bench_helpers import load_bench

bench = load_bench("compression.py", "bench_compression")

AMX_HOST = {"model_name": "Intel(R) Xeon(R) Processor", "cores": 2, "family_model_stepping": "6/167/1",
            "isa": ["avx2", "avx512f", "avx512_vnni", "amx_int8"]}


def _variant(nme, macs, ms, **extra):
    return {"nme": nme, "params": 100, "nonzero_params": 100, "macs": macs, "size_bytes": 4096, "gzip_bytes": 2048,
            "latency_ms": ms, **extra}


def _report(cpu):
    variants = {"float32": _variant(0.040, 40e6, 1.0),
                "channel": _variant(0.042, 24e6, 0.8, ratio=0.01, layer_ratios={"stem": 0.5}, criterion="bn", divisor=4,
                                    distill={"landmarks": 300.0}, gradual={"cut_gap": 0.0}),
                "ptq_int8": _variant(0.0404, 40e6, 0.5, int8_coverage=0.44)}
    row = {"variants": variants, "goals": bench.goals(variants)}
    if cpu is not None:
        row["cpu"] = cpu
    return {"models": {"m": row}}


def test_goals_are_ratios_to_the_float32_row():
    g = _report(None)["models"]["m"]["goals"]
    assert g["channel_macs_minus_30pct"] and g["channel_latency_minus_20pct"]
    assert not g["channel_nme_within_3pct"]  # +5 %
    assert g["ptq_int8_nme_within_3pct"] and g["ptq_int8_1.5x_faster"]


def test_markdown_names_the_cpu_under_each_model_and_how_it_was_pruned():
    lines = bench.markdown(_report(AMX_HOST)).splitlines()
    assert lines[2].startswith("| m | float32 | 4.00 % |")
    assert "<sub>Intel(R) Xeon(R) Processor 6/167/1, amx_int8</sub>" in lines[3]
    assert "channel 0.01 + per-layer ratios, widths ×4, BN γ, distilled, gradual" in lines[3]
    assert "+5.0 %" in lines[3] and "24.0 (-40 %)" in lines[3] and "1.25x" in lines[3]
    assert "PTQ int8 (44 % of ops int8)" in lines[4] and "2.00x" in lines[4]


def test_rows_from_before_the_cpu_was_recorded_say_so():
    assert "CPU not recorded" in bench.markdown(_report(None)).splitlines()[3]
    assert bench.host_label({"model_name": "0xd0c", "isa": ["asimd", "asimddp", "i8mm"]}) == "0xd0c, i8mm"
    xeon = {"model_name": "Xeon", "isa": ["avx2", "avx512_vnni", "amx_int8"]}
    assert bench.host_label(xeon) == "Xeon, amx_int8"
    assert bench.host_label(xeon, "denied") == "Xeon, avx512_vnni, AMX denied"


def test_the_default_divisor_is_not_spelled_out():
    report = _report(None)
    report["models"]["m"]["variants"]["channel"]["divisor"] = 8
    assert "channel 0.01 + per-layer ratios, BN γ" in bench.markdown(report)


def test_latency_times_the_invoke_not_the_numpy_conversions():
    """An int8 model's input quantization (numpy, in the runner) happens once before the timed invokes."""
    calls = []

    class FakeInterpreter:
        def invoke(self):
            calls.append("invoke")

    runner = bench.Runner.__new__(bench.Runner)
    runner.interpreter = FakeInterpreter()
    runner.set_input = lambda x: calls.append("set_input")
    runner.get_output = lambda: calls.append("get_output")
    times = runner.time_ms(object(), runs=3)
    assert calls == ["set_input", "invoke", "invoke", "invoke"] and len(times) == 3
    assert bench.TIMING == "invoke"


def test_fine_tunes_run_under_the_seed_given(monkeypatch, tmp_path):
    from quantization import pruning
    from tfalign import config as cfg_lib
    runs = []
    monkeypatch.setattr(cfg_lib, "to_dict", lambda config: {"train": {}})
    monkeypatch.setattr(pruning, "fine_tune", lambda build, run, folder, **kw: (runs.append(run), {"epochs": []}))
    for argv, seed in (([], 0), (["--seed", "3"], 3)):
        args = bench.parse_args(argv)
        args.current_model = "mobile_two_stage"
        bench.finetune(None, None, None, args, "channel", str(tmp_path))
        assert runs[-1].seed == seed


def test_qat_rows_say_whether_a_teacher_and_frozen_batch_norms_trained_them():
    report = _report(None)
    variants = report["models"]["m"]["variants"]
    variants["qat_int8"] = _variant(0.041, 40e6, 0.5, int8_coverage=0.5, distill={"heatmaps": 1.0}, freeze_bn=True)
    report["models"]["m"]["goals"] = bench.goals(variants)
    text = bench.markdown(report)
    assert "QAT int8 (50 % of ops int8, distilled, BN frozen)" in text
    assert "PTQ int8 (44 % of ops int8) |" in text  # nothing added where nothing was done
    variants["qat_int8"].update(distill={}, freeze_bn=False)
    assert "QAT int8 (50 % of ops int8) |" in bench.markdown(report)


def test_distill_outputs_need_either_teacher(capsys):
    import pytest
    assert bench.parse_args(["--qat-distill", "1", "--distill-outputs", "heatmaps"]).distill_outputs == ["heatmaps"]
    assert bench.parse_args(["--distill", "1", "--distill-outputs", "a,b"]).distill_outputs == ["a", "b"]
    for argv, message in ((["--distill-outputs", "heatmaps"], "--distill-outputs: needs --distill W > 0"),
                          (["--qat-distill", "-1"], "--qat-distill: must be >= 0")):
        with pytest.raises(SystemExit):
            bench.parse_args(argv)
        assert message in capsys.readouterr().err
