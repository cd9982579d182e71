"""Benchmark: pings lost while each kind of credential rotates in a running lab.

Pings at 5 Hz (`ping -i 0.2`, bounded by `-w`) between one host of every pair of sites that
the stack's paths let ping each other (inside the lab's namespaces), while `lab.rotate`
carries out each rotation as `pulumi up` does after a bump of `hybrid-cloud:rotation` (the
home server first, then each bridge: a cascade's new password, a controlled reconnect, a
check). Prints one line per kind, summed over the site pairs, and the worst pair:

    <kind>: lost <n> of <m>, longest gap <seconds> s

A lost ping is a sequence number without a reply up to the last one answered; the longest gap
is the longest time between two replies (0.2 s when none is lost). First, unmeasured, every
cascade pins the home server's certificate (the lab's `up` pins none; the program does).
Needs root and a running lab (`hybrid lab up --stack dev`). Not a test.

    python bench/rotation.py [--stack dev] [--kinds cascade,admin,hub,certificate] [--settle 3]
"""

from __future__ import annotations

import argparse
import itertools
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lab import proc
from lab.lab import open_lab
from lab.layout import Host, Layout
from lab.rotate import KINDS, Rotated, rotate
from lab.status import pairs

INTERVAL_S = 0.2  # 5 Hz
MAX_S = 300  # ping's own deadline: no ping outlives a stuck rotation by more


@dataclass(frozen=True)
class Loss:
    pair: str
    lost: int
    sent: int
    gap_s: float


def site_pairs(layout: Layout) -> list[tuple[Host, Host]]:
    """One host pair per unordered pair of sites (a ping's reply crosses the way back)."""
    seen: set[frozenset[str]] = set()
    out = []
    for a, b in pairs(layout):
        key = frozenset((a.site, b.site))
        if key not in seen:
            seen.add(key)
            out.append((a, b))
    return out


def loss(pair: str, output: str) -> Loss:
    seqs = sorted({int(m) for m in re.findall(r"bytes from .*?icmp_seq=(\d+)", output)})
    if not seqs:
        return Loss(pair, 0, 0, float("inf"))
    steps = [b - a for a, b in itertools.pairwise(seqs)] or [1]
    return Loss(pair, seqs[-1] - len(seqs), seqs[-1], max(steps) * INTERVAL_S)


def measured(layout: Layout, action: Callable[[], Rotated], settle_s: float) -> tuple[list[Loss], Rotated]:
    """Ping every site pair while `action()` runs, `settle_s` before and after it."""
    procs = [
        (
            f"{a.site} -> {b.site}",
            subprocess.Popen(
                proc.in_ns(a.ns, "ping", "-n", "-i", str(INTERVAL_S), "-W", "1", "-w", str(MAX_S), str(b.address)),
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            ),
        )
        for a, b in site_pairs(layout)
    ]
    try:
        time.sleep(settle_s)
        done = action()
        time.sleep(settle_s)
    finally:
        for _, p in procs:
            p.send_signal(signal.SIGINT)
    return [loss(name, p.communicate(timeout=10)[0]) for name, p in procs], done


def main() -> int:
    ap = argparse.ArgumentParser(description="pings lost while each kind of credential rotates")
    ap.add_argument("--stack", default="dev")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--settle", type=float, default=3.0, help="seconds of pings before and after each rotation")
    args = ap.parse_args()
    lab = open_lab(args.stack)
    rotate(lab, None)  # the pins, as the program's first up makes them
    for kind in args.kinds.split(","):
        losses, r = measured(lab.layout, lambda k=kind: rotate(lab, k), args.settle)
        lost, sent = sum(x.lost for x in losses), sum(x.sent for x in losses)
        worst = max(losses, key=lambda x: (x.lost, x.gap_s))
        print(f"{kind}: lost {lost} of {sent}, longest gap {max(x.gap_s for x in losses):.1f} s")
        print(f"  worst pair {worst.pair}: lost {worst.lost} of {worst.sent}, longest gap {worst.gap_s:.1f} s")
        print(f"  rotated in {r.seconds:.1f} s:")
        for site, lines in r.lines.items():
            for line in lines:
                print(f"    {site}: {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
