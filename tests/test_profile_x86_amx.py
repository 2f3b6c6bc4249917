"""mobile_export.profile.x86_amx: the seccomp filter that keeps XNNPACK off Intel AMX (--no-amx)."""
import json
import os
import struct
import subprocess
import sys

import pytest

from mobile_export.profile import x86_amx
from profile_helpers import tiny_models  # noqa: F401  (fixture)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_x86_linux = pytest.mark.skipif(not x86_amx.supported(), reason="seccomp + arch_prctl: Linux x86-64 only")


def _run_filter(nr, arg0, arch=0xC000003E):
    """Evaluate the BPF program on one seccomp_data record (the three instruction kinds it uses)."""
    data = struct.pack("<iIQ6Q", nr, arch, 0, arg0, 0, 0, 0, 0, 0)
    prog, pc = x86_amx._filter_program(), 0
    acc = 0
    while True:
        code, jt, jf, k = prog[pc]
        if code == x86_amx._LD_W_ABS:
            acc = struct.unpack_from("<I", data, k)[0]
            pc += 1
        elif code == x86_amx._JEQ_K:
            pc += 1 + (jt if acc == k else jf)
        elif code == x86_amx._RET_K:
            return k
        else:  # pragma: no cover - would mean the program grew an instruction this test does not know
            raise AssertionError(f"unknown BPF code {code:#x}")


def test_filter_fails_only_the_amx_permission_request():
    eperm, allow = x86_amx._RET_EPERM, x86_amx._RET_ALLOW
    assert _run_filter(x86_amx.SYS_ARCH_PRCTL, x86_amx.ARCH_REQ_XCOMP_PERM) == eperm
    assert _run_filter(x86_amx.SYS_ARCH_PRCTL, 0x1022) == allow  # ARCH_GET_XCOMP_PERM
    assert _run_filter(x86_amx.SYS_ARCH_PRCTL, 0x1002) == allow  # ARCH_SET_FS: threads need it
    assert _run_filter(39, x86_amx.ARCH_REQ_XCOMP_PERM) == allow  # getpid with the same first argument
    assert _run_filter(x86_amx.SYS_ARCH_PRCTL, x86_amx.ARCH_REQ_XCOMP_PERM, arch=0x40000003) == allow  # i386 ABI


def test_cpu_has_amx_reads_the_flags(tmp_path):
    with_amx = tmp_path / "amx"
    with_amx.write_text("processor\t: 0\nflags\t\t: fpu avx512f amx_bf16 amx_int8 amx_tile\n")
    without = tmp_path / "plain"
    without.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_vnni\n")
    assert x86_amx.cpu_has_amx(str(with_amx))
    assert not x86_amx.cpu_has_amx(str(without))
    assert not x86_amx.cpu_has_amx(str(tmp_path / "missing"))


def test_deny_elsewhere_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(x86_amx.platform, "machine", lambda: "aarch64")
    with pytest.raises(RuntimeError, match="--no-amx: only Linux on x86-64"):
        x86_amx.deny()
    assert x86_amx.status() != "denied"


@needs_x86_linux
def test_deny_makes_the_request_fail_with_eperm_in_a_fresh_process():
    # A child process: the filter cannot be removed, and it must not reach the rest of the suite.
    code = ("import json; from mobile_export.profile import x86_amx as a; before = a.status(); a.deny(); a.deny(); "
            "print(json.dumps([before, a.status(), a.request_permission()]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    before, after, errno = json.loads(out.stdout)
    assert before == ("available" if x86_amx.cpu_has_amx() else "absent")
    assert after == "denied"
    assert errno == 1  # EPERM


@needs_x86_linux
def test_profile_cli_no_amx_records_it_in_the_device(tiny_models, tmp_path):
    out = subprocess.run([sys.executable, "-m", "tfalign.profile", str(tiny_models["int8"]), "--no-amx", "--json",
                          "--threads", "1", "--xnnpack", "on", "--runs", "3", "--warmup", "1"],
                         cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["host"]["device"]["x86_amx"] == "denied"
    assert doc["host"]["results"][0]["p50_ms"] > 0


def test_help_explains_the_flag(capsys):
    from tfalign.profile import build_parser
    assert "--no-amx" in build_parser().format_help()
