"""Benchmark: recovery from the lab's faults, the cloud's SoftEther build beside Debian's.

Per SoftEther source (a lab of its own each, torn down at the end):
- `upstream`: the pinned release the bridges build (lab.softether_build), no library;
- `debian`: Debian 12's 5.01 with the OpenSSL-3 compatibility library (lab/node.py);
- `debian, no library` (`--without-library`): the defect the library works around.

Faults: the home vpnserver restarts -> seconds to the full matrix; a bridge's internet link
down 10 s -> seconds after link-up; `kill -9` of a bridge's SoftEther worker (its own
watchdog process starts a new one) and of every vpnbridge process (on a VM the unit's
Restart=on-failure starts the service again; the lab has no service manager): is it back,
does traffic flow, what repairs it; sshd's session killed during a converge -> the rerun's
seconds to the full matrix. Needs root. Not a test.

    python bench/lab_faults.py [--stack dev] [--without-library] [--wait 60]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lab import faults
from lab.down import down
from lab.lab import Lab, open_lab
from lab.node import Node
from lab.proc import pids_in
from lab.state import remove_dirs
from lab.status import wait_for_matrix
from lab.up import up
from softether.errors import SoftEtherError

ROOT = Path("/run/hybrid-lab-bench")
Source = Literal["upstream", "debian"]


def quiet(_: str) -> None:
    pass


def green_after(lab: Lab, wait_s: float) -> str:
    green, took = wait_for_matrix(lab.layout, wait_s)
    return f"{took:.1f} s" if green else f"not within {wait_s:.0f} s"


def bridge_processes(node: Node) -> list[int]:
    out = []
    for pid in pids_in(node.netns):
        with contextlib.suppress(OSError):
            if os.path.basename(os.readlink(f"/proc/{pid}/exe")) == "vpnbridge":
                out.append(pid)
    return out


def wait_for(what: Callable[[], bool], seconds: float) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        if what():
            return time.monotonic() - t0
        time.sleep(0.2)
    return None


def repaired_by_up(ref: str, root: Path, wait_s: float) -> str:
    t0 = time.monotonic()
    r = up(ref, say=quiet, root=root)
    return f"`lab up` {time.monotonic() - t0:.1f} s, matrix {'green' if r.matrix_ok else 'NOT green'}" + (
        "" if r.matrix_ok else f" ({green_after(open_lab(ref, root), wait_s)} later)"
    )


def kill_worker(ref: str, root: Path, site: str, wait_s: float) -> list[tuple[str, str]]:
    lab = open_lab(ref, root)
    node = lab.nodes[site]
    before = node.softether_pid()
    os.kill(before, signal.SIGKILL)
    back = wait_for(lambda: _pid_changed(node, before), 20)
    rows = [("kill -9 vpnbridge worker: a new worker", "not within 20 s" if back is None else f"{back:.1f} s (SoftEther's watchdog)")]  # fmt: skip
    rows.append(("kill -9 vpnbridge worker: full matrix", green_after(lab, wait_s)))
    rows.append(("kill -9 vpnbridge worker: repaired by", repaired_by_up(ref, root, wait_s)))
    return rows


def _pid_changed(node: Node, before: int) -> bool:
    with contextlib.suppress(Exception):
        return node.softether_pid() not in (before, 0)
    return False


def kill_all(ref: str, root: Path, site: str, wait_s: float) -> list[tuple[str, str]]:
    lab = open_lab(ref, root)
    node = lab.nodes[site]
    for pid in bridge_processes(node):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    back = wait_for(lambda: bool(bridge_processes(node)), 20)
    rows = [("kill -9 every vpnbridge process: back by itself", "not within 20 s (no service manager in the lab)" if back is None else f"{back:.1f} s")]  # fmt: skip
    t0 = time.monotonic()
    faults.restart_softether(node)  # what Restart=on-failure does on the VM
    rows.append(("kill -9 every vpnbridge process: started again (the unit's ExecStart)", f"{time.monotonic() - t0:.1f} s"))  # fmt: skip
    rows.append(("kill -9 every vpnbridge process: repaired by", repaired_by_up(ref, root, wait_s)))
    return rows


def ssh_killed(ref: str, root: Path, site: str, wait_s: float) -> list[tuple[str, str]]:
    lab = open_lab(ref, root)
    faults.delete_cascade(lab, site)
    killer = faults.SshKiller(lab.nodes[site], nth=2).start()  # the 2nd vpncmd: the apply
    try:
        up(ref, say=quiet, root=root)
        first = "converged anyway"
    except SoftEtherError as e:
        first = f"failed: {type(e).__name__}"
    killer.join()
    return [
        ("sshd session killed mid-converge: that converge", f"{first} ({len(killer.killed)} killed)"),
        ("sshd session killed mid-converge: rerun", repaired_by_up(ref, root, wait_s)),
    ]


def measure(ref: str, source: Source, preload: bool, wait_s: float) -> list[tuple[str, str]]:
    root = ROOT / secrets.token_hex(3)
    label = source if preload or source == "upstream" else f"{source}, no library"
    rows: list[tuple[str, str]] = []
    try:
        try:
            r = up(ref, say=quiet, root=root, preload=preload, source=source)
        except SoftEtherError as e:
            # Without the library a fresh converge itself can fail: that is the defect.
            return [(f"{label}: lab up", f"failed: {str(e).splitlines()[0]}")]
        lab = open_lab(ref, root)
        rel = next(iter(lab.nodes.values())).softether_label
        rows.append((f"{label}: lab up ({rel})", f"{r.seconds:.1f} s, matrix {'green' if r.matrix_ok else 'NOT green'}"))  # fmt: skip
        if not r.matrix_ok:
            return rows
        faults.restart_server(lab)
        rows.append((f"{label}: home vpnserver restart -> full matrix", green_after(lab, wait_s)))
        if not preload and source == "debian":
            return rows
        site = lab.stack.network.sites[0].name
        faults.link_down(lab, site, 10.0)
        rows.append((f"{label}: {site} internet link down 10 s -> full matrix after link-up", green_after(lab, wait_s)))  # fmt: skip
        for fault in (kill_worker, kill_all, ssh_killed):
            rows += [(f"{label}: {a}", b) for a, b in fault(ref, root, site, wait_s)]
    finally:
        down(ref, say=quiet, root=root)
        remove_dirs(root)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--stack", default="dev")
    ap.add_argument("--without-library", action="store_true")
    ap.add_argument("--wait", type=float, default=60.0, help="seconds to wait for a green matrix")
    args = ap.parse_args()
    variants: list[tuple[Source, bool]] = [("upstream", False), ("debian", True)]
    if args.without_library:
        variants.append(("debian", False))
    print(f"{os.cpu_count()} cores (shared machine), load {os.getloadavg()[0]:.1f}")
    rows = [row for source, preload in variants for row in measure(args.stack, source, preload, args.wait)]
    w = max(len(a) for a, _ in rows)
    for a, b in rows:
        print(f"{a:<{w}}  {b}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
