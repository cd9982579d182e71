"""Benchmark: `hybrid status` on the reference lab (goal 3 s): every node at once, one SSH
connection each.

Brings up a lab in a directory of its own (never touches a lab you run), times the report
in-process and as the command an operator types (`hybrid status --outputs FILE`, Python's
start included), tears the lab down at the end. Needs root. Not a test.

    python bench/status.py [--stack dev] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lab.down import down
from lab.lab import open_lab
from lab.outputs import lab_outputs, lab_report
from lab.state import remove_dirs
from lab.up import up

ROOT = Path("/run/hybrid-lab-bench")
ROOT_DIR = Path(__file__).resolve().parents[1]


def quiet(_: str) -> None:
    pass


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--stack", default="dev")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    root = ROOT / secrets.token_hex(3)
    inproc: list[float] = []
    command: list[float] = []
    try:
        r = up(args.stack, say=quiet, root=root)
        print(f"lab up {r.seconds:.2f} s, matrix {'green' if r.matrix_ok else 'NOT GREEN'}")
        lab = open_lab(args.stack, root)
        for i in range(args.runs):
            report = lab_report(lab)
            inproc.append(report.seconds)
            per_node = ", ".join(
                f"{n.site} {n.seconds:.2f} s/{n.ssh_connections} conn" for n in report.nodes
            )
            print(f"run {i + 1}: {report.verdict} in {report.seconds:.2f} s ({per_node})")
        with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
            json.dump(lab_outputs(lab), f)
            f.flush()
            env = {**os.environ, "PYTHONPATH": str(ROOT_DIR)}
            for _ in range(args.runs):
                t = time.monotonic()
                p = subprocess.run(
                    [sys.executable, "-m", "cli.main", "status", "--stack", args.stack,
                     "--outputs", f.name],
                    capture_output=True, text=True, env=env, cwd=ROOT_DIR, timeout=60, check=False,
                )
                command.append(time.monotonic() - t)
                print(f"hybrid status: exit {p.returncode} in {command[-1]:.2f} s")
    finally:
        down(args.stack, say=quiet, root=root)
        remove_dirs(root)
    print(
        f"\nstack {args.stack}: report median {statistics.median(inproc):.2f} s "
        f"(min {min(inproc):.2f}, max {max(inproc):.2f}); the command median "
        f"{statistics.median(command):.2f} s (min {min(command):.2f}, max {max(command):.2f}); "
        "goal 3 s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
