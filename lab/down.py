"""`hybrid lab down`: stop what the lab started, delete its namespaces and its directory.

Only what belongs to the lab is touched: recorded PIDs (each checked to still be the recorded
process, `LabState.live`, so a reused PID is never killed), any process left inside the lab's
namespaces (the recorded ones and those named `hc-<lab id>-*`), any process carrying the
lab's mark (`lab.state.MARK`; a node's sshd by its config in the lab's directory: found also
when its namespace was deleted by hand), every process in the cgroups of the lab's booted
machines (lab/vm.py; a machine's systemd clears the environment, and lives on in an unnamed
namespace when its namespace is deleted by hand), then those namespaces and cgroups. Works from the namespaces and processes alone when the record is unreadable.
Safe twice, and after a crash; it creates nothing (a full disk does not stop it). A `lab up`
in progress is cancelled first: SIGINT, then KILL, each sent only to the process the kernel
says holds the lab's lock at that moment (`lab.state.holder`), with a bounded wait for it. No graceful SoftEther stop: the configuration is deleted with the lab.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from . import netns, proc
from .layout import lab_id
from .state import (
    LabBusy,
    LabState,
    RecordError,
    holder,
    lab_dir,
    mark_entry,
    operation,
    remove_dirs,
)
from .vm import cgroup_pids, machine_cgroups, remove_cgroup

CANCEL_WAIT_S = 15.0
RELEASE_WAIT_S = 5.0


def marked(directory: Path) -> set[int]:
    """Live processes carrying the lab's mark in their environment, and the nodes' sshd (it
    clears its environment) by its `-f` naming a file of the lab's directory."""
    want = mark_entry(directory)
    inside = f"{directory.resolve()}/".encode()
    out = set()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            env = (d / "environ").read_bytes().split(b"\0")
            argv = (d / "cmdline").read_bytes()
        except OSError:
            continue
        sshd = argv.startswith(b"sshd:") or argv.startswith(b"/usr/sbin/sshd")
        if (want in env or (sshd and inside in argv)) and proc.alive(int(d.name)):
            out.add(int(d.name))
    return out


def _cancel_up(directory: Path, say: Callable[[str], None]) -> None:
    """A `lab up` holding the lock: interrupt it and wait (bounded) until it lets go."""
    pid, command = holder(directory)
    if pid is None or not command.startswith("lab up"):
        return
    say(f"cancelling the lab up in progress (pid {pid})")
    # SIGINT first (it says what it leaves and exits at once); KILL if it does not go. Each
    # only while that process still holds the lock.
    for sig in (signal.SIGINT, signal.SIGKILL):
        if holder(directory)[0] != pid or proc.kill([pid], sig, CANCEL_WAIT_S):
            return


def down(ref: str, say: Callable[[str], None] = print, root: Path | None = None) -> int:
    directory = lab_dir(ref, root)
    deadline: float | None = None
    while True:
        try:
            with operation(directory, "lab down", create=False):
                return _down(ref, directory, say)
        except LabBusy:
            if deadline is None:
                _cancel_up(directory, say)
                # A multi-threaded holder reads as gone (its main thread a zombie) a moment
                # before its last thread exits and the kernel drops the lock.
                deadline = time.monotonic() + RELEASE_WAIT_S
            elif time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _down(ref: str, directory: Path, say: Callable[[str], None]) -> int:
    try:
        st = LabState.load(directory)
    except RecordError as e:
        say(f"{e}: removing the lab by its namespaces and processes")
        st = None
    lid = st.lab_id if st else lab_id(str(directory))
    prefix = f"hc-{lid}-"
    found = sorted(p.name for p in proc.NETNS_DIR.glob(f"{prefix}*")) if lid else []
    recorded_ns: list[str] = st.namespaces if st else []
    names = list(dict.fromkeys([*recorded_ns, *found]))
    targets = {pid for name in st.pids if (pid := st.live(name))} if st else set()
    targets |= {pid for ns in names for pid in proc.pids_in(ns)}
    targets |= marked(directory)
    machines = machine_cgroups(prefix) if lid else []
    targets |= {pid for c in machines for pid in cgroup_pids(c)}
    if st is None and not names and not targets:
        remove_dirs(directory)
        say(f"no lab for stack {ref}: nothing to do")
        return 0
    # KILL them all at once and wait (bounded): the lab's data is deleted with it, so nothing
    # needs a graceful shutdown (SoftEther's watchdog would only restart a TERMed worker).
    proc.kill(targets)
    for c in machines:
        remove_cgroup(c)
    gone = netns.delete(names)
    remove_dirs(directory)
    say(
        f"lab {lid} of stack {ref} down: {len(targets)} processes stopped, "
        f"{len(gone)} namespaces deleted, {directory} removed"
    )
    return 0
