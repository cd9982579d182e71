"""`python -m softether` and the SSH transport on bad input (issue 15, defect 8): one line
each, no traceback, bounded in time (a refused port does not wait out the 120 s deadline)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from softether.errors import HostUnreachable
from softether.spec import SshTarget
from softether.transport import SshTransport, ssh_transport

from .helpers import reference_specs


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "softether", *args], capture_output=True, text=True, timeout=60
    )


def _one_line_error(run: subprocess.CompletedProcess[str], message: str) -> None:
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], run.stderr


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "spec.json"
    path.write_text(reference_specs().server.to_json(reveal=True))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "No such file or directory"),
        (b"{not json", "--spec"),
        (b'{"kind": "server"}', "--spec"),
        (b"\xff\xfe", "not UTF-8 text"),
    ],
    ids=["missing", "not-json", "invalid", "binary"],
)
def test_cli_bad_spec_is_one_line(content: bytes | None, message: str, tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    if content is not None:
        path.write_bytes(content)
    _one_line_error(_cli("plan", "--spec", str(path), "--local"), message)


def test_cli_spec_that_is_a_device_is_one_line() -> None:
    _one_line_error(_cli("plan", "--spec", "/dev/zero", "--local"), "not a regular file")


@pytest.mark.parametrize("key", ["ssh-ed25519 !!!not-base64", "ssh-ed25519 AAAA", "nonsense"])
def test_cli_malformed_host_key_is_one_line(key: str, spec_file: Path, tmp_path: Path) -> None:
    ident = tmp_path / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ident)], check=True)
    run = _cli(
        "plan", "--spec", str(spec_file), "--host", "127.0.0.1", "--port", str(_free_port()),
        "--host-key", key, "--identity", str(ident),
    )  # fmt: skip
    _one_line_error(run, "--host-key")


@pytest.mark.parametrize(
    "option, value", [("--port", "70000"), ("--port", "0"), ("--connect-deadline", "0")]
)
def test_cli_bad_ssh_target_is_one_line(
    option: str, value: str, spec_file: Path, tmp_path: Path
) -> None:
    ident = tmp_path / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ident)], check=True)
    run = _cli(
        "plan", "--spec", str(spec_file), "--host", "127.0.0.1",
        "--host-key-file", str(ident.with_suffix(".pub")), "--identity", str(ident), option, value,
    )  # fmt: skip
    _one_line_error(run, option)


def test_cli_missing_identity_is_one_line(spec_file: Path, tmp_path: Path) -> None:
    run = _cli(
        "plan", "--spec", str(spec_file), "--host", "127.0.0.1",
        "--host-key-file", str(tmp_path / "nokey"), "--identity", str(tmp_path / "noid"),
    )  # fmt: skip
    _one_line_error(run, "--host-key-file")


def test_transport_refused_port_fails_long_before_the_deadline(tmp_path: Path) -> None:
    ident = tmp_path / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ident)], check=True)
    t = SshTransport(
        host="127.0.0.1",
        port=_free_port(),
        host_key=ident.with_suffix(".pub").read_text(),
        private_key=ident.read_text(),
    )
    assert t.connect_deadline_s == 120.0  # the default a user gets
    start = time.monotonic()
    with pytest.raises(HostUnreachable, match="refused"):
        t.connect()
    took = time.monotonic() - start
    print(f"refused port: failed after {took:.1f} s")
    assert took < 60  # generous: the point is not waiting out the 120 s deadline


def test_transport_waits_out_refusals_as_long_as_its_target_says(tmp_path: Path) -> None:
    """A bridge's target: a refused port is retried for `refused_deadline_s`, not 10 s."""
    ident = tmp_path / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ident)], check=True)
    target = SshTarget(
        host="127.0.0.1",
        port=_free_port(),
        host_key=ident.with_suffix(".pub").read_text(),
        private_key=SecretStr(ident.read_text()),
        connect_deadline_s=14.0,
        refused_deadline_s=14.0,
    )
    start = time.monotonic()
    with pytest.raises(HostUnreachable, match="refused for 14 s"):
        ssh_transport(target).connect()
    assert 13.0 <= time.monotonic() - start < 40
