"""The lab signals and trusts only processes it can prove are its own (issue 24, defects 1-3).

Every process these tests signal is one they started: a decoy (`sleep`) stands where the
old code looked (a PID a lock line or a record names), the lock's real holder is a small
Python process of the test; both are killed in finalizers. No lab namespaces are made.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import paas
from lab.down import down
from lab.lab import open_lab, running
from lab.proc import alive
from lab.state import LabBusy, LabState, lab_dir, mark
from lab.status import status

ROOT = Path(__file__).resolve().parents[2]
HOLDER = """
import sys, time
from pathlib import Path
from lab.state import operation
with operation(Path(sys.argv[1]), "lab up"):
    print("held", flush=True)
    time.sleep(120)
"""


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (PID namespaces, other processes' /proc)")


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes this test starts; each is killed at the end, whatever happened."""
    procs: list[subprocess.Popen[str]] = []
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)


def _decoy(started: list[subprocess.Popen[str]], env: dict[str, str] | None = None) -> int:
    p = subprocess.Popen(["sleep", "300"], text=True, env=env)
    started.append(p)
    return p.pid


def _hold(started: list[subprocess.Popen[str]], argv: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    started.append(p)
    assert p.stdout is not None and p.stdout.readline().strip() == "held"
    return p


def test_down_never_signals_the_pid_an_edited_lock_line_names(
    tmp_path: Path, started: list[subprocess.Popen[str]]
) -> None:
    _need_root()
    directory = lab_dir("dev", tmp_path)
    holder = _hold(started, [sys.executable, "-c", HOLDER, str(directory)])
    decoy = _decoy(started)
    (directory / "lock").write_text(f"{decoy} lab up: an edited line\n")
    with pytest.raises(LabBusy) as err:
        down("dev", say=print, root=tmp_path)
    print(err.value)
    assert alive(decoy)  # the old `down` sent it SIGINT
    assert holder.poll() is None
    assert f"pid {holder.pid} " in str(err.value)  # the kernel's holder, not the line's


def test_down_cancels_a_holder_in_another_pid_namespace_and_nothing_else(
    tmp_path: Path, started: list[subprocess.Popen[str]]
) -> None:
    """The holder runs in a PID namespace of its own and writes its PID there, which is (made
    to be) the host PID of the decoy: the old `down` signalled the decoy."""
    _need_root()
    directory = lab_dir("dev", tmp_path)
    decoy = _decoy(started)
    script = (
        f"echo {decoy - 1} > /proc/sys/kernel/ns_last_pid; "
        f"{sys.executable} -c '{HOLDER}' {directory}"
    )
    holder = _hold(started, ["unshare", "--pid", "--fork", "--kill-child", "sh", "-c", script])
    line = (directory / "lock").read_text()
    assert line.startswith(f"{decoy} lab up"), line  # its PID inside its namespace
    assert down("dev", say=print, root=tmp_path) == 0
    holder.wait(timeout=20)
    assert alive(decoy)


def _record(root: Path, pids: dict[str, int]) -> LabState:
    lab = open_lab("dev", root)
    st = lab.state
    st.stack, st.lab_id = "dev", lab.layout.lab_id
    st.record(pids)
    return st


def test_a_reused_recorded_pid_is_neither_signalled_nor_taken_for_the_lab_s(
    tmp_path: Path, started: list[subprocess.Popen[str]]
) -> None:
    _need_root()
    decoy = _decoy(started)  # the host reused the PIDs of the lab's database and node holder
    _record(tmp_path, {"db": decoy, "home/holder": decoy})
    lab = open_lab("dev", tmp_path)
    assert not running(lab.nodes["home"])  # `up` would not start it
    lines: list[str] = []
    assert status("dev", lines.append, tmp_path) == 1
    (row,) = [ln for ln in lines if ln.strip().startswith("db ")]
    assert "NOT RUNNING" in row, row
    paas.Database(lab.stack, lab.layout, lab.state).stop()  # `lab test` stops the database
    assert alive(decoy)


def test_a_recorded_pid_is_the_lab_s_only_with_its_mark_and_start_time(
    tmp_path: Path, started: list[subprocess.Popen[str]]
) -> None:
    from lab.proc import start_time

    _need_root()
    directory = lab_dir("dev", tmp_path)
    ours = _decoy(started, {**os.environ, **mark(directory)})
    st = _record(tmp_path, {"db": ours})
    assert st.live("db") == ours
    data = (directory / "lab.json").read_text()
    again = LabState.load(directory)
    assert again is not None and again.live("db") == ours
    # The same PID with another start time is another process (a reuse).
    (directory / "lab.json").write_text(data.replace(str(start_time(ours)), "1"))
    again = LabState.load(directory)
    assert again is not None and again.live("db") is None
    shutil.rmtree(directory)
