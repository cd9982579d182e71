"""Benchmark: `hybrid lab up` wall time from nothing to a green matrix, and re-apply time.

Runs in a lab directory of its own (never touches a lab you run), tears it down at the end.
Needs root. Not a test.

    python bench/lab_up.py [--stack dev] [--runs 2] [--reapply 3]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lab.down import down
from lab.state import remove_dirs
from lab.up import up

ROOT = Path("/run/hybrid-lab-bench")


def quiet(_: str) -> None:
    pass


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--stack", default="dev")
    ap.add_argument("--runs", type=int, default=2, help="fresh bring-ups (each torn down)")
    ap.add_argument("--reapply", type=int, default=3, help="re-applies on the last running lab")
    args = ap.parse_args()
    root = ROOT / secrets.token_hex(3)
    fresh, green, again, down_s = [], [], [], []
    try:
        for i in range(args.runs):
            r = up(args.stack, say=quiet, root=root)
            fresh.append(r.seconds)
            green.append(r.network_seconds)
            print(
                f"run {i + 1}: up {r.seconds:.2f} s (network green {r.network_seconds:.2f} s), matrix {'green' if r.matrix_ok else 'NOT GREEN'}, {r.mutating} mutating commands"
            )
            if i + 1 < args.runs:
                t = time.monotonic()
                down(args.stack, say=quiet, root=root)
                down_s.append(time.monotonic() - t)
        for _ in range(args.reapply):
            r = up(args.stack, say=quiet, root=root)
            again.append(r.seconds)
            print(
                f"re-apply: {r.seconds:.2f} s, {r.mutating} mutating commands, matrix {'green' if r.matrix_ok else 'NOT GREEN'}"
            )
    finally:
        t = time.monotonic()
        down(args.stack, say=quiet, root=root)
        down_s.append(time.monotonic() - t)
        remove_dirs(root)
    print(
        f"\nstack {args.stack}: nothing -> green matrix median {statistics.median(green):.2f} s "
        f"(with WordPress installed {statistics.median(fresh):.2f} s; goal 15 s); "
        f"re-apply median {statistics.median(again) if again else float('nan'):.2f} s (goal 3 s); "
        f"down median {statistics.median(down_s):.2f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
