"""Keep LiteRT's XNNPACK off Intel AMX, so an x86 host times int8 with the SIMD kernels a phone's CPU has.

On an AMX host (Xeon Sapphire Rapids and later) XNNPACK runs full-int8 convolutions with AMX tile kernels that
compute 64 output channels at a time. Mobile models have 8–64 channels per layer, so most of a tile is padding:
on such a host the shipped mobile_two_stage int8 export ran 0.80x of float32 with AMX and 1.05x with AMX denied
(same files, same process type; ``bench/int8_split.py --no-amx``, docs/compression.md). No phone has AMX.

Linux hands AMX state to a process only after ``arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)``, and XNNPACK
turns its AMX kernels off when that request fails. :func:`deny` installs a seccomp filter that fails exactly that
request with EPERM, for this process and its children; everything else runs as before. It cannot be undone, and
it must run before the first XNNPACK interpreter of the process: XNNPACK reads the CPU's features once.
"""
from __future__ import annotations

import ctypes
import platform
import struct
import sys

SYS_ARCH_PRCTL = 158  # x86-64
ARCH_REQ_XCOMP_PERM = 0x1023
XFEATURE_XTILEDATA = 18
_AUDIT_ARCH_X86_64 = 0xC000003E
_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2
_RET_ALLOW, _RET_EPERM = 0x7FFF0000, 0x00050000 | 1  # SECCOMP_RET_ERRNO | EPERM
_LD_W_ABS, _JEQ_K, _RET_K = 0x20, 0x15, 0x06  # BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ|BPF_K, BPF_RET|BPF_K

_denied = False


def _filter_program() -> list[tuple[int, int, int, int]]:
    # seccomp_data: nr at offset 0, arch at 4, args[0] at 16 (its low 32 bits on little-endian x86-64).
    return [
        (_LD_W_ABS, 0, 0, 4),
        (_JEQ_K, 0, 5, _AUDIT_ARCH_X86_64),     # another ABI: allow
        (_LD_W_ABS, 0, 0, 0),
        (_JEQ_K, 0, 3, SYS_ARCH_PRCTL),         # another syscall: allow
        (_LD_W_ABS, 0, 0, 16),
        (_JEQ_K, 0, 1, ARCH_REQ_XCOMP_PERM),    # another arch_prctl code: allow
        (_RET_K, 0, 0, _RET_EPERM),
        (_RET_K, 0, 0, _RET_ALLOW),
    ]


def cpu_has_amx(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU advertises AMX int8 (the kernels XNNPACK would pick for full-int8 convolutions)."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("flags"):
                    return "amx_int8" in line.split()
    except OSError:
        pass
    return False


def supported() -> bool:
    """Whether :func:`deny` can work here: Linux on x86-64 (seccomp and arch_prctl are both Linux/x86 only)."""
    return sys.platform.startswith("linux") and platform.machine() in ("x86_64", "AMD64")


def deny() -> None:
    """Make this process's (and its children's) AMX permission requests fail, so XNNPACK uses AVX-512/AVX2 kernels.

    Raises RuntimeError, saying why, where that is impossible. Calling it twice is harmless.
    """
    global _denied
    if _denied:
        return
    if not supported():
        raise RuntimeError(f"--no-amx: only Linux on x86-64 has AMX to deny (this is {sys.platform} "
                           f"{platform.machine()})")
    libc = ctypes.CDLL(None, use_errno=True)
    prog = _filter_program()
    code = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *ins) for ins in prog))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = SockFprog(len(prog), ctypes.cast(code, ctypes.c_void_p))
    # An unprivileged process may install a filter only with no_new_privs set (it only affects setuid exec).
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise RuntimeError(f"--no-amx: prctl(PR_SET_NO_NEW_PRIVS) failed, errno {ctypes.get_errno()}")
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise RuntimeError(f"--no-amx: installing the seccomp filter failed, errno {ctypes.get_errno()} "
                           "(seccomp disabled in this kernel or container?)")
    _denied = True


def request_permission() -> int:
    """Ask the kernel for AMX tile data as XNNPACK does: 0 on success, else the errno (EPERM once denied)."""
    if not supported():
        raise RuntimeError("arch_prctl is Linux/x86-64 only")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(SYS_ARCH_PRCTL, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0:
        return 0
    return ctypes.get_errno()


def status() -> str:
    """``denied`` (after :func:`deny`), ``available`` (the CPU has AMX int8 and XNNPACK may use it) or ``absent``."""
    if _denied:
        return "denied"
    return "available" if cpu_has_amx() else "absent"


def add_argument(parser) -> None:
    """The ``--no-amx`` flag, worded the same in every tool that times LiteRT on this host."""
    parser.add_argument("--no-amx", action="store_true",
                        help="x86 hosts with Intel AMX only: keep XNNPACK off AMX (a seccomp filter fails its "
                             "permission request), so int8 runs on the AVX-512/AVX2 kernels that resemble a phone's "
                             "SIMD path; AMX's 64-channel int8 tiles made small mobile models slower than float32 "
                             "here. Linux x86-64 only")


__all__ = ["deny", "status", "supported", "cpu_has_amx", "request_permission", "add_argument"]
