"""The one vpncmd runner: a list of `vpncmd.Command`s as one admin session over a transport.

vpncmd never prompts: the admin password goes to its stdin from a 0600 file, the script is
another 0600 file, both on a private tmpfs of the command's own mount namespace (never on
disk, gone with the command on every path), every command carries all its switches, and a
hard timeout kills it (and the remote vpncmd, by the pid it reported). A wrong password is
recognised from vpncmd's "Access has been denied" and fails at once; a SoftEther that does not
listen yet (a node that just booted) is retried, bounded. Everything printed is masked with
the spec's secrets.

The runner counts what it sent: admin sessions, script lines, and mutating commands (from
`Command.mutating`), so no caller re-parses the scripts a transport recorded.
"""

from __future__ import annotations

import logging
import re
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from pydantic import SecretStr

from . import vpncmd as v
from .errors import (
    AccessDenied,
    AccessDeniedError,
    ConnectFailed,
    OutputError,
    SoftEtherError,
    VpncmdTimeoutError,
)
from .spec import BridgeSpec, ServerSpec
from .transport import RunResult, Transport

log = logging.getLogger("softether")
T = TypeVar("T")

LAST_LINES = 6
TMPFS_SIZE = "64m"  # the private tmpfs of one vpncmd run: script, password, files in and out
DOS_QUIET_S = 1.5  # > DOS_TABLE_EXPIRES_MAX (1 s) of SoftEther's listener: see `Runner._retrying`


@dataclass
class Runner:
    """vpncmd admin sessions on one node, as `spec` says (vpncmd path, admin port, password)."""

    transport: Transport
    spec: ServerSpec | BridgeSpec
    service_wait_s: float = 30.0  # how long SoftEther may take to listen after boot
    sessions: int = 0  # vpncmd admin sessions started
    commands: int = 0  # script lines sent, including reads and hub selections
    mutating: int = 0  # mutating commands sent (`Command.mutating`)
    prompted: bool = False  # the last session's vpncmd asked for the admin password
    # The admin password it logs in with: the spec's, or the previous one while a rotation
    # has not set the spec's yet (`Session.read`).
    password: SecretStr = field(default=SecretStr(""), init=False)
    # The output files (`vpncmd.FileOut`) of the last session `run` ran, by name.
    last_files: dict[str, str] = field(default_factory=dict, init=False)
    _secrets: tuple[str, ...] = field(default=(), init=False)

    def __post_init__(self) -> None:
        self.password = self.spec.admin_password
        self._secrets = self.spec.secrets()

    def mask_also(self, secrets: Sequence[str]) -> None:
        """Mask `secrets` too (a previous spec's, during a rotation)."""
        self._secrets = tuple(sorted({*self._secrets, *secrets}, key=len, reverse=True))

    @property
    def host(self) -> str:
        return self.transport.host

    def mask(self, text: str) -> str:
        return v.mask(text, self._secrets)

    def tail(self, text: str) -> str:
        """The last non-empty lines of `text`, masked and indented (for error messages)."""
        lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("@@pid")]
        lines = lines[-LAST_LINES:]
        return "\n".join(f"    {self.mask(ln)}" for ln in lines)

    def run_script(
        self, commands: Sequence[v.Command], timeout: float
    ) -> tuple[list[str], RunResult]:
        """Run one vpncmd admin session with `commands` as its /IN script; raw result.

        The script, any input files and the password travel on stdin into a private tmpfs
        (vpncmd's working directory, gone with the command however it ends); output files
        come back on stderr after `@@file NAME` lines.
        """
        lines = v.script(commands)
        body = ("\n".join(lines) + "\n").encode()
        password = (self.password.get_secret_value() + "\n").encode()
        files_in = {f.name: f.content.encode() for c in commands for f in c.files_in}
        files_out = sorted({f.name for c in commands for f in c.files_out})
        for name in (*files_in, *files_out):
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name in ("in", "pw"):
                raise ValueError(f"bad file name for a vpncmd argument: {name!r}")
        uploads = "".join(f'head -c {len(data)} > "{n}" && ' for n, data in files_in.items())
        collect = "".join(
            f'[ -f "{n}" ] && {{ echo "@@file {n}"; cat "{n}"; echo; }} >&2; ' for n in files_out
        )
        # The password and the script live only on a tmpfs mounted over /tmp in a mount
        # namespace of this command's own: nothing else sees it, and the kernel frees it when
        # the last process in it exits, however it ends (SIGKILL, SIGPIPE of a dropped
        # connection, the hard timeout of vpncmd). Nothing holding a secret touches a disk.
        inner = (
            f"mount -t tmpfs -o size={TMPFS_SIZE},mode=0700 hc-vpncmd /tmp && cd /tmp || exit 125; "
            f"head -c {len(body)} > in && {uploads}cat > pw || exit 125; "
            f"timeout -s KILL {int(timeout)} {shlex.quote(self.spec.vpncmd)} "
            f"localhost:{self.spec.admin_port} /SERVER /CSV /IN:in < pw & "
            'p=$!; echo "@@pid $p" >&2; wait $p; rc=$?; '
            f"{collect}exit $rc"
        )
        # Root (the nodes' admin user) mounts in a plain mount namespace; another user in a
        # user namespace of its own, where it may.
        shell = (
            'umask 077; if [ "$(id -u)" = 0 ]; then u=; else u=-r; fi; '
            f"exec unshare $u -m --propagation private sh -c {shlex.quote(inner)}"
        )
        self.sessions += 1
        self.commands += len(lines)
        self.mutating += sum(c.mutating for c in commands)
        redacted = "\n".join(v.script(commands, masked=True))
        log.debug("%s: vpncmd script:\n%s", self.host, redacted)
        res = self.transport.run(
            shell,
            stdin=body + b"".join(files_in.values()) + password,
            timeout=timeout + 5,
            redacted_stdin=redacted,
            abort_on=(v.ACCESS_DENIED_TEXT,),
        )
        return lines, res

    @staticmethod
    def files_of(res: RunResult) -> dict[str, str]:
        """Output files of a run (see run_script)."""
        out: dict[str, list[str]] = {}
        current: list[str] | None = None
        for line in res.stderr.split("\n"):
            if line.startswith("@@file "):
                current = out.setdefault(line[7:], [])
            elif line.startswith("@@pid "):
                current = None
            elif current is not None:
                current.append(line)
        return {k: "\n".join(v_).strip("\n") + "\n" for k, v_ in out.items()}

    def run(
        self, commands: Sequence[v.Command], timeout: float
    ) -> list[tuple[v.Command, v.Reply]]:
        """Each command with its reply; retried while SoftEther does not listen yet."""
        return self._retrying(lambda: self._run_once(commands, timeout))

    def files(self, commands: Sequence[v.Command], timeout: float) -> dict[str, str]:
        """The output files (`vpncmd.FileOut`) the commands wrote, by name."""

        def attempt() -> dict[str, str]:
            lines, res = self.run_script(commands, timeout)
            self._check_run(lines, res, timeout)
            return self.files_of(res)

        return self._retrying(attempt)

    def _retrying(self, attempt: Callable[[], T]) -> T:
        # A node that just booted may run sshd before SoftEther listens: retry, bounded.
        deadline = time.monotonic() + self.service_wait_s
        while True:
            try:
                return attempt()
            except ConnectFailed as e:
                if time.monotonic() >= deadline:
                    raise SoftEtherError(
                        self.host,
                        f"vpncmd cannot reach SoftEther at localhost:{self.spec.admin_port} "
                        f"after {self.service_wait_s:.0f} s: {e}",
                    ) from None
                # Not sooner: SoftEther counts admin connections per source address and
                # refuses all of them (ERR_152 here) after 16 that each came within 1 s of the
                # last; the count is dropped only once 1 s passes without one (Cedar/Listener.c,
                # CheckDosAttack/RefreshDosList). Faster retries would keep it refused forever.
                time.sleep(DOS_QUIET_S)

    def _run_once(
        self, commands: Sequence[v.Command], timeout: float
    ) -> list[tuple[v.Command, v.Reply]]:
        lines, res = self.run_script(commands, timeout)
        out = self._check_run(lines, res, timeout)
        self.prompted = out.password_prompted
        self.last_files = self.files_of(res)
        return v.pair(commands, out.replies)

    def _check_run(self, lines: list[str], res: RunResult, timeout: float) -> v.ScriptOutput:
        if res.aborted:
            self._kill_remote(res)
            raise AccessDeniedError(
                self.host,
                "vpncmd: access denied: the admin password is wrong (or another admin mode)",
            )
        if res.timed_out or res.rc == 137:
            self._kill_remote(res)
            raise VpncmdTimeoutError(
                self.host,
                f"vpncmd did not finish within {timeout:.0f} s; last output:\n"
                + self.tail(res.stdout),
            )
        try:
            return v.split_output(res.stdout, lines)
        except AccessDenied:
            raise AccessDeniedError(self.host, "vpncmd: access denied") from None
        except OutputError as e:
            raise SoftEtherError(
                self.host,
                f"vpncmd: {e} (exit {res.rc}); last output:\n" + self.tail(res.stdout + res.stderr),
            ) from None

    def _kill_remote(self, res: RunResult) -> None:
        m = re.search(r"@@pid (\d+)", res.stderr)
        if m:
            # `timeout` passes the TERM on to the vpncmd it runs, which would otherwise spin.
            self.transport.run(f"kill -TERM {m.group(1)} 2>/dev/null || true", timeout=10)
