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

Rotation: given the node's `previous` spec (the one the provider stored), a cascade whose
password differs gets the new one and a controlled reconnect in the same script, and must
then log in (Established) before the traffic check; if the server refuses the new password
(its user is not rotated yet), the previous one is set back and reconnected, and
`RotationError` says so: the tunnel keeps working and the next converge tries again. An admin
password the node refuses is retried with the previous one, which `ServerPasswordSet` then
replaces. Whatever ran of a rotation, the next converge finds the node's current credential
from both (README "Rotate").

vpncmd runs through the one runner (`softether.runner`: script and password on a private
tmpfs, retries while SoftEther does not listen yet, a hard timeout). No password reaches argv,
logs, errors or results: everything printed is masked with the spec's secrets.

/IN scripts do not stop at a failing command; each command's status is read from its own
output and the first failure is raised (later commands of the same script have run; the next
converge reads the node again). A hub that cannot be selected leaves no hub selected (see
`vpncmd.script`), so its commands cannot land in another hub.
"""

from __future__ import annotations

import base64
import logging
import re
import shlex
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from . import hostos
from . import vpncmd as v
from .errors import (
    AccessDeniedError,
    BridgeDeviceError,
    CommandError,
    HostCommandError,
    NotConvergedError,
    RotationError,
    SoftEtherError,
    StateDirError,
    TrafficError,
    TransportError,
)
from .facts import BridgeState, NodeState, parse_state, read_commands
from .plan import Change, Rotating, plan
from .runner import LAST_LINES, Runner
from .spec import BridgeSpec, Cascade, ServerSpec
from .transport import Transport

CERT_FILE = "server.pem"
# The server's certificate, read: alone (`Session.server_certificate`) or in a read session.
CERT_GET = v.Command("ServerCertGet", (v.FileOut(CERT_FILE),))

log = logging.getLogger("softether")

# How long a rotated cascade may take to log in again after its reconnect (it retries every
# 1 s: CascadeDetailSet /INTERVAL:1).
ROTATION_ESTABLISH_S = 20.0


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
    rotated: tuple[str, ...] = ()  # each credential rotated, with the steps it took (in order)


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
    # The node's previous spec (what it held before this converge, e.g. before a rotation).
    previous: ServerSpec | BridgeSpec | None = None
    runner: Runner = field(init=False)
    # (hub, cascade), lower case: cascades whose password rotates in this converge.
    rotated: frozenset[tuple[str, str]] = field(init=False)

    def __post_init__(self) -> None:
        self.runner = Runner(self.transport, self.spec, self.service_wait_s)
        self.rotated = rotated_cascades(self.spec, self.previous)
        if self.previous is not None:
            self.runner.mask_also(self.previous.secrets())

    @property
    def host(self) -> str:
        return self.transport.host

    def mask(self, text: str) -> str:
        return self.runner.mask(text)

    def server_certificate(self) -> str:
        """The node's current server certificate (PEM), e.g. to pin it in the cascades."""
        files = self.runner.files([CERT_GET], self.read_timeout_s)
        if CERT_FILE not in files:
            raise SoftEtherError(self.host, "ServerCertGet wrote no certificate")
        return files[CERT_FILE]

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
        cmds = [*read_commands(self.spec), *extra]
        try:
            pairs = self.runner.run(cmds, self.read_timeout_s)
        except AccessDeniedError:
            old = self.previous.admin_password if self.previous is not None else None
            if old is None or old.get_secret_value() == self.runner.password.get_secret_value():
                raise
            # A rotation that has not reached this node yet (or stopped before
            # ServerPasswordSet): the previous password still administers it.
            log.warning("%s: the admin password is refused; trying the previous one", self.host)
            self.runner.password = old
            pairs = self.runner.run(cmds, self.read_timeout_s)
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
        cn = None
        if isinstance(self.spec, ServerSpec) and self.spec.certificate_name:
            cn = certificate_name(self.server_certificate())
        rotating = Rotating(self.rotated, self.admin_stale, cn)
        return Plan(plan(self.spec, node, self.reset_users, rotating), host_changes)

    @property
    def admin_stale(self) -> bool:
        """The node was reached with the previous admin password (a rotation to finish)."""
        return self.runner.password.get_secret_value() != self.spec.admin_password.get_secret_value()

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
            # The script's ServerPasswordSet (planned when stale) set the spec's.
            self.runner.password = self.spec.admin_password
        if p.host_changes:
            self._apply_host(p.host_changes)
        self.reset_users = frozenset()  # set again now: a re-read plans them no more
        self.rotated = frozenset()

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

    def settle_rotated(self, cascades: frozenset[tuple[str, str]]) -> None:
        """The rotated `cascades` reconnected: wait (bounded) until each logs in with its new
        password. One the server refuses gets the previous password back and reconnects
        (the link keeps working), and RotationError says so; one that neither logs in nor is
        refused in time is left to the traffic check (which restarts the bridge once)."""
        deadline = time.monotonic() + ROTATION_ESTABLISH_S
        refused: list[tuple[str, str]] = []
        while True:
            node = self.read_node()
            states = {
                (h, c): hub.cascade(c) if (hub := node.hub(h)) is not None else None
                for h, c in cascades
            }
            if all(st is not None and st.established for st in states.values()):
                return
            refused = [k for k, st in states.items() if st is not None and st.auth_failed]
            if refused or time.monotonic() >= deadline:
                break
            time.sleep(0.5)
        if not refused:
            return
        names = ", ".join(f"{h}/{c.name}" for h, c in self._cascades_of(self.spec, refused))
        back = self._cascades_of(self.previous, refused)
        if back:
            cmds = [
                cmd
                for hub, c in back
                for cmd in (
                    v.Command("CascadeOffline", (c.name,), hub=hub),
                    v.Command(
                        "CascadePasswordSet",
                        (c.name, v.SecretArg(c.password, "/PASSWORD"), "/TYPE:standard"),
                        hub=hub,
                    ),
                    v.Command("CascadeOnline", (c.name,), hub=hub),
                )
            ]
            self.runner.run([*cmds, v.Command("Flush")], self.apply_timeout_s)
        raise RotationError(
            self.host,
            f"the server refused the new password of cascade {names}"
            + ("; the previous one is set again and reconnected" if back else "")
            + ": the server's user is not rotated yet; pulumi up again (it converges the home"
            " server first, then this bridge)",
        )

    @staticmethod
    def _cascades_of(
        spec: ServerSpec | BridgeSpec | None, keys: Collection[tuple[str, str]]
    ) -> list[tuple[str, Cascade]]:
        if spec is None:
            return []
        wanted = set(keys)
        return [
            (h.name, c) for h in spec.hubs for c in h.cascades if (h.name.lower(), c.name.lower()) in wanted
        ]

    # ---- the whole transaction -----------------------------------------------------------
    def converge(self) -> Result:
        start = time.monotonic()
        state = self.get_state()
        p = self.compare(state)
        diff = "\n".join(self.mask(ln) for ln in p.lines())
        node = state[0]
        reconnected = self.rotated
        rotated = rotation_lines(p, [f"{h}/{c.name}" for h, c in self._cascades_of(self.spec, self.rotated)])
        if not p.empty:
            log.info("%s: %d change(s):\n%s", self.host, len(p.lines()), diff)
            self.apply(p)
            # Not before the home server is the stack's (no traffic check yet: see derive):
            # until then no cascade can log in, with either password.
            if reconnected and isinstance(self.spec, BridgeSpec) and self.spec.traffic_check:
                self.settle_rotated(reconnected)
                rotated = tuple(
                    f"{ln}, logged in (Established)" if ln.endswith("reconnected") else ln
                    for ln in rotated
                )
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
        if checked:
            rotated = tuple(
                f"{ln}; traffic verified" if ln.startswith("cascade") else ln
                for ln in rotated
            )
        for line in rotated:
            log.info("%s: rotated: %s", self.host, line)
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
            rotated=rotated,
        )


def rotated_cascades(
    spec: ServerSpec | BridgeSpec, previous: ServerSpec | BridgeSpec | None
) -> frozenset[tuple[str, str]]:
    """(hub, cascade), lower case, of each cascade whose password differs from `previous`."""
    if previous is None:
        return frozenset()
    before = {
        (h.name.lower(), c.name.lower()): c.password.get_secret_value()
        for h in previous.hubs
        for c in h.cascades
    }
    return frozenset(
        key
        for h in spec.hubs
        for c in h.cascades
        if (key := (h.name.lower(), c.name.lower())) in before
        and before[key] != c.password.get_secret_value()
    )


def rotation_lines(p: Plan, cascades: Sequence[str]) -> tuple[str, ...]:
    """What a plan rotates, one line per credential, with its steps in order; `cascades`:
    HUB/CASCADE of each rotated cascade."""
    out = [f"cascade {c}: new password set (the server's user has it), reconnected" for c in cascades]
    for line in p.lines():
        if line.startswith("~ server certificate:"):
            out.append("server certificate: regenerated (sessions stay up; the bridges pin it next)")
        elif line.startswith("~ admin password: rotate"):
            out.append("admin password: set with the previous one, which is refused from now on")
        elif line.startswith("~ cascade ") and "pin server certificate" in line:
            name = line.removeprefix("~ cascade ").split(":", 1)[0]
            out.append(f"cascade {name}: pinned the server's new certificate, reconnected")
        elif line.startswith("~ hub ") and line.endswith(": hub admin password"):
            out.append(line.removeprefix("~ ") + " set")
        elif line.startswith("~ user ") and line.endswith(": password"):
            out.append(line.removeprefix("~ ").replace(": password", ": password set (no session is cut)"))
    return tuple(out)


def certificate_name(pem: str) -> str:
    """The common name of a PEM certificate ("" if it has none). Read from the DER bytes:
    SoftEther's self-signed certificates carry a serial that `cryptography` is deprecating."""
    der = base64.b64decode("".join(pem.split("-----")[2].split()))
    at = der.find(b"\x06\x03\x55\x04\x03")  # the OID 2.5.4.3 (commonName), then its string
    if at < 0 or len(der) < at + 7 or der[at + 6] >= 0x80:
        return ""
    return der[at + 7 : at + 7 + der[at + 6]].decode("utf-8", "replace")
