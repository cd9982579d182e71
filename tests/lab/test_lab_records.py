"""The lab's commands on a record they cannot use or a disk they cannot write (issue 24,
defects 6 and 9): one line on stderr, never a traceback, and `down` always works.

No lab runs: each test writes a record of a lab with no namespace and no process. The full
disk is a small tmpfs mounted in a private mount namespace of the command (`unshare -m`),
so the machine's mounts never change.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from lab.layout import lab_id
from lab.state import lab_dir

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")


def _record(directory: Path, extra: object, where: Path | None = None) -> None:
    """A record of lab `directory` (with no namespace or process), written to `where`."""
    (where or directory).mkdir(parents=True)
    body = {"stack": "dev", "lab_id": lab_id(str(directory)), "namespaces": [], "pids": {}, "extra": extra}
    ((where or directory) / "lab.json").write_text(json.dumps(body))


def _lab(root: Path, action: str, prepare: str = "", after: str = "") -> subprocess.CompletedProcess[str]:
    """`hybrid lab ACTION` as a user runs it; `prepare` runs first and `after` next, in the
    same mount namespace (the exit status is the command's)."""
    cli = shlex.join([sys.executable, "-m", "cli", "lab", action, "--stack", "dev"])
    env = {**os.environ, "HYBRID_LAB_DIR": str(root), "PYTHONPATH": str(ROOT)}
    script = f"{prepare}{cli}; rc=$?; {after or 'true'}; exit $rc"
    return subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        capture_output=True, text=True, timeout=180, cwd=ROOT, env=env, check=False,
    )  # fmt: skip


def _one_line(run: subprocess.CompletedProcess[str], *words: str) -> None:
    print(run.stdout[-2000:], run.stderr)
    assert run.returncode != 0
    assert "Traceback" not in run.stderr
    (line,) = run.stderr.strip().splitlines()
    assert all(w in line for w in words), line


@pytest.mark.parametrize(
    "extra",
    [{"softether": {"vpn0": "upstream"}}, {"softether": {"vpn0": {"source": "upstream"}}}, {"softether": []}],
    ids=["not-an-object", "missing-fields", "not-a-mapping"],
)
def test_lab_malformed_softether_record_is_one_line(extra: object, tmp_path: Path) -> None:
    """Defect 9: each was a traceback in status, test, up and outputs."""
    _need_root()
    _record(lab_dir("dev", tmp_path), extra)
    for action in ("status", "test", "up", "outputs"):
        _one_line(_lab(tmp_path, action), "lab.json", "extra.softether")
    assert _lab(tmp_path, "down").returncode == 0
    assert not lab_dir("dev", tmp_path).exists()


def _full(mount: Path, template: Path | None = None) -> str:
    """Shell: a 256 KiB tmpfs over `mount` with `template`'s files, then filled up."""
    m = shlex.quote(str(mount))
    copy = f"cp -a {shlex.quote(str(template))}/. {m}/ && " if template else ""
    return (
        f"mount -t tmpfs -o size=256k tmpfs {m} && {copy}"
        f"(dd if=/dev/zero of={m}/fill bs=4096; dd if=/dev/zero of={m}/fill2 bs=1; true) 2>/dev/null && "
    )


def test_lab_full_disk_is_one_line_and_down_still_works(tmp_path: Path) -> None:
    """Defect 6: up, status and test ended in an out-of-space traceback, and so did down."""
    _need_root()
    root, template = tmp_path / "labs", tmp_path / "template"
    root.mkdir()
    _record(lab_dir("dev", root), {}, template / "dev")
    _one_line(_lab(root, "up", _full(root, template)), "No space left on device")
    for action in ("status", "test"):
        run = _lab(root, action, _full(root, template))
        print(run.stdout[-1500:], run.stderr)
        assert run.returncode != 0 and "Traceback" not in run.stderr
    down = _lab(root, "down", _full(root, template), f"echo left: $(ls {shlex.quote(str(root))})")
    print(down.stdout, down.stderr)
    assert down.returncode == 0, down.stderr
    (left,) = [ln for ln in down.stdout.splitlines() if ln.startswith("left:")]
    assert "dev" not in left.split(), left  # the lab's directory is gone (in the tmpfs)


def test_lab_down_on_a_full_disk_without_a_lab_creates_nothing(tmp_path: Path) -> None:
    """Defect 6: `down` made the lab's directory and its lock file there, then failed."""
    _need_root()
    root = tmp_path / "labs"
    root.mkdir()
    run = _lab(root / "nested", "down", _full(root))
    print(run.stdout, run.stderr)
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    assert "nothing to do" in run.stdout
