"""The jail's seccomp filter: a classic BPF program that bubblewrap installs (``--seccomp
FD``) just before it runs the sandboxed program.

Namespaces and dropped capabilities stop most of the kernel's surface, not all of it:
io_uring, userfaultfd, bpf and perf events are classic ways in, and AF_VSOCK sockets are not
covered by the network namespace. The filter answers those system calls with an error
(EPERM; ENOSYS for clone3, so that the C library falls back to clone), and lets through the
socket families sandboxed code needs: AF_UNIX (the tool socket), AF_INET/AF_INET6 (no route
anyway: the network namespace is empty) but not raw or packet sockets, and AF_NETLINK for
NETLINK_ROUTE only (the C library reads the interfaces with it). Everything else runs as is.

The program is built for the machine's architecture (x86_64 or aarch64); a system call made
through another ABI (32-bit x86, x32) is refused."""

from __future__ import annotations

import errno
import platform
import struct
from dataclasses import dataclass

# struct seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6].
_NR, _ARCH = 0, 4


def _arg(i: int) -> int:
    """Offset of the low 32 bits of argument ``i`` (little-endian)."""
    return 16 + 8 * i


# Classic BPF opcodes.
_LD_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_AND = 0x54  # BPF_ALU | BPF_AND | BPF_K
_RET = 0x06  # BPF_RET | BPF_K

ALLOW = 0x7FFF0000


def _errno(code: int) -> int:
    return 0x00050000 | code


@dataclass(frozen=True, slots=True)
class Arch:
    audit: int
    #: System calls refused outright, by name (as in the kernel's tables).
    numbers: dict[str, int]
    #: Numbers at or above this are another ABI's (x32 on x86_64).
    foreign_from: int | None = None


# Names shared by both architectures' tables (the generic numbers from 403 on are common).
_COMMON = {
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "pidfd_getfd": 438,
    "mount_setattr": 442,
}

#: The rest differ: name -> (x86_64, aarch64), from each architecture's kernel table.
_BY_ARCH = {
    "acct": (163, 89),
    "add_key": (248, 217),
    "bpf": (321, 280),
    "clock_adjtime": (305, 266),
    "clock_settime": (227, 112),
    "delete_module": (176, 106),
    "fanotify_init": (300, 262),
    "finit_module": (313, 273),
    "init_module": (175, 105),
    "kcmp": (312, 272),
    "kexec_file_load": (320, 294),
    "kexec_load": (246, 104),
    "keyctl": (250, 219),
    "lookup_dcookie": (212, 18),
    "mount": (165, 40),
    "name_to_handle_at": (303, 264),
    "open_by_handle_at": (304, 265),
    "perf_event_open": (298, 241),
    "pivot_root": (155, 41),
    "process_vm_readv": (310, 270),
    "process_vm_writev": (311, 271),
    "ptrace": (101, 117),
    "quotactl": (179, 60),
    "reboot": (169, 142),
    "request_key": (249, 218),
    "setns": (308, 268),
    "settimeofday": (164, 170),
    "swapoff": (168, 225),
    "swapon": (167, 224),
    "syslog": (103, 116),
    "umount2": (166, 39),
    "unshare": (272, 97),
    "userfaultfd": (323, 282),
}

X86_64 = Arch(
    audit=0xC000003E,
    foreign_from=0x40000000,
    numbers=_COMMON
    | {name: x86 for name, (x86, _) in _BY_ARCH.items()}
    | {  # x86 only
        "ioperm": 173,
        "iopl": 172,
        "modify_ldt": 154,
        "uselib": 134,
    },
)

AARCH64 = Arch(
    audit=0xC00000B7,
    numbers=_COMMON | {name: arm for name, (_, arm) in _BY_ARCH.items()},
)

#: socket(2), socketpair(2) and clone3(2), whose arguments (or existence) are checked.
_SOCKET = {X86_64.audit: 41, AARCH64.audit: 198}
_SOCKETPAIR = {X86_64.audit: 53, AARCH64.audit: 199}
_CLONE3 = 435

AF_UNIX, AF_INET, AF_INET6, AF_NETLINK = 1, 2, 10, 16
SOCK_RAW, SOCK_PACKET = 3, 10
NETLINK_ROUTE = 0


def arch_of(machine: str | None = None) -> Arch:
    machine = machine or platform.machine()
    if machine in {"x86_64", "amd64", "AMD64"}:
        return X86_64
    if machine in {"aarch64", "arm64"}:
        return AARCH64
    raise ValueError(f"no seccomp filter for the {machine} architecture")


Insn = tuple[int, int | str, int | str, int]


def program(arch: Arch) -> bytes:
    """The filter, as the array of ``struct sock_filter`` bubblewrap reads."""
    deny = _errno(errno.EPERM)
    code: list[Insn | str] = [
        (_LD_ABS, 0, 0, _ARCH),
        (_JEQ, 1, 0, arch.audit),
        (_RET, 0, 0, deny),  # another ABI (e.g. 32-bit x86 through int 0x80)
        (_LD_ABS, 0, 0, _NR),
    ]
    if arch.foreign_from is not None:
        code += [(_JGE, "deny", 0, arch.foreign_from)]
    for number in sorted(set(arch.numbers.values())):
        code += [(_JEQ, "deny", 0, number)]
    code += [
        (_JEQ, "enosys", 0, _CLONE3),
        (_JEQ, "socket", 0, _SOCKET[arch.audit]),
        (_JEQ, "socketpair", 0, _SOCKETPAIR[arch.audit]),
        (_RET, 0, 0, ALLOW),
        "deny",
        (_RET, 0, 0, deny),
        "enosys",
        (_RET, 0, 0, _errno(errno.ENOSYS)),
        "socketpair",
        (_LD_ABS, 0, 0, _arg(0)),
        (_JEQ, "allow", "nofamily", AF_UNIX),
        "socket",
        (_LD_ABS, 0, 0, _arg(0)),
        (_JEQ, "allow", 0, AF_UNIX),
        (_JEQ, "inet", 0, AF_INET),
        (_JEQ, "inet", 0, AF_INET6),
        (_JEQ, "netlink", "nofamily", AF_NETLINK),
        "inet",
        (_LD_ABS, 0, 0, _arg(1)),
        (_AND, 0, 0, 0xF),  # the type without SOCK_NONBLOCK / SOCK_CLOEXEC
        (_JEQ, "eperm", 0, SOCK_RAW),
        (_JEQ, "eperm", "allow", SOCK_PACKET),
        "netlink",
        (_LD_ABS, 0, 0, _arg(2)),
        (_JEQ, "allow", "nofamily", NETLINK_ROUTE),
        "nofamily",
        (_RET, 0, 0, _errno(errno.EAFNOSUPPORT)),
        "allow",
        (_RET, 0, 0, ALLOW),
        "eperm",  # (jumps only go forward)
        (_RET, 0, 0, deny),
    ]
    return _assemble(code)


def _assemble(code: list[Insn | str]) -> bytes:
    labels: dict[str, int] = {}
    insns: list[Insn] = []
    for item in code:
        if isinstance(item, str):
            labels[item] = len(insns)
        else:
            insns.append(item)
    out = bytearray()
    for i, (op, jt, jf, k) in enumerate(insns):

        def offset(target: int | str, i: int = i) -> int:
            if isinstance(target, int):
                return target
            jump = labels[target] - (i + 1)
            if not 0 <= jump <= 255:
                raise ValueError(f"jump to {target} out of range")
            return jump

        out += struct.pack("<HBBI", op, offset(jt), offset(jf), k)
    return bytes(out)
