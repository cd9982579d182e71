"""`lab down` after `lab up` died half-way leaves nothing: no namespace, process or file."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.down import down
from lab.proc import exists
from lab.state import LabState, lab_dir

from .conftest import TEST_ROOT

pytestmark = pytest.mark.lab

UP = (
    "import sys; from pathlib import Path; from lab.up import up; up('dev', root=Path(sys.argv[1]))"
)


def _lab_processes(root: Path) -> list[int]:
    """Processes whose command line names the lab's directory (datadirs, configs, keys)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(root) in cmd and int(d.name) != os.getpid():
                out.append(int(d.name))
    return out


def test_lab_down_after_up_was_killed_leaves_nothing() -> None:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (network namespaces)")
    root = TEST_ROOT / secrets.token_hex(3)
    directory = lab_dir("dev", root)
    proc = subprocess.Popen([sys.executable, "-c", UP, str(root)], start_new_session=True)
    try:
        # Kill it once its nodes are starting: namespaces exist, processes run.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            st = LabState.load(directory)
            if st is not None and any(k.endswith("/holder") for k in st.pids):
                break
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        st = LabState.load(directory)
        assert st is not None and st.namespaces
        assert any(exists(n) for n in st.namespaces)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        assert down("dev", say=print, root=root) == 0
    assert [n for n in st.namespaces if exists(n)] == []
    time.sleep(0.5)  # processes killed by `down` are reaped by init
    assert _lab_processes(root) == []
    assert not directory.exists()
    assert down("dev", say=print, root=root) == 0
