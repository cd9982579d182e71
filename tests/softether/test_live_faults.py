"""Faults a real user causes, on real nodes (issue 15): no secret outlives a vpncmd run cut
mid-script (defect 1); node shells never read the operator's dotfiles (defect 9).

Every namespace is created by the module's Testbed and deleted by its finalizer.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from lab.node import Node, Testbed
from lab.proc import comm, pids_in
from softether import vpncmd as v
from softether.errors import TransportError
from softether.session import Session

from .helpers import reference_specs

pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parents[2]


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _files_holding(secrets: list[bytes], under: Path, since: float) -> list[str]:
    """Files under `under` changed since `since` whose content holds one of `secrets`."""
    found = []
    for dirpath, _, files in os.walk(under):
        for name in files:
            path = Path(dirpath) / name
            with contextlib.suppress(OSError):
                st = path.lstat()
                if st.st_mtime < since or not path.is_file() or st.st_size > 1 << 20:
                    continue
                data = path.read_bytes()
                if any(s in data for s in secrets):
                    found.append(str(path))
    return found


def _cut_when_vpncmd_runs(node: Node, killed: list[str], within_s: float = 30.0) -> None:
    """As soon as vpncmd runs in `node`: SIGKILL every ancestor of it up to sshd's listener
    (the remote shell and the SSH session: a dropped connection plus a killed shell)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        for pid in pids_in(node.netns):
            if comm(pid) != "vpncmd":
                continue
            up = _ppid(_ppid(pid))  # vpncmd <- timeout <- the shell
            while up > 1 and up not in (node.pids["sshd"], node.pids["holder"]):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(up, signal.SIGKILL)
                    killed.append(f"{up} {comm(up) or '?'}")
                up = _ppid(up)
            return
        time.sleep(0.01)


@pytest.fixture(scope="module")
def node(testbed: Testbed) -> Node:
    return testbed.add("home", "server", "198.51.100.1/24")


def test_live_vpncmd_cut_mid_script_leaves_no_secret_on_disk(testbed: Testbed, node: Node) -> None:
    spec = reference_specs(node.host, prefix=f"cut-{testbed.run}-pw").server
    hub_secret = f"cut-{testbed.run}-hubpw"
    # A script that runs for a while and carries a secret of its own, besides the admin
    # password vpncmd reads from its stdin file.
    cmds = [
        v.Command(
            "HubCreate", (f"cut{testbed.run}", v.SecretArg(SecretStr(hub_secret), "/PASSWORD"))
        ),
        *[v.Command("HubList") for _ in range(400)],
    ]
    since = time.time() - 1
    killed: list[str] = []
    cutter = threading.Thread(target=_cut_when_vpncmd_runs, args=(node, killed), daemon=True)
    cutter.start()
    s = Session(testbed.transport(node), spec)
    try:
        with contextlib.suppress(TransportError):
            s.runner.run_script(cmds, timeout=20)
    finally:
        s.transport.close()
    cutter.join(35)
    print(f"killed mid-script: {killed}")
    assert killed, "vpncmd never ran: nothing was cut"
    # The orphaned vpncmd ends by itself (SIGPIPE or its hard timeout): bounded wait.
    deadline = time.monotonic() + 30
    while any(comm(p) in ("vpncmd", "timeout") for p in pids_in(node.netns)):
        assert time.monotonic() < deadline, "vpncmd outlived its hard timeout"
        time.sleep(0.2)
    secrets = [spec.admin_password.get_secret_value().encode(), hub_secret.encode()]
    left = [
        f for d in ("/tmp", "/var/tmp", "/dev/shm") for f in _files_holding(secrets, Path(d), since)
    ]
    assert left == []


HERMETIC = """
import sys
from pathlib import Path
from lab.node import Testbed

with Testbed(Path(sys.argv[1])) as bed:
    node = bed.add("home", "server", "198.51.100.1/24")
    t = bed.transport(node)
    res = t.run("echo ran-the-command", timeout=20)
    t.close()
    print(res.stdout.strip())
"""


def test_live_node_shell_reads_none_of_the_operators_dotfiles(tmp_path: Path) -> None:
    """root's ~/.bashrc (bash reads it for commands run by sshd) gets a marker line, in a
    private mount namespace of this test only: a node's SSH command must not run it."""
    if not Path("/root/.bashrc").is_file():
        pytest.skip("no /root/.bashrc to shadow")
    marker = tmp_path / "marker"
    bashrc = tmp_path / "bashrc"
    bashrc.write_text(f"echo dotfile-ran >> {marker}\n")
    inner = f'mount --bind {bashrc} /root/.bashrc && exec "$0" -c "$1" {tmp_path / "bed"}'
    run = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", inner, sys.executable, HERMETIC],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert "ran-the-command" in run.stdout
    assert not marker.exists(), "the node's shell ran the operator's ~/.bashrc"
