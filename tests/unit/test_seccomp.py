"""The jail's seccomp program, run by a classic-BPF interpreter for both architectures (the
integration tests run it in real jails, on this machine's architecture only)."""

from __future__ import annotations

import errno
import struct

import pytest

from iris_exec.adapters.local import seccomp
from iris_exec.adapters.local.seccomp import AARCH64, ALLOW, X86_64, Arch


def run(program: bytes, arch: int, nr: int, *args: int) -> int:
    """What the filter answers to system call ``nr`` with ``args`` made through ``arch``."""
    data = struct.pack("<iIQ6Q", nr, arch, 0, *(list(args) + [0] * (6 - len(args))))
    insns: list[tuple[int, int, int, int]] = [
        struct.unpack_from("<HBBI", program, i) for i in range(0, len(program), 8)
    ]
    acc: int = 0
    pc = 0
    while True:
        op, jt, jf, k = insns[pc]
        pc += 1
        if op == 0x20:
            (acc,) = struct.unpack_from("<I", data, k)
        elif op == 0x54:
            acc &= k
        elif op == 0x06:
            return k
        elif op in (0x15, 0x35):
            taken = acc == k if op == 0x15 else acc >= k
            pc += jt if taken else jf
        else:
            raise AssertionError(f"unknown opcode {op:#x}")


def verdict(value: int) -> str:
    if value == ALLOW:
        return "allow"
    return errno.errorcode[value & 0xFFFF]


@pytest.mark.parametrize("arch", [X86_64, AARCH64], ids=["x86_64", "aarch64"])
def test_the_filter_refuses_the_risky_calls_and_allows_the_rest(arch: Arch) -> None:
    program = seccomp.program(arch)
    names = arch.numbers
    for name in ("io_uring_setup", "userfaultfd", "bpf", "perf_event_open", "keyctl", "kexec_load"):
        assert verdict(run(program, arch.audit, names[name])) == "EPERM", name
    assert verdict(run(program, arch.audit, 435)) == "ENOSYS"  # clone3: the C library falls back
    # Ordinary calls (read, write, openat, mmap, clone on either table) pass.
    for nr in (0, 1, 56, 63, 64, 222, 220):
        if nr not in names.values():
            assert verdict(run(program, arch.audit, nr)) == "allow", nr
    # Another ABI is refused whatever the call.
    assert verdict(run(program, 0x40000003, 0)) == "EPERM"


@pytest.mark.parametrize("arch", [X86_64, AARCH64], ids=["x86_64", "aarch64"])
def test_socket_families_and_types(arch: Arch) -> None:
    program = seccomp.program(arch)
    socket_nr = 41 if arch is X86_64 else 198
    socketpair_nr = 53 if arch is X86_64 else 199
    expect = {
        (1, 1, 0): "allow",  # AF_UNIX stream
        (2, 1 | 0o4000, 0): "allow",  # AF_INET, SOCK_STREAM | SOCK_NONBLOCK
        (10, 2, 0): "allow",  # AF_INET6 datagram
        (2, 3, 1): "EPERM",  # raw
        (10, 3 | 0o2000000, 58): "EPERM",  # raw with SOCK_CLOEXEC
        (16, 3, 0): "allow",  # netlink, route
        (16, 3, 9): "EAFNOSUPPORT",  # netlink, audit
        (40, 1, 0): "EAFNOSUPPORT",  # AF_VSOCK
        (17, 3, 0): "EAFNOSUPPORT",  # AF_PACKET
    }
    for args, wanted in expect.items():
        assert verdict(run(program, arch.audit, socket_nr, *args)) == wanted, args
    assert verdict(run(program, arch.audit, socketpair_nr, 1, 1, 0)) == "allow"
    assert verdict(run(program, arch.audit, socketpair_nr, 40, 1, 0)) == "EAFNOSUPPORT"


def test_x32_calls_are_refused_on_x86_64() -> None:
    assert verdict(run(seccomp.program(X86_64), X86_64.audit, 0x40000000 | 1)) == "EPERM"
