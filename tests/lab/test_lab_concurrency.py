"""One lab operation at a time; interrupting `lab up` (issue 15, defects 2 and 10).

`hybrid lab up` runs as the user runs it (a subprocess of its own); each test uses a lab
directory of its own and tears it down in a finalizer, also on failure.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.down import down, marked
from lab.proc import NETNS_DIR
from lab.state import LabState, RecordError, lab_dir, remove_dirs

from .conftest import TEST_ROOT

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def root() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (network namespaces)")
    r = TEST_ROOT / secrets.token_hex(3)
    try:
        yield r
    finally:
        down("dev", say=print, root=r)
        remove_dirs(r)


def _env(root: Path) -> dict[str, str]:
    return {**os.environ, "HYBRID_LAB_DIR": str(root), "PYTHONPATH": str(ROOT)}


def _lab(root: Path, action: str) -> list[str]:
    return [sys.executable, "-m", "cli", "lab", action, "--stack", "dev"]


def _start_up(root: Path) -> subprocess.Popen[str]:
    """`hybrid lab up` in the background (output in files: it never blocks on a pipe),
    returned once its nodes are starting."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / "up.out").open("w") as out, (root / "up.err").open("w") as err:
        proc = subprocess.Popen(
            _lab(root, "up"), cwd=ROOT, env=_env(root), text=True,
            stdout=out, stderr=err, start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + 90
    while True:
        assert proc.poll() is None, (root / "up.err").read_text()
        assert time.monotonic() < deadline, "lab up never started a node"
        try:
            st = LabState.load(lab_dir("dev", root))
        except RecordError:
            st = None
        if st is not None and any(k.endswith("/holder") for k in st.pids):
            return proc
        time.sleep(0.05)


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _nothing_left(root: Path, lab_id: str) -> None:
    assert list(NETNS_DIR.glob(f"hc-{lab_id}-*")) == []
    assert marked(lab_dir("dev", root)) == set()
    assert not lab_dir("dev", root).exists()


def test_lab_second_up_is_refused_and_ctrl_c_stops_the_first(root: Path) -> None:
    first = _start_up(root)
    try:
        second = subprocess.run(
            _lab(root, "up"), cwd=ROOT, env=_env(root), capture_output=True, text=True, timeout=60
        )
        print(second.stderr.strip())
        assert second.returncode == 1
        assert "Traceback" not in second.stderr
        (line,) = second.stderr.strip().splitlines()
        assert f"pid {first.pid}" in line and "lab up" in line
        t0 = time.monotonic()
        first.send_signal(signal.SIGINT)  # Ctrl-C
        first.wait(timeout=30)
        took = time.monotonic() - t0
        last = (root / "up.err").read_text().strip().splitlines()[-1]
        print(f"Ctrl-C -> exit in {took:.2f} s: {last}")
        assert first.returncode == 130
        assert "interrupted" in last and "namespaces" in last and "hybrid lab down" in last
        assert took < 10  # generous; the goal is 2 s
    finally:
        _stop(first)


def test_lab_down_during_up_cancels_it_and_leaves_nothing(root: Path) -> None:
    up = _start_up(root)
    try:
        st = LabState.load(lab_dir("dev", root))
        assert st is not None
        down_run = subprocess.run(
            _lab(root, "down"), cwd=ROOT, env=_env(root), capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        print(down_run.stdout.strip())
        assert down_run.returncode == 0, down_run.stderr
        up.wait(timeout=30)
        print((root / "up.err").read_text().strip())
        assert up.returncode == 130  # it was interrupted, not killed
        time.sleep(0.5)  # killed processes are reaped by init
        _nothing_left(root, st.lab_id)
    finally:
        _stop(up)
