"""Benchmark: recovery times of the lab's faults, and the OpenSSL-3 defect with and without
the compatibility library (lab/node.py).

With the library: restart the home vpnserver -> seconds to the full matrix; a bridge's
internet link down 10 s -> seconds after link-up to the full matrix. Without it (a second
lab): restart the home vpnserver -> seconds to the full matrix, or "not within N s".
Each lab in a directory of its own, torn down at the end. Needs root. Not a test.

    python bench/lab_faults.py [--stack dev] [--without-library-wait 120]
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lab import faults
from lab.down import down
from lab.state import remove_dirs
from lab.status import wait_for_matrix
from lab.up import open_lab, up
from softether.session import SoftEtherError
from softether.transport import TransportError

ROOT = Path("/run/hybrid-lab-bench")


def quiet(_: str) -> None:
    pass


def restart_recovery(ref: str, root: Path, wait_s: float) -> str:
    lab = open_lab(ref, root)
    faults.restart_server(lab)
    t0 = time.monotonic()
    green, _ = wait_for_matrix(lab.layout, wait_s)
    took = time.monotonic() - t0
    return f"{took:.1f} s" if green else f"not within {wait_s:.0f} s"


def worker_crash_recovery(ref: str, root: Path, wait_s: float) -> str:
    """kill -9 of a bridge's SoftEther worker (its watchdog starts a new one with a bare tap)
    -> seconds to the full matrix."""
    lab = open_lab(ref, root)
    node = lab.nodes[lab.stack.network.sites[0].name]
    os.kill(node.softether_pid(), signal.SIGKILL)
    t0 = time.monotonic()
    green, _ = wait_for_matrix(lab.layout, wait_s)
    took = time.monotonic() - t0
    return f"{took:.1f} s" if green else f"not within {wait_s:.0f} s"


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--stack", default="dev")
    ap.add_argument("--without-library-wait", type=float, default=120.0)
    args = ap.parse_args()
    rows: list[tuple[str, str]] = []
    for preload in (True, False):
        root = ROOT / secrets.token_hex(3)
        label = "with library" if preload else "WITHOUT library"
        try:
            try:
                r = up(args.stack, say=quiet, root=root, preload=preload)
            except (SoftEtherError, TransportError) as e:
                # Without the library a fresh converge itself can fail: that is the defect.
                rows.append((f"{label}: lab up", f"failed: {str(e).splitlines()[0]}"))
                continue
            if not r.matrix_ok:
                rows.append((f"{label}: lab up", "matrix not green"))
                continue
            wait = 60.0 if preload else args.without_library_wait
            rows.append(
                (
                    f"{label}: home vpnserver restart -> full matrix",
                    restart_recovery(args.stack, root, wait),
                )
            )
            if preload:
                rows.append(
                    (
                        f"{label}: bridge worker crash (kill -9) -> full matrix",
                        worker_crash_recovery(args.stack, root, 60.0),
                    )
                )
                lab = open_lab(args.stack, root)
                site = lab.stack.network.sites[0].name
                faults.link_down(lab, site, 10.0)
                t0 = time.monotonic()
                green, _ = wait_for_matrix(lab.layout, 60.0)
                took = time.monotonic() - t0
                rows.append(
                    (
                        f"{label}: {site} internet link down 10 s -> full matrix after link-up",
                        f"{took:.1f} s" if green else "not within 60 s",
                    )
                )
        finally:
            down(args.stack, say=quiet, root=root)
            remove_dirs(root)
    w = max(len(a) for a, _ in rows)
    for a, b in rows:
        print(f"{a:<{w}}  {b}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
