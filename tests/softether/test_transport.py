from __future__ import annotations

import subprocess
import time
from pathlib import Path

from softether.transport import LocalTransport, fingerprint, parse_public_key


def test_transport_local_runs_with_stdin_and_records() -> None:
    t = LocalTransport()
    res = t.run("cat; echo err >&2; exit 3", stdin=b"hello\n", timeout=5, redacted_stdin="(hi)")
    assert (res.rc, res.stdout, res.stderr) == (3, "hello\n", "err\n")
    assert [(r.command, r.stdin, r.rc) for r in t.records] == [
        ("cat; echo err >&2; exit 3", "(hi)", 3)
    ]


def test_transport_local_timeout_kills_the_whole_group() -> None:
    t = LocalTransport()
    start = time.monotonic()
    res = t.run("sleep 30 & sleep 30; echo never", timeout=0.5)
    assert res.timed_out and res.rc == -1 and "never" not in res.stdout
    assert time.monotonic() - start < 5
    # Neither sleep survives (both were in the group the transport started).
    out = subprocess.run(["pgrep", "-f", "^sleep 30$"], capture_output=True, text=True)
    assert out.stdout.strip() == ""


def test_transport_local_abort_on_text_returns_at_once() -> None:
    t = LocalTransport()
    start = time.monotonic()
    res = t.run("echo 'Access has been denied.'; sleep 30", timeout=20, abort_on=("denied",))
    assert res.aborted and time.monotonic() - start < 5


def test_transport_fingerprint_matches_ssh_keygen(tmp_path: Path) -> None:
    key = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    line = key.with_suffix(".pub").read_text()
    expected = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(key.with_suffix(".pub"))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[1]
    assert fingerprint(parse_public_key(line)) == expected
