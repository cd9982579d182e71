"""Running shell commands on a node: over SSH (paramiko) or locally (subprocess).

Both transports record every command they ran (stdin as the caller redacted it), so tests can
assert what was sent, and count their connections and channels for the benchmark.

SSH: key authentication only; the host key is pinned (an unknown or changed key is refused,
naming the host and both fingerprints, like paramiko's RejectPolicy); the connection is
retried with backoff until a total deadline (a new VM may still be booting); each command has
a timeout.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import os
import selectors
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import paramiko
from paramiko.ssh_exception import NoValidConnectionsError

from .errors import AuthFailed, HostKeyRefused, HostUnreachable, TransportError
from .spec import SshTarget

# paramiko logs its transport thread's failures (with tracebacks) at ERROR; with no handler
# anywhere Python prints them on stderr (logging's last resort). Each failure reaches the
# caller as an exception here, so they are not printed twice; a program that configures
# logging still receives them.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


@dataclass(frozen=True)
class RunResult:
    rc: int
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False
    aborted: bool = False  # an abort_on text appeared in stdout; the command was cut short


@dataclass(frozen=True)
class RunRecord:
    command: str
    stdin: str  # as redacted by the caller
    rc: int
    seconds: float


class Transport(Protocol):
    host: str
    records: list[RunRecord]
    connects: int

    def run(
        self,
        command: str,
        *,
        stdin: bytes = b"",
        timeout: float,
        redacted_stdin: str = "",
        abort_on: Sequence[str] = (),
    ) -> RunResult:
        """Run `command` through `sh -c`; never raises for a non-zero exit status."""
        ...

    def close(self) -> None: ...


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's `SHA256:...` fingerprint."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def parse_public_key(line: str) -> paramiko.PKey:
    """`ssh-ed25519 AAAA... [comment]` -> key."""
    parts = line.split()
    if len(parts) < 2:
        raise ValueError("a host key is '<type> <base64> [comment]'")
    return paramiko.PKey.from_type_string(parts[0], base64.b64decode(parts[1]))


def load_private_key(text: str) -> paramiko.PKey:
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key(io.StringIO(text))
        except (paramiko.SSHException, ValueError):
            continue
    raise ValueError("unsupported or malformed private key")


class _PinnedKeyPolicy(paramiko.MissingHostKeyPolicy):
    def __init__(self, host: str, pinned: paramiko.PKey) -> None:
        self._host, self._pinned = host, pinned

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        # Reached when the host offers a key of another type than the pinned one.
        raise HostKeyRefused(
            self._host,
            f"{key.get_name()} {fingerprint(key)}",
            f"{self._pinned.get_name()} {fingerprint(self._pinned)}",
        )


@dataclass
class SshTransport:
    """SSH to one node. Connects on first use; `close()` ends the connection."""

    host: str
    host_key: str
    private_key: str
    port: int = 22
    user: str = "root"
    connect_deadline_s: float = 120.0
    attempt_timeout_s: float = 5.0
    # A reachable host that refuses the port, for this long in a row, ends the retries early
    # (SshTarget.refused_deadline_s).
    refused_deadline_s: float = 10.0
    # Opens the TCP connection (host, port, timeout); the lab opens it inside a netns.
    sock_factory: Callable[[str, int, float], socket.socket] | None = None
    records: list[RunRecord] = field(default_factory=list)
    connects: int = 0
    channels: int = 0
    # Connection attempts that failed before one worked (an outage the retries lived through).
    failed_attempts: int = 0
    _client: paramiko.SSHClient | None = field(default=None, repr=False)

    @property
    def _label(self) -> str:
        return self.host if self.port == 22 else f"{self.host}:{self.port}"

    def connect(self) -> paramiko.SSHClient:
        if self._client is not None and (t := self._client.get_transport()) and t.is_active():
            return self._client
        pinned = parse_public_key(self.host_key)
        pkey = load_private_key(self.private_key)
        known = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
        deadline = time.monotonic() + self.connect_deadline_s
        delay, attempts, last = 0.5, 0, "no attempt"
        refused_since: float | None = None
        while True:
            attempts += 1
            client = paramiko.SSHClient()
            client.get_host_keys().add(known, pinned.get_name(), pinned)
            client.set_missing_host_key_policy(_PinnedKeyPolicy(self._label, pinned))
            left = deadline - time.monotonic()
            attempt = max(0.5, min(self.attempt_timeout_s, left))
            try:
                sock = (
                    self.sock_factory(self.host, self.port, attempt) if self.sock_factory else None
                )
                client.connect(
                    self.host,
                    port=self.port,
                    username=self.user,
                    pkey=pkey,
                    timeout=attempt,
                    banner_timeout=attempt,
                    auth_timeout=attempt,
                    sock=sock,
                    allow_agent=False,
                    look_for_keys=False,
                )
                self._client = client
                self.connects += 1
                return client
            except paramiko.BadHostKeyException as e:
                client.close()
                raise HostKeyRefused(
                    self._label,
                    f"{e.key.get_name()} {fingerprint(e.key)}",
                    f"{e.expected_key.get_name()} {fingerprint(e.expected_key)}",
                ) from None
            except HostKeyRefused:
                client.close()
                raise
            except paramiko.AuthenticationException:
                client.close()
                raise AuthFailed(
                    self._label, f"SSH key authentication as {self.user} was refused"
                ) from None
            except (OSError, paramiko.SSHException, EOFError) as e:
                client.close()
                self.failed_attempts += 1
                last = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
                if not _refused(e):
                    refused_since = None
                else:
                    refused_since = refused_since or time.monotonic()
                    if time.monotonic() - refused_since >= self.refused_deadline_s:
                        raise HostUnreachable(
                            self._label,
                            f"connection refused: nothing listens on port {self.port} "
                            f"(refused for {self.refused_deadline_s:.0f} s, {attempts} attempts)",
                        ) from None
            left = deadline - time.monotonic()
            if left <= 0:
                raise HostUnreachable(
                    self._label,
                    f"no SSH connection after {attempts} attempts in "
                    f"{self.connect_deadline_s:.0f} s (last error: {last})",
                )
            time.sleep(min(delay, left))
            delay = min(delay * 2, 5.0)

    def run(
        self,
        command: str,
        *,
        stdin: bytes = b"",
        timeout: float,
        redacted_stdin: str = "",
        abort_on: Sequence[str] = (),
    ) -> RunResult:
        client = self.connect()
        transport = client.get_transport()
        assert transport is not None
        start = time.monotonic()
        try:
            chan = transport.open_session(timeout=timeout)
        except (paramiko.SSHException, OSError, EOFError) as e:
            self.close()  # the next run reconnects (with the same deadline and retries)
            raise TransportError(self._label, f"the SSH connection was lost: {e}") from None
        self.channels += 1
        try:
            chan.exec_command(command)
            if stdin:
                chan.sendall(stdin)
            chan.shutdown_write()
            out, err = bytearray(), bytearray()
            timed_out = aborted = False
            deadline = start + timeout
            while True:
                got = False
                while chan.recv_ready():
                    out += chan.recv(65536)
                    got = True
                while chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                    got = True
                if abort_on and any(a.encode() in out for a in abort_on):
                    aborted = True
                    break
                if (
                    chan.exit_status_ready()
                    and not chan.recv_ready()
                    and not chan.recv_stderr_ready()
                ):
                    break
                if time.monotonic() > deadline:
                    timed_out = True
                    break
                if not got:
                    time.sleep(0.01)
            rc = chan.recv_exit_status() if not (timed_out or aborted) else -1
        finally:
            chan.close()
        return _finished(
            self.records, command, redacted_stdin, rc, out, err, start, timed_out, aborted
        )

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


@dataclass
class LocalTransport:
    """Run commands on this machine, optionally through a prefix (e.g. `nsenter ...`)."""

    host: str = "localhost"
    prefix: tuple[str, ...] = ()
    records: list[RunRecord] = field(default_factory=list)
    connects: int = 0
    channels: int = 0

    def run(
        self,
        command: str,
        *,
        stdin: bytes = b"",
        timeout: float,
        redacted_stdin: str = "",
        abort_on: Sequence[str] = (),
    ) -> RunResult:
        start = time.monotonic()
        self.channels += 1
        proc = subprocess.Popen(
            [*self.prefix, "sh", "-c", command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # so a timeout kills the whole group we started
        )
        assert proc.stdin and proc.stdout and proc.stderr
        try:
            proc.stdin.write(stdin)
            proc.stdin.close()
        except BrokenPipeError:
            pass
        out, err = bytearray(), bytearray()
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ, out)
        sel.register(proc.stderr, selectors.EVENT_READ, err)
        timed_out = aborted = False
        deadline = start + timeout
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            for key, _ in sel.select(timeout=min(left, 0.5)):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                else:
                    key.data.extend(chunk)
            if abort_on and any(a.encode() in out for a in abort_on):
                aborted = True
                break
        sel.close()
        if timed_out or aborted:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
            rc = -1
        else:
            rc = proc.wait(timeout=5)
        proc.stdout.close()
        proc.stderr.close()
        return _finished(
            self.records, command, redacted_stdin, rc, out, err, start, timed_out, aborted
        )

    def close(self) -> None:
        pass


def _refused(e: BaseException) -> bool:
    """The host answered and refused the TCP connection (paramiko wraps it per address)."""
    if isinstance(e, NoValidConnectionsError):
        return bool(e.errors) and all(
            isinstance(x, ConnectionRefusedError) for x in e.errors.values()
        )
    return isinstance(e, ConnectionRefusedError)


def _finished(
    records: list[RunRecord],
    command: str,
    redacted_stdin: str,
    rc: int,
    out: bytes | bytearray,
    err: bytes | bytearray,
    start: float,
    timed_out: bool,
    aborted: bool,
) -> RunResult:
    """Record a finished command and return its result."""
    seconds = time.monotonic() - start
    records.append(RunRecord(command, redacted_stdin, rc, seconds))
    return RunResult(
        rc, out.decode(errors="replace"), err.decode(errors="replace"), seconds, timed_out, aborted
    )


def ssh_transport(
    target: SshTarget,
    sock_factory: Callable[[str, int, float], socket.socket] | None = None,
    *,
    attempt_timeout_s: float = SshTransport.attempt_timeout_s,
) -> SshTransport:
    """The one way to an SshTransport: for a spec'd target (`sock_factory`, e.g. the lab's
    socket inside a netns, and `attempt_timeout_s`: see SshTransport)."""
    return SshTransport(
        host=target.host,
        port=target.port,
        user=target.user,
        host_key=target.host_key,
        private_key=target.private_key.get_secret_value(),
        connect_deadline_s=target.connect_deadline_s,
        refused_deadline_s=min(target.refused_deadline_s, target.connect_deadline_s),
        attempt_timeout_s=attempt_timeout_s,
        sock_factory=sock_factory,
    )
