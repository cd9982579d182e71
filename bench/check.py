"""Benchmark: `hybrid check --stack NAME`, the whole command in a fresh interpreter (every rule
of docs/rules.md, the SDK catalogs read from pulumi-aws's sources, the budget estimate).

Prints each run's wall time, the median and the slowest. Goal: under 1 s on the dev stack.
Not a test.

    python bench/check.py [--stack dev] [--runs 10]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

HYBRID = Path(sys.executable).with_name("hybrid")
GOAL_S = 1.0


def main() -> int:
    parser = argparse.ArgumentParser(description="hybrid check, timed in fresh interpreters")
    parser.add_argument("--stack", default="dev")
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    times = []
    for _ in range(max(1, min(args.runs, 100))):
        start = time.perf_counter()
        done = subprocess.run([str(HYBRID), "check", "--stack", args.stack], capture_output=True, text=True, timeout=60)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return 1
    print(f"hybrid check --stack {args.stack}: {len(times)} runs, " + " ".join(f"{t:.3f}" for t in times))
    median, worst = statistics.median(times), max(times)
    print(f"median {median:.3f} s, slowest {worst:.3f} s (goal {GOAL_S:.1f} s): {'ok' if worst < GOAL_S else 'over'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
