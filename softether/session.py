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

vpncmd runs through the one runner (`softether.runner`: script and password on a private
tmpfs, retries while SoftEther does not listen yet, a hard timeout). No password reaches argv,
logs, errors or results: everything printed is masked with the spec's secrets.

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
from collections.abc import Sequence
from dataclasses import dataclass, field

from . import hostos
from . import vpncmd as v
from .errors import (
    BridgeDeviceError,
    CommandError,
    HostCommandError,
    NotConvergedError,
    SoftEtherError,
    StateDirError,
    TrafficError,
    TransportError,
)
from .facts import BridgeState, NodeState, parse_state, read_commands
from .plan import Change, plan
from .runner import LAST_LINES, Runner
from .spec import BridgeSpec, ServerSpec
from .transport import Transport

log = logging.getLogger("softether")


@dataclass(frozen=True)
class Result:
    host: str
    changed: bool
    diff: str  # one line per change, masked
    vpncmd_sessions: int
    vpncmd_commands: int  # commands sent, including reads and hub selections
    mutating_commands: int  # of those, the mutating ones (`vpncmd.Command.mutating`)
    seconds: float
    restarted: bool = False
    traffic_checked: bool = False
    host_key: str = ""  # the node's SSH host key after the converge, where the spec retires one


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
    runner: Runner = field(init=False)

    def __post_init__(self) -> None:
        self.runner = Runner(self.transport, self.spec, self.service_wait_s)

    @property
    def host(self) -> str:
        return self.transport.host

    def mask(self, text: str) -> str:
        return self.runner.mask(text)

    def server_certificate(self) -> str:
        """The node's current server certificate (PEM), e.g. to pin it in the cascades."""
        cmd = v.Command("ServerCertGet", (v.FileOut("server.pem"),))
        files = self.runner.files([cmd], self.read_timeout_s)
        if "server.pem" not in files:
            raise SoftEtherError(self.host, "ServerCertGet wrote no certificate")
        return files["server.pem"]

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
        pairs = self.runner.run([*read_commands(self.spec), *extra], self.read_timeout_s)
        state = parse_state(
            pairs,
            admin_password_set=self.runner.prompted,
            server=isinstance(self.spec, ServerSpec),
        )
        return state, {c.name: r for c, r in pairs[len(pairs) - len(extra) :]}

    def read_host(self) -> hostos.HostFacts | None:
        script = hostos.facts_script(self.spec)
        if script.strip() == "echo @@end":
            return None
        res = self.transport.run(script, timeout=self.read_timeout_s)
        try:
            return hostos.parse_facts(res.stdout)
        except ValueError as e:
            why = f"no answer within {self.read_timeout_s:.0f} s" if res.timed_out else f"rc {res.rc}"
            raise TransportError(self.host, f"{e} ({why}); nothing was changed") from None

    def get_state(self) -> tuple[NodeState, hostos.HostFacts | None]:
        return self.read_node(), self.read_host()

    def compare(self, state: tuple[NodeState, hostos.HostFacts | None] | None = None) -> Plan:
        node, host = state if state is not None else self.get_state()
        if host is not None and not host.configured_here:
            # adminip.txt elsewhere would restrict nothing: say so rather than write it.
            raise StateDirError(
                self.host,
                f"no {hostos.config_path(self.spec)}: SoftEther reads {hostos.ADMIN_IP_FILE}"
                " in the directory of its configuration; give the node's state_dir"
                " (for the home server: network.home.vpnServer.stateDir)",
            )
        host_changes = hostos.plan(self.spec, host) if host is not None else ()
        return Plan(plan(self.spec, node, self.reset_users), host_changes)

    # ---- apply ---------------------------------------------------------------------------
    def apply(self, p: Plan) -> None:
        if p.changes:
            cmds = [c for ch in p.changes for c in ch.commands] + [v.Command("Flush")]
            for line in v.script(cmds, masked=True):
                log.info("%s: vpncmd %s", self.host, line)
            for cmd, reply in self.runner.run(cmds, self.apply_timeout_s):
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
                self.runner.tail(res.stderr + res.stdout).splitlines(),
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
        """Run the spec's restart command, then converge the OS side again (the tap is new;
        the apply script waits for it)."""
        assert isinstance(self.spec, BridgeSpec)
        log.warning("%s: cascade carries no traffic; restarting the bridge process", self.host)
        res = self.transport.run(self.spec.restart_command, timeout=self.apply_timeout_s)
        if res.rc != 0:
            raise HostCommandError(
                self.host, "bridge restart command", res.rc, self.runner.tail(res.stderr).splitlines()
            )
        host = self.read_host()
        if host is not None and (changes := hostos.plan(self.spec, host)):
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
            vpncmd_sessions=self.runner.sessions,
            vpncmd_commands=self.runner.commands,
            mutating_commands=self.runner.mutating,
            seconds=time.monotonic() - start,
            restarted=restarted,
            traffic_checked=checked,
            host_key=state[1].host_key if state[1] is not None else "",
        )
