"""How a run's config is assembled: paper defaults ← --config file ← --set ← flags, stored in full."""
import json

import pytest

from tfalign.training.runconfig import build_config, resolve_model


def test_layers_apply_in_order(tmp_path):
    cfg_file = tmp_path / "c.json"
    cfg_file.write_text(json.dumps({"train": {"learning_rate": 0.5, "optimizer": "sgd"}, "filters": 4}))
    arch, config, data = build_config("tiny_test", str(cfg_file),
                                      ["train.optimizer=nadam", "input.schemes=[\"300w_68\"]", "loss=l2"],
                                      epochs=7, batch_size=None)
    assert arch.name == "tiny_test"
    assert config.train.learning_rate == 0.5 and config.train.optimizer == "nadam" and config.filters == 4
    assert config.input.schemes == ("300w_68",) and config.loss == "l2"
    assert config.train.epochs == 7 and config.train.batch_size == 8  # None leaves the default alone
    assert data["train"]["milestones"] == [30, 50]  # JSON form, full config
    # The stored dict rebuilds exactly the same config.
    assert resolve_model("tiny_test", data)[1] == config


@pytest.mark.parametrize("sets,needle", [
    (["train.nope=1"], "unknown config field 'train.nope'"),
    (["nope.deeper=1"], "unknown config field 'nope'"),
    (["=3"], "expected key=value"),
    (["train.optimizer=adagrad"], "unknown optimizer 'adagrad'"),
])
def test_bad_overrides_name_the_field(sets, needle):
    with pytest.raises(ValueError, match=needle):
        build_config("tiny_test", None, sets)


def test_bad_config_files(tmp_path):
    with pytest.raises(ValueError, match="config file not found"):
        build_config("tiny_test", str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"train": {"lr": 1}}')
    with pytest.raises(ValueError, match=r"bad.json: unknown config field 'train.lr'"):
        build_config("tiny_test", str(bad))


def test_unknown_model():
    with pytest.raises(ValueError, match="--model: unknown model 'nope'"):
        resolve_model("nope")


def test_cpu_info_reads_the_first_processor_and_its_simd_features(tmp_path):
    from tfalign.training.runconfig import cpu_info
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 143\n"
                   "model name\t: Intel(R) Xeon(R) Platinum 8480+\nstepping\t: 8\n"
                   "flags\t\t: fpu sse4_2 avx avx2 avx512f avx512_vnni amx_int8 ht\n\n"
                   "processor\t: 1\nmodel name\t: something else\nflags\t\t: fpu\n")
    info = cpu_info(str(x86))
    assert info["model_name"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert info["family_model_stepping"] == "6/143/8"
    assert info["isa"] == ["sse4_2", "avx", "avx2", "avx512f", "avx512_vnni", "amx_int8"]
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp i8mm\nCPU part\t: 0xd0c\n\n")
    info = cpu_info(str(arm))
    assert info["model_name"] == "0xd0c" and info["isa"] == ["asimd", "asimddp", "i8mm"]
    missing = cpu_info(str(tmp_path / "absent"))
    assert "isa" not in missing and missing["cores"] >= 1


def test_versions_name_the_litert_package_and_the_cpu():
    from tfalign.training.runconfig import versions
    v = versions()
    assert v["ai-edge-litert"] is not None and "model_name" in v["cpu"]
