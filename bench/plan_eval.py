"""Benchmark: `hybrid plan` against the floor of importing the SDK modules the program uses.

Both in fresh interpreters, in alternation, medians of N runs:
  plan   `hybrid plan --stack NAME --quiet` (the whole program under Pulumi's mocks, policies);
  floor  importing exactly the Pulumi SDK modules (pulumi, pulumi_aws, pulumi_azure_native,
         pulumi_random, pulumi_tls, pulumi_policy and their submodules) that a plan run ends up
         with — found by running the plan once and listing `sys.modules`.
  floor-nogc  the same imports with the cyclic collector off: `hybrid plan` pauses the collector
         while the program runs (components/offline.py), which also spares the SDK modules the
         run imports lazily their collections, so this is the floor's bound for that saving.
The ratio plan/floor is the cost of the project's own code on top of what any program using
these SDK modules pays. Goal: <= 1.25x. Not a test.

    python bench/plan_eval.py [--stack dev] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SDKS = ("pulumi", "pulumi_aws", "pulumi_azure_native", "pulumi_random", "pulumi_tls", "pulumi_policy")

LIST_MODULES = """
import json, sys
from cli.main import main
try:
    main(["plan", "--stack", sys.argv[1], "--quiet"])
except SystemExit:
    pass
sdk = sorted(m for m in sys.modules if m.split(".")[0] in json.loads(sys.argv[2]))
print(json.dumps(sdk))
"""

IMPORT_ALL = """
import gc, importlib, json, sys, warnings
if sys.argv[2:] == ["nogc"]:
    gc.disable()
warnings.simplefilter("ignore", DeprecationWarning)
for m in json.loads(sys.argv[1]):
    importlib.import_module(m)
"""


def timed(argv: list[str]) -> float:
    t = time.monotonic()
    subprocess.run(argv, cwd=REPO, check=True, stdout=subprocess.DEVNULL, timeout=300)
    return time.monotonic() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--stack", default="dev")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    listing = subprocess.run(
        [sys.executable, "-c", LIST_MODULES, args.stack, json.dumps(SDKS)],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    modules = json.loads(listing.stdout.strip().splitlines()[-1])
    plan_argv = [sys.executable, "-m", "cli", "plan", "--stack", args.stack, "--quiet"]
    floor_argv = [sys.executable, "-c", IMPORT_ALL, json.dumps(modules)]
    plan, floor, nogc = [], [], []
    for _ in range(args.runs):
        plan.append(timed(plan_argv))
        floor.append(timed(floor_argv))
        nogc.append(timed([*floor_argv, "nogc"]))
    p, f, n = statistics.median(plan), statistics.median(floor), statistics.median(nogc)
    print(f"SDK modules a plan run imports: {len(modules)}")
    for name, xs, m in (("plan", plan, p), ("floor", floor, f), ("floor-nogc", nogc, n)):
        print(f"{name:<10} {' '.join(f'{x:.2f}' for x in xs)} s (median {m:.2f})")
    print(f"plan/floor {p / f:.2f}x (goal <= 1.25x); the project's own share {p - f:.2f} s")
    print(f"plan/floor-nogc {p / n:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
