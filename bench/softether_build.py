"""Benchmark: the pinned SoftEther build from a clean cache, and the TLS group it negotiates.

Builds with the bridges' own install script (lab.softether_build) into a fresh, temporary
cache: wall and CPU time, installed size. Then a lab of its own runs that build, the home
server restarts, and its ServerHellos on its internet interface are read while the bridges
reconnect (lab.tls_capture): the key_share group the cascades negotiated. `--full-liboqs` does the same
for the script without `-DOQS_MINIMAL_BUILD` (every liboqs algorithm, upstream's default),
the reference the minimal set must match. Set HYBRID_SOFTETHER_MIRROR where there is no
internet. Needs root. Not a test.

    python bench/softether_build.py [--stack dev] [--full-liboqs]
"""

from __future__ import annotations

import argparse
import os
import resource
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from components import cloudinit
from lab import faults, softether_build
from lab.down import down
from lab.lab import open_lab, softether_options
from lab.layout import PUBLIC_IF
from lab.state import remove_dirs
from lab.status import wait_for_matrix
from lab.tls_capture import capture_server_hellos
from lab.up import up

ROOT = Path("/run/hybrid-lab-bench")


def quiet(_: str) -> None:
    pass


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def measure(stack: str, label: str) -> list[tuple[str, str]]:
    cache = Path(tempfile.mkdtemp(prefix="hc-softether-bench-", dir="/var/tmp"))
    os.environ[softether_build.CACHE_ENV] = str(cache)
    root = ROOT / secrets.token_hex(3)
    rows: list[tuple[str, str]] = []
    try:
        lab = open_lab(stack, root)
        cpu, t0 = children_cpu(), time.monotonic()
        release = softether_build.release(softether_options(lab), quiet)
        wall, cpu = time.monotonic() - t0, children_cpu() - cpu
        assert release.root is not None
        size = sum(f.stat().st_size for f in release.root.rglob("*") if f.is_file())
        rows.append((f"{label}: build from a clean cache", f"{wall:.0f} s wall, {cpu:.0f} s CPU"))
        rows.append((f"{label}: installed tree", f"{size / 1e6:.0f} MB"))
        r = up(stack, say=quiet, root=root)
        rows.append((f"{label}: lab up (build cached)", f"{r.seconds:.1f} s, matrix {'green' if r.matrix_ok else 'NOT green'}"))  # fmt: skip
        lab = open_lab(stack, root)
        home = lab.nodes[lab.stack.network.home.name]

        def reconnect() -> None:  # every bridge's cascade dials the restarted server
            faults.restart_server(lab)
            wait_for_matrix(lab.layout, 60)

        hellos = capture_server_hellos(home.netns, PUBLIC_IF, reconnect, 75)
        groups = sorted({f"{h.group_name}{'' if h.tls13 else ' (not TLS 1.3)'}" for h in hellos})
        rows.append((f"{label}: cascades' ServerHello key_share", ", ".join(groups) or "none seen"))
    finally:
        down(stack, say=quiet, root=root)
        remove_dirs(root)
        shutil.rmtree(cache, ignore_errors=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--stack", default="dev")
    ap.add_argument("--full-liboqs", action="store_true")
    args = ap.parse_args()
    rows = measure(args.stack, "minimal liboqs (the script's flags)")
    if args.full_liboqs:
        cloudinit.CMAKE_FLAGS = tuple(
            f for f in cloudinit.CMAKE_FLAGS if not f.startswith("-DOQS_MINIMAL_BUILD=")
        )
        rows += measure(args.stack, "full liboqs (upstream default)")
    w = max(len(a) for a, _ in rows)
    print(f"{os.cpu_count()} cores (shared machine: other jobs may run), load {os.getloadavg()[0]:.1f}")
    for a, b in rows:
        print(f"{a:<{w}}  {b}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
