"""Read, compare, apply, verify one SoftEther node over a transport (napalm-style).

`Session(transport, spec)`:
- `get_state()` -> (NodeState, HostFacts): one vpncmd admin session (a read-only /IN script)
  plus one shell command for the OS side;
- `compare()` -> the planned changes (empty when converged);
- `apply(changes)`: every vpncmd change in ONE /IN script ending with `Flush`, then the OS
  side in one shell script;
- `converge()` -> `Result`: read, plan, apply, read again and require an empty plan
  (`NotConvergedError`), check local bridges work, and where a bridge's cascade was created
  or changed, prove it carries traffic (restart the bridge process once if it does not).

vpncmd never prompts: the admin password goes to its stdin from a 0600 file, the script is
another 0600 file, both on a private tmpfs of the command's own mount namespace (never on
disk, gone with the command on every path), every command carries all its switches, and a
hard timeout kills it. A wrong password is recognised from vpncmd's
"Access has been denied" and fails at once. No password reaches argv, logs, errors or
results: everything printed is masked with the spec's secrets.

/IN scripts do not stop at a failing command; each command's status is read from its own
output and the first failure is raised (later commands of the same script have run; the next
converge reads the node again). A hub that cannot be selected leaves no hub selected (see
`vpncmd.script`), so its commands cannot land in another hub.
"""

from __future__ import annotations

import logging
import re
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from . import hostos
from . import vpncmd as v
from .errors import (
    AccessDeniedError,
    BridgeDeviceError,
    CommandError,
    HostCommandError,
    NotConvergedError,
    SoftEtherError,
    TrafficError,
    VpncmdTimeoutError,
)
from .facts import BridgeState, NodeState, parse_state, read_commands
from .plan import Change, plan
from .spec import BridgeSpec, ServerSpec
from .transport import RunResult, Transport

log = logging.getLogger("softether")
T = TypeVar("T")

LAST_LINES = 6
TMPFS_SIZE = "64m"  # the private tmpfs of one vpncmd run: script, password, files in and out
DOS_QUIET_S = 1.5  # > DOS_TABLE_EXPIRES_MAX (1 s) of SoftEther's listener: see `Session._retrying`


@dataclass(frozen=True)
class Result:
    host: str
    changed: bool
    diff: str  # one line per change, masked
    vpncmd_sessions: int
    vpncmd_commands: int  # commands sent, including reads and hub selections
    seconds: float
    restarted: bool = False
    traffic_checked: bool = False


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...]
    host_changes: tuple[hostos.HostChange, ...]

    @property
    def empty(self) -> bool:
        return not self.changes and not self.host_changes

    def lines(self) -> list[str]:
        return [c.summary for c in self.changes] + [h.summary for h in self.host_changes]

    @property
    def touches_cascade(self) -> bool:
        return any(c.touches_cascade for c in self.changes)


@dataclass
class Session:
    """One node. Holds the transport; make one per converge (cheap)."""

    transport: Transport
    spec: ServerSpec | BridgeSpec
    read_timeout_s: float = 15.0
    apply_timeout_s: float = 60.0
    verify_traffic: str = "changed"  # "changed" | "always" | "never"
    service_wait_s: float = 30.0  # how long SoftEther may take to listen after boot
    # (hub, user) whose password to set again: a cascade to them was refused (see plan.plan).
    reset_users: frozenset[tuple[str, str]] = frozenset()
    vpncmd_sessions: int = 0
    vpncmd_commands: int = 0
    _secrets: tuple[str, ...] = field(default=(), init=False)
    _prompted: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self._secrets = self.spec.secrets()

    @property
    def host(self) -> str:
        return self.transport.host

    def mask(self, text: str) -> str:
        return v.mask(text, self._secrets)

    # ---- vpncmd --------------------------------------------------------------------------
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
        password = (self.spec.admin_password.get_secret_value() + "\n").encode()
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
        self.vpncmd_sessions += 1
        self.vpncmd_commands += len(lines)
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

    def server_certificate(self) -> str:
        """The node's current server certificate (PEM), e.g. to pin it in the cascades."""
        cmd = v.Command("ServerCertGet", (v.FileOut("server.pem"),))

        def attempt() -> dict[str, str]:
            lines, res = self.run_script([cmd], self.read_timeout_s)
            self._check_run(lines, res, self.read_timeout_s)
            return self.files_of(res)

        files = self._retrying(attempt)
        if "server.pem" not in files:
            raise SoftEtherError(self.host, "ServerCertGet wrote no certificate")
        return files["server.pem"]

    def _vpncmd(
        self, commands: Sequence[v.Command], timeout: float
    ) -> list[tuple[v.Command, v.Reply]]:
        return self._retrying(lambda: self._vpncmd_once(commands, timeout))

    def _retrying(self, attempt: Callable[[], T]) -> T:
        # A node that just booted may run sshd before SoftEther listens: retry, bounded.
        deadline = time.monotonic() + self.service_wait_s
        while True:
            try:
                return attempt()
            except v.ConnectFailed as e:
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

    def _vpncmd_once(
        self, commands: Sequence[v.Command], timeout: float
    ) -> list[tuple[v.Command, v.Reply]]:
        lines, res = self.run_script(commands, timeout)
        out = self._check_run(lines, res, timeout)
        self._prompted = out.password_prompted
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
                + self._last(res.stdout),
            )
        try:
            return v.split_output(res.stdout, lines)
        except v.AccessDenied:
            raise AccessDeniedError(self.host, "vpncmd: access denied") from None
        except v.OutputError as e:
            raise SoftEtherError(
                self.host,
                f"vpncmd: {e} (exit {res.rc}); last output:\n"
                + self._last(res.stdout + res.stderr),
            ) from None

    def _kill_remote(self, res: RunResult) -> None:
        m = re.search(r"@@pid (\d+)", res.stderr)
        if m:
            # `timeout` passes the TERM on to the vpncmd it runs, which would otherwise spin.
            self.transport.run(f"kill -TERM {m.group(1)} 2>/dev/null || true", timeout=10)

    def _last(self, text: str) -> str:
        lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("@@pid")]
        lines = lines[-LAST_LINES:]
        return "\n".join(f"    {self.mask(ln)}" for ln in lines)

    # ---- read ----------------------------------------------------------------------------
    def read_node(self) -> NodeState:
        return self.read()[0]

    def read(
        self, extra: Sequence[v.Command] = ()
    ) -> tuple[NodeState, dict[str, v.Reply]]:
        """The node state, and the replies (by command name) of `extra` read-only commands run
        in the same admin session (e.g. `ServerInfoGet` for `hybrid status`)."""
        if any(c.mutating for c in extra):
            raise ValueError("read() runs read-only commands only")
        pairs = self._vpncmd([*read_commands(self.spec), *extra], self.read_timeout_s)
        state = parse_state(
            pairs,
            admin_password_set=self._prompted,
            server=isinstance(self.spec, ServerSpec),
        )
        return state, {c.name: r for c, r in pairs[len(pairs) - len(extra) :]}

    def read_host(self) -> hostos.HostFacts | None:
        script = hostos.facts_script(self.spec)
        if script.strip() == "echo @@end":
            return None
        res = self.transport.run(script, timeout=self.read_timeout_s)
        return hostos.parse_facts(res.stdout)

    def get_state(self) -> tuple[NodeState, hostos.HostFacts | None]:
        return self.read_node(), self.read_host()

    def compare(self, state: tuple[NodeState, hostos.HostFacts | None] | None = None) -> Plan:
        node, host = state if state is not None else self.get_state()
        host_changes = hostos.plan(self.spec, host) if host is not None else ()
        return Plan(plan(self.spec, node, self.reset_users), host_changes)

    # ---- apply ---------------------------------------------------------------------------
    def apply(self, p: Plan) -> None:
        if p.changes:
            cmds = [c for ch in p.changes for c in ch.commands] + [v.Command("Flush")]
            for line in v.script(cmds, masked=True):
                log.info("%s: vpncmd %s", self.host, line)
            for cmd, reply in self._vpncmd(cmds, self.apply_timeout_s):
                if not reply.ok:
                    raise CommandError(
                        self.host,
                        str(cmd),
                        reply.code,
                        v.error_name(reply.code),
                        self.mask(reply.message),
                        [self.mask(ln) for ln in reply.output if ln.strip()][-LAST_LINES:],
                    )
        if p.host_changes:
            self._apply_host(p.host_changes)
        self.reset_users = frozenset()  # set again now: a re-read plans them no more

    def _apply_host(self, changes: Sequence[hostos.HostChange]) -> None:
        for c in changes:
            log.info("%s: os %s", self.host, c.summary)
        res = self.transport.run(
            hostos.apply_script(self.spec, tuple(changes)), timeout=self.apply_timeout_s
        )
        if res.rc != 0:
            raise HostCommandError(
                self.host,
                "OS configuration",
                res.rc,
                self._last(res.stderr + res.stdout).splitlines(),
            )

    # ---- verify --------------------------------------------------------------------------
    def _check_bridges(self, node: NodeState) -> NodeState:
        """Local bridges must operate (BridgeCreate returns 0 even for a missing device)."""
        bad: list[BridgeState] = []
        for _ in range(5):
            bad = [
                b
                for b in node.bridges
                if b.status == "Error"
                and any(
                    (d.hub.lower(), d.device) == (b.hub.lower(), b.device)
                    for d in self.spec.local_bridges
                )
            ]
            if not bad:
                return node
            time.sleep(1.0)  # a new tap bridge reads "Error" for about a second
            node = self.read_node()
        raise BridgeDeviceError(
            self.host,
            "local bridge not operating: "
            + ", ".join(f"{b.hub} -> {b.device} (BridgeList status {b.status})" for b in bad)
            + ": does the device exist?",
        )

    def traffic_ok(self) -> bool:
        """Bounded ping over the tap to the home L3 switch; True if any reply came back."""
        spec = self.spec
        if not isinstance(spec, BridgeSpec) or spec.traffic_check is None or spec.host_os is None:
            return True
        chk = spec.traffic_check
        cmd = (
            f"ping -n -c {chk.count} -i 0.2 -W 1 -w {int(chk.timeout_s)} "
            f"-I {shlex.quote(spec.host_os.device)} {chk.target}"
        )
        for _ in range(chk.attempts):
            res = self.transport.run(cmd, timeout=chk.timeout_s + 5)
            m = re.search(r"(\d+) (?:packets )?received", res.stdout)
            if m and int(m.group(1)) > 0:
                return True
        return False

    def restart_bridge(self) -> None:
        """Run the spec's restart command, then re-apply the OS side (the tap is new)."""
        assert isinstance(self.spec, BridgeSpec)
        log.warning("%s: cascade carries no traffic; restarting the bridge process", self.host)
        res = self.transport.run(self.spec.restart_command, timeout=self.apply_timeout_s)
        if res.rc != 0:
            raise HostCommandError(
                self.host, "bridge restart command", res.rc, self._last(res.stderr).splitlines()
            )
        if self.spec.host_os is not None:
            wait = self.transport.run(
                hostos.wait_for_device(self.spec.host_os.device, 15.0), timeout=20
            )
            if wait.rc != 0:
                raise HostCommandError(
                    self.host, "waiting for the tap", wait.rc, self._last(wait.stderr).splitlines()
                )
            host = self.read_host()
            if host is not None:
                changes = hostos.plan(self.spec, host)
                if changes:
                    self._apply_host(changes)

    def ensure_traffic(self) -> bool:
        """Verify the cascade carries traffic; restart once if not. Returns True if restarted."""
        if self.traffic_ok():
            return False
        self.restart_bridge()
        if not self.traffic_ok():
            assert isinstance(self.spec, BridgeSpec) and self.spec.traffic_check is not None
            raise TrafficError(
                self.host,
                f"the cascade carries no traffic to {self.spec.traffic_check.target} "
                "even after restarting the bridge process",
            )
        return True

    # ---- the whole transaction -----------------------------------------------------------
    def converge(self) -> Result:
        start = time.monotonic()
        state = self.get_state()
        p = self.compare(state)
        diff = "\n".join(self.mask(ln) for ln in p.lines())
        node = state[0]
        if not p.empty:
            log.info("%s: %d change(s):\n%s", self.host, len(p.lines()), diff)
            self.apply(p)
            state = self.get_state()
            again = self.compare(state)
            if not again.empty:
                raise NotConvergedError(self.host, [self.mask(ln) for ln in again.lines()])
            node = state[0]
        self._check_bridges(node)
        restarted = checked = False
        if self.verify_traffic == "always" or (
            self.verify_traffic == "changed" and p.touches_cascade
        ):
            checked = isinstance(self.spec, BridgeSpec) and self.spec.traffic_check is not None
            restarted = self.ensure_traffic()
        return Result(
            host=self.host,
            changed=not p.empty or restarted,
            diff=diff,
            vpncmd_sessions=self.vpncmd_sessions,
            vpncmd_commands=self.vpncmd_commands,
            seconds=time.monotonic() - start,
            restarted=restarted,
            traffic_checked=checked,
        )
