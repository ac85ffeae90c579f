"""Confine an app process to its own files with Landlock, then exec it.

The local runtime starts every app version through this file (`python -I confine.py --read P
--write P ... -- <app command>`): it asks the kernel (Landlock, Linux 5.13 and later, no
privileges needed) to allow this process and everything it executes to open only

- for reading and executing: the Python installation and the system's libraries, and the
  version's own unpacked code;
- for reading: the secrets of its own app and environment, and a few files under /etc;
- for reading and writing: its own data folder;

and nothing else. The engine's home (its keys, trusted keys, identity registry, other apps'
code, data and secrets, the audit log) is out of reach, and so is the worker itself: a
Landlocked process may not trace, read the memory or `/proc/<pid>/environ` of a process outside
its domain, and (Landlock ABI 6) may not signal it. A confinement cannot be lifted by the
process it applies to.

Standard library only, and runnable as a script with `python -I`: nothing from the app's
environment (PYTHONPATH) is imported before the rules are in force.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import platform
import sys
from collections.abc import Sequence

# Linux's generic syscall numbers (the same on x86_64 and aarch64).
_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
REMOVE_DIR = 1 << 4
REMOVE_FILE = 1 << 5
MAKE_CHAR = 1 << 6
MAKE_DIR = 1 << 7
MAKE_REG = 1 << 8
MAKE_SOCK = 1 << 9
MAKE_FIFO = 1 << 10
MAKE_BLOCK = 1 << 11
MAKE_SYM = 1 << 12
REFER = 1 << 13  # ABI 2
TRUNCATE = 1 << 14  # ABI 3
IOCTL_DEV = 1 << 15  # ABI 5
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1  # ABI 6

_FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV
READ = READ_FILE | READ_DIR
READ_EXECUTE = READ | EXECUTE
READ_WRITE = (
    READ | WRITE_FILE | REMOVE_DIR | REMOVE_FILE | MAKE_DIR | MAKE_REG | MAKE_SOCK | MAKE_FIFO
    | MAKE_SYM | REFER | TRUNCATE
)  # fmt: skip


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class ConfinementError(OSError):
    """The kernel refused to confine this process (or has no Landlock)."""


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 when it has none (not Linux, too old, disabled)."""
    if platform.system() != "Linux":
        return 0
    try:
        version = int(_libc().syscall(_CREATE_RULESET, None, 0, _CREATE_RULESET_VERSION))
    except (OSError, AttributeError):
        return 0
    return max(version, 0)


def handled_rights(abi: int) -> int:
    """Every filesystem right this ABI knows: what is not granted by a rule is denied."""
    rights = (MAKE_SYM << 1) - 1  # ABI 1: EXECUTE .. MAKE_SYM
    if abi >= 2:
        rights |= REFER
    if abi >= 3:
        rights |= TRUNCATE
    if abi >= 5:
        rights |= IOCTL_DEV
    return rights


def _error(what: str) -> ConfinementError:
    code = ctypes.get_errno()
    return ConfinementError(code, f"{what}: {os.strerror(code)}")


def confine(rules: Sequence[tuple[str, int]]) -> int:
    """Restrict this process (and what it executes) to `rules`, (path, rights) pairs; paths that
    do not exist are skipped. Returns the ABI used; ConfinementError when it cannot be done."""
    abi = landlock_abi()
    if abi < 1:
        raise ConfinementError(0, "this kernel has no Landlock: the process cannot be confined")
    handled = handled_rights(abi)
    libc = _libc()
    attr = _RulesetAttr(handled, 0, SCOPE_SIGNAL | SCOPE_ABSTRACT_UNIX_SOCKET if abi >= 6 else 0)
    # Fields an older kernel does not know are zero, which copy_struct_from_user accepts.
    size = ctypes.c_size_t(ctypes.sizeof(_RulesetAttr))
    ruleset = int(libc.syscall(_CREATE_RULESET, ctypes.byref(attr), size, 0))
    if ruleset < 0:
        raise _error("landlock_create_ruleset")
    try:
        for path, rights in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                allowed = rights & handled
                if not os.path.isdir(path):
                    allowed &= _FILE_RIGHTS
                rule = _PathBeneathAttr(allowed, fd)
                if libc.syscall(_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0):
                    raise _error(f"landlock_add_rule {path}")
            finally:
                os.close(fd)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0):
            raise _error("prctl(PR_SET_NO_NEW_PRIVS)")
        if libc.syscall(_RESTRICT_SELF, ruleset, 0):
            raise _error("landlock_restrict_self")
    finally:
        os.close(ruleset)
    return abi


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--read", action="append", default=[], help="read only")
    parser.add_argument("--exec", action="append", default=[], help="read and execute")
    parser.add_argument("--write", action="append", default=[], help="read and write")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to run after --")
    rules = (
        [(path, READ) for path in args.read]
        + [(path, READ_EXECUTE) for path in args.exec]
        + [(path, READ_WRITE) for path in args.write]
    )
    try:
        confine(rules)
    except ConfinementError as exc:
        print(f"zdp confine: cannot confine {command[0]}: {exc.strerror}", file=sys.stderr)
        sys.exit(126)
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
