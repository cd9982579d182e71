"""`hybrid lab down`: stop what the lab started, delete its namespaces and its directory.

Only what the lab's record names is touched: recorded PIDs (each checked to still live in one
of the lab's namespaces, so a reused PID is never killed), then any process left inside the
lab's own namespaces, then those namespaces. Safe twice, and after a crash. No graceful
SoftEther stop: the configuration is deleted with the lab anyway.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from . import netns, paas
from .state import LabState, lab_dir, remove_dirs


def _netns_of(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def _ns_ids(names: list[str]) -> set[str]:
    """The `net:[inode]` identities of the lab's namespaces that exist."""
    out = set()
    for n in names:
        with contextlib.suppress(OSError):
            out.add(f"net:[{os.stat(netns.NETNS_DIR / n).st_ino}]")
    return out


def _stop_all(pids: set[int]) -> None:
    """KILL them all at once and wait (bounded): the lab's data is deleted with it, so nothing
    needs a graceful shutdown (SoftEther's watchdog would only restart a TERMed worker)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while any(paas.alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


def down(ref: str, say: Callable[[str], None] = print, root: Path | None = None) -> int:
    directory = lab_dir(ref, root)
    st = LabState.load(directory)
    if st is None:
        if directory.exists():
            remove_dirs(directory)
        say(f"no lab for stack {ref}: nothing to do")
        return 0
    ours = _ns_ids(st.namespaces)
    targets = {pid for pid in st.pids.values() if paas.alive(pid) and _netns_of(pid) in ours}
    targets |= {pid for ns in st.namespaces for pid in netns.pids_in(ns)}
    _stop_all(targets)
    gone = netns.delete(st.namespaces)
    remove_dirs(directory)
    say(
        f"lab {st.lab_id} of stack {ref} down: {len(targets)} processes stopped, {len(gone)} namespaces deleted, {directory} removed"
    )
    return 0
