"""Benchmark: a fresh `make lab`, part by part, then a second `make lab` on the built cache.

A clone of this checkout's HEAD in a scratch directory, a SoftEther cache and an image cache
of its own (empty: the build and the lab's Debian 12 image are made) and a lab directory of
its own; the parts of `make lab` run one by one and are timed: packages (`make apt`: nothing
to do where packages.apt is installed), venv (`make venv`, from PyPI), build and image (`make
softether`: both at once), up (the bridges boot), test. Then `make lab` again: the
build is cached, so it is `lab up` on a running lab plus the checks. Finally `lab down`, a
cold `lab up` with the cached build (seconds to a green matrix), `lab down`, and the scratch
directories are removed. Set HYBRID_SOFTETHER_MIRROR where there is no internet. Needs root.
Not a test.

    python bench/make_lab.py
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    scratch = Path(tempfile.mkdtemp(prefix="hc-make-lab-", dir="/var/tmp"))
    clone = scratch / "hybrid-cloud"
    env = {
        **os.environ,
        "HYBRID_SOFTETHER_CACHE": str(scratch / "softether-cache"),
        "HYBRID_IMAGE_CACHE": str(scratch / "image-cache"),
        "HYBRID_LAB_DIR": os.environ.get("HYBRID_LAB_DIR", "/run/hybrid-lab-build"),
    }
    env.pop("PYTHONPATH", None)
    rows: list[tuple[str, str]] = []

    def run(name: str, argv: list[str], timeout: float = 3600) -> str:
        t0 = time.monotonic()
        res = subprocess.run(
            argv, cwd=clone, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        took = time.monotonic() - t0
        rows.append((name, f"{took:.1f} s" + ("" if res.returncode == 0 else f" (exit {res.returncode})")))
        if res.returncode != 0:
            print((res.stdout + res.stderr)[-2000:], file=sys.stderr)
        return res.stdout

    hybrid = str(clone / ".venv/bin/hybrid")
    try:
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=120)
        run("packages (make apt)", ["make", "apt"])
        run("venv (make venv)", ["make", "venv"])
        run("SoftEther build and the lab's image, clean caches (make softether)", ["make", "softether"])
        out = run("lab up (fresh)", [hybrid, "lab", "up", "--stack", "dev"], 600)
        m = re.search(r"network green after ([\d.]+) s", out)
        rows.append(("  of which: to a green matrix", f"{m.group(1)} s" if m else "not green"))
        out = run("lab test", [hybrid, "lab", "test", "--stack", "dev"], 600)
        rows.append(("  checks", (out.strip().splitlines() or ["?"])[-1]))
        run("second make lab (build cached, lab running)", ["make", "lab"], 600)
        run("lab down", [hybrid, "lab", "down", "--stack", "dev"], 300)
        out = run("lab up, cached build, nothing running", [hybrid, "lab", "up", "--stack", "dev"], 600)
        m = re.search(r"network green after ([\d.]+) s", out)
        rows.append(("  of which: to a green matrix", f"{m.group(1)} s" if m else "not green"))
    finally:
        if (clone / ".venv/bin/hybrid").exists():
            subprocess.run([hybrid, "lab", "down", "--stack", "dev"], cwd=clone, env=env, capture_output=True, timeout=300, check=False)  # fmt: skip
        shutil.rmtree(scratch, ignore_errors=True)
    w = max(len(a) for a, _ in rows)
    print(f"{os.cpu_count()} cores (shared machine), load {os.getloadavg()[0]:.1f}")
    for a, b in rows:
        print(f"{a:<{w}}  {b}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
