"""The lab's one process and network-namespace toolkit: run a command, run it in a
namespace, tell whether a PID lives and whether it is the lab's, stop it, kill everything in
a namespace.

The lab signals only processes it can prove are its own (`owned`): a process carrying the
lab's mark in its environment (/proc/PID/environ: set on everything the lab starts, inherited
by what those start, set by nothing else), or one whose network namespace is one of the
lab's (everything in there was started there by the lab: a node's daemons, a booted
machine's PID 1 and its services). A PID read from a file is never a proof by itself: a
recorded PID also has its start time (`start_time`, /proc/PID/stat) checked, and the holder
of the lab's lock is the process the kernel says holds it (`socket_holders`).

up, down, the nodes, the PaaS stand-ins, the browser, the faults and the test bed all use
these; nothing else in lab/ sends a signal or reads /proc for a process's state
(`lab.down.marked` reads environments to find the lab's mark).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Collection, Iterable, Sequence
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


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat's fields after the command name ([] once it is gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return []


def start_time(pid: int) -> int | None:
    """When the process started (clock ticks since boot): with its PID, a process's identity
    over time (a reused PID has a later one). None once it is gone."""
    fields = _stat(pid)
    return int(fields[19]) if len(fields) > 19 else None


def owned(pid: int | None, marks: Collection[bytes], namespaces: Iterable[str]) -> bool:
    """`pid` lives and is provably the lab's: it carries one of `marks` (`NAME=value`) in its
    environment, or its network namespace is one of `namespaces` (names in /run/netns)."""
    if not pid or not alive(pid):
        return False
    with contextlib.suppress(OSError):
        if set(marks) & set(Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")):
            return True
    return netns_of(pid) in {netns_id(ns) for ns in namespaces} - {None}


def netns_id(ns: str) -> str | None:
    """The `net:[inode]` identity of the named network namespace (None if it is not there)."""
    try:
        return f"net:[{os.stat(NETNS_DIR / ns).st_ino}]"
    except OSError:
        return None


def pids_sharing_netns(pid: int) -> list[int]:
    """Processes in the network namespace of `pid` (which may have no name left: deleted by
    hand while they ran), `pid` among them; [] once it is gone."""
    ns = netns_of(pid)
    if ns is None:
        return []
    return [int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit() and netns_of(int(d.name)) == ns]


def ns_pids(pid: int) -> list[int]:
    """The process's PID in each PID namespace it is in, outermost first (NSpid)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return [int(p) for p in line.split()[1:]]
    except (OSError, ValueError):
        pass
    return []


def session_of(pid: int) -> int | None:
    """The process's session ID (None once it is gone)."""
    fields = _stat(pid)
    return int(fields[3]) if len(fields) > 3 else None


def cmdline(pid: int) -> str:
    """A process's command line, words joined by spaces ("" once it is gone)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return argv.replace(b"\0", b" ").decode(errors="replace").strip()


def socket_holders(name: str) -> list[int]:
    """The processes that hold the abstract Unix socket bound to `name` (without its leading
    NUL) in this network namespace: by the socket's inode (/proc/net/unix), the processes
    with a descriptor of it (/proc/PID/fd)."""
    inodes = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 8 and fields[7] == f"@{name}":
                inodes.add(f"socket:[{fields[6]}]")
    out = []
    for d in Path("/proc").iterdir() if inodes else ():
        if not d.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if any(os.readlink(f) in inodes for f in (d / "fd").iterdir()):
                out.append(int(d.name))
    return sorted(out)


def alive(pid: int | None) -> bool:
    """The process exists and is not a zombie."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    fields = _stat(pid)
    return bool(fields) and fields[0] != "Z"


def send(pid: int, sig: signal.Signals) -> bool:
    """Send `sig` to `pid`; False if it was already gone."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def kill(pids: Iterable[int], sig: signal.Signals = signal.SIGKILL, wait_s: float = 5.0) -> bool:
    """Send `sig` to all of `pids` at once, then wait (at most `wait_s`) until none is alive;
    True if none is. A PID that meanwhile names another process (a later start time) is gone."""
    todo = {pid: start_time(pid) for pid in pids}
    for pid in todo:
        send(pid, sig)

    def same(pid: int) -> bool:
        return alive(pid) and start_time(pid) == todo[pid]

    deadline = time.monotonic() + wait_s
    while any(same(p) for p in todo):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def stop(pid: int | None, seconds: float = 15.0) -> None:
    """TERM, wait (at most `seconds`), then KILL (the same process only: by its start time)."""
    if pid is None or not alive(pid):
        return
    started = start_time(pid)
    if not kill([pid], signal.SIGTERM, seconds) and start_time(pid) == started:
        send(pid, signal.SIGKILL)


def kill_all_in(ns: str) -> None:
    """TERM, then KILL, every process in namespace `ns` (all started by the lab), bounded."""
    kill_all(lambda: pids_in(ns))


def kill_session(ns: str, sid: int) -> None:
    """TERM, then KILL, every process of session `sid` in namespace `ns`: a process the lab
    started in a session of its own, and what it forked (a server's workers outlive it)."""
    kill_all(lambda: [p for p in pids_in(ns) if session_of(p) == sid])


def kill_all(pids: Callable[[], list[int]]) -> None:
    """TERM, then KILL, every process `pids()` names at each step, bounded."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        todo = pids()
        if not todo:
            return
        kill(todo, sig, 3.0)
