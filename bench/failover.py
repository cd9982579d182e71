"""Benchmark: a bridge pair's failover time on five faults (issue 22), printed, not asserted.

In the failover test bed (lab/failover_bed.py: the real controller, the lab driver moving
the site router's routes, frame relays for the cascades), each fault goes into the active
bridge and the time runs from the fault to the connectivity check green again with the
other bridge active (home LAN host <-> site host, both ways, through the vip and the moved
routes). Between faults the fault is undone and the pair settles (failback to the preferred
bridge after `recover_after` green rounds; reported on stderr). `--steady S` first watches
the pair for S seconds and reports role changes (a flap is any). Needs root.

    python bench/failover.py [--interval 1.0] [--fail-after 3] [--recover-after 10] [--steady 0]

Output: one line per fault, `<fault>: <seconds> s`, then `worst: <seconds> s`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lab.failover import run_faults, settle
from lab.failover_bed import Bed
from lab.state import remove_dirs

ROOT = Path("/run/hybrid-failover-bench")


def watch(bed: Bed, seconds: float) -> int:
    """Role changes of either bridge during `seconds` (sampled every 0.2 s)."""
    sides = bed.sides()
    last, changes = [s.role() for s in sides], 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        now = [s.role() for s in sides]
        changes += sum(a != b for a, b in zip(last, now, strict=True))
        last = now
        time.sleep(0.2)
    return changes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="A bridge pair's failover time on five faults (issue 22).")
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--fail-after", type=int, default=3)
    ap.add_argument("--recover-after", type=int, default=10)
    ap.add_argument("--wait", type=float, default=30.0, help="give up on a fault after this")
    ap.add_argument("--steady", type=float, default=0.0, help="watch the pair this long first")
    args = ap.parse_args(argv)
    directory = ROOT / str(time.time_ns())
    try:
        with Bed(directory, args.interval, args.fail_after, args.recover_after) as bed:
            sides = bed.sides()
            if settle(sides, bed.green, 30) is None:
                print("error: the pair did not settle within 30 s", file=sys.stderr)
                return 1
            if args.steady:
                print(f"steady {args.steady:.0f} s: {watch(bed, args.steady)} role changes")
            times = []
            for name, took in run_faults(sides, bed.green, args.wait, say=lambda line: print(line, file=sys.stderr, flush=True), preferred=bed.preferred):
                print(f"{name}: {f'not within {args.wait:.0f}' if took is None else f'{took:.1f}'} s", flush=True)
                times.append(took)
    finally:
        remove_dirs(directory)
    worst = f"not within {args.wait:.0f}" if None in times else f"{max(t for t in times if t is not None):.1f}"
    print(f"worst: {worst} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
