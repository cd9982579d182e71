"""The lab's one process and network-namespace toolkit: run a command, run it in a
namespace, tell whether a PID lives, stop it, kill everything in a namespace.

up, down, the nodes, the PaaS stand-ins, the faults and the test bed all use these; nothing
else in lab/ sends a signal or reads /proc for a process's state (`lab.down.marked` reads
environments to find the lab's mark).
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

NETNS_DIR = Path("/run/netns")


class LabError(RuntimeError):
    pass


def sh(*argv: str, check: bool = True, timeout: float = 30, stdin: str | None = None) -> str:
    """Run a command with a hard timeout; with `check`, a failure raises LabError with the
    last lines of its output."""
    try:
        res = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, input=stdin, check=False
        )
    except subprocess.TimeoutExpired:
        raise LabError(f"{shlex.join(argv)}: no answer within {timeout:.0f} s") from None
    if check and res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
        raise LabError(f"{shlex.join(argv)} exited {res.returncode}: {' / '.join(tail)}")
    return res.stdout


def run(argv: Sequence[str], *, timeout: float = 20.0, stdin: str | None = None) -> str:
    """`sh` for an argv list."""
    return sh(*argv, timeout=timeout, stdin=stdin)


def exists(ns: str) -> bool:
    """The named network namespace exists."""
    return (NETNS_DIR / ns).exists()


def in_ns(ns: str, *argv: str) -> list[str]:
    """argv that runs `argv` inside network namespace `ns`."""
    return ["ip", "netns", "exec", ns, *argv]


def pids_in(ns: str) -> list[int]:
    """Processes whose network namespace is `ns` (`ip netns pids`); [] if it does not exist."""
    if not exists(ns):
        return []
    return [int(p) for p in sh("ip", "netns", "pids", ns, check=False).split()]


def netns_of(pid: int) -> str | None:
    """The `net:[inode]` identity of a process's network namespace (None once it is gone)."""
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def comm(pid: int) -> str:
    """A process's command name ("" once it is gone)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def alive(pid: int | None) -> bool:
    """The process exists and is not a zombie."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return not Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return False


def send(pid: int, sig: signal.Signals) -> bool:
    """Send `sig` to `pid`; False if it was already gone."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def kill(pids: Iterable[int], sig: signal.Signals = signal.SIGKILL, wait_s: float = 5.0) -> bool:
    """Send `sig` to all of `pids` at once, then wait (at most `wait_s`) until none is alive;
    True if none is."""
    todo = list(pids)
    for pid in todo:
        send(pid, sig)
    deadline = time.monotonic() + wait_s
    while any(alive(p) for p in todo):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def stop(pid: int | None, seconds: float = 15.0) -> None:
    """TERM, wait (at most `seconds`), then KILL."""
    if pid is None or not alive(pid):
        return
    if not kill([pid], signal.SIGTERM, seconds):
        send(pid, signal.SIGKILL)


def kill_all_in(ns: str) -> None:
    """TERM, then KILL, every process in namespace `ns` (all started by the lab), bounded."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = pids_in(ns)
        if not pids:
            return
        kill(pids, sig, 3.0)
