"""One look at every deployed VPN node, read-only, all nodes in parallel (`hybrid status`,
`hybrid lab status`).

Per node, one SSH connection (host key pinned, `softether.transport`) carrying: one vpncmd
admin session (`Session.read`: the reconciler's own read script plus `ServerInfoGet` and
`ServerStatusGet`), the OS facts, and on a bridge one shell command that pings, all at once,
the L3 switch across the tunnel and a host of every other site. The drift is the
reconciler's plan (`Session.compare`) for that state; nothing is applied. A cascade that says
"Established" while the pings get nothing back is a tunnel that is down.

Credentials: SoftEther shows no password, and a changed one waits for the next reconnect. The
password hashes both ends keep in their configuration files (`softether.configfile`) tell
whether a bridge's cascade and the home server's user still agree: where they do not, the
cascade works now and fails at its next reconnect (`credentials`, a problem of the bridge).
"""

from __future__ import annotations

import re
import shlex
import socket
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from ipaddress import IPv4Address

from pydantic import SecretStr

from . import configfile, hostos
from . import vpncmd as v
from .errors import SoftEtherError, TransportError
from .facts import CascadeState
from .outputs import NodeOutput, Outputs
from .session import Session
from .spec import BRIDGE_HUB, BridgeSpec, ServerSpec, SshTarget, spec_from_dict
from .transport import SshTransport, Transport, ssh_transport

SockFactory = Callable[[str, int, float], socket.socket]
PING_COUNT = 3
PING_DEADLINE_S = 3
SSH_DEADLINE_S = 8.0
READ_TIMEOUT_S = 15.0
REPORT_DEADLINE_S = 20.0  # the most a report waits for a node (README: hybrid status)


@dataclass(frozen=True)
class Ping:
    """A bounded ping from a bridge: `to` is "switch" or a site name."""

    to: str
    address: str
    sent: int
    received: int
    rtt_s: float | None  # average round trip of the replies

    @property
    def up(self) -> bool:
        return self.received > 0

    @property
    def loss(self) -> float:
        return 1.0 - self.received / self.sent if self.sent else 1.0


@dataclass(frozen=True)
class NodeReport:
    site: str
    role: str
    host: str
    reachable: bool  # SSH worked
    error: str = ""  # why SSH or SoftEther could not be read
    version: str = ""
    uptime_s: float | None = None
    cascades: tuple[CascadeState, ...] = ()
    pings: tuple[Ping, ...] = ()
    drift: tuple[str, ...] = ()
    seconds: float = 0.0
    ssh_connections: int = 0
    ssh_failed_attempts: int = 0  # before the connection that worked: an outage lived through
    # From the node's configuration file: ("hub/user", password hash) of a server's users;
    # (cascade, "remote hub/user", password hash) of a bridge's cascades.
    stored_users: tuple[tuple[str, str], ...] = ()
    stored_cascades: tuple[tuple[str, str, str], ...] = ()
    credentials: tuple[str, ...] = ()  # where the two ends of a cascade disagree (`agree`)

    @property
    def switch_ping(self) -> Ping | None:
        return next((p for p in self.pings if p.to == "switch"), None)

    @property
    def problems(self) -> list[str]:
        """Empty when the node is healthy; otherwise one phrase per problem."""
        out = [self.error] if self.error else []
        if self.reachable and self.ssh_failed_attempts:
            out.append(
                f"SSH answered after {self.ssh_failed_attempts} failed attempt(s) "
                "(an outage during the report)"
            )
        out += [f"cascade {c.name} {c.status or 'absent'}" for c in self.cascades if not c.established]
        for p in self.pings:
            if not p.up:
                out.append(
                    f"tunnel DOWN (no reply from the L3 switch {p.address})"
                    if p.to == "switch"
                    else f"no reply from {p.to} {p.address}"
                )
        if self.drift:
            out.append(f"{len(self.drift)} drift change(s)")
        return out + list(self.credentials)


@dataclass
class Report:
    stack: str
    nodes: list[NodeReport] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """0 healthy, 1 degraded, 2 a node unreachable."""
        if any(not n.reachable for n in self.nodes):
            return 2
        return 1 if any(n.problems for n in self.nodes) else 0

    @property
    def verdict(self) -> str:
        return ("HEALTHY", "DEGRADED", "UNREACHABLE")[self.exit_code]


def ping_script(targets: Mapping[str, str], source: IPv4Address | None = None) -> str:
    """All pings at once, each output line prefixed `@@<i> ` (i: the target's position); the
    pings to other sites leave from `source` (the L3 switch's from the tap's own address)."""
    parts = [
        f"(ping -n -q -c {PING_COUNT} -i 0.2 -W 1 -w {PING_DEADLINE_S}"
        + (f" -I {source}" if source is not None and name != "switch" else "")
        + f" {shlex.quote(addr)} 2>&1 | sed 's/^/@@{i} /') &"
        for i, (name, addr) in enumerate(targets.items())
    ]
    return " ".join(parts) + " wait"


def parse_pings(text: str, targets: Mapping[str, str]) -> tuple[Ping, ...]:
    lines: dict[str, list[str]] = {}
    for line in text.splitlines():
        m = re.match(r"^@@(\S+) (.*)$", line)
        if m:
            lines.setdefault(m.group(1), []).append(m.group(2))
    out = []
    for i, (name, addr) in enumerate(targets.items()):
        body = "\n".join(lines.get(str(i), ()))
        m = re.search(r"(\d+) packets transmitted, (\d+) (?:packets )?received", body)
        sent, got = (int(m.group(1)), int(m.group(2))) if m else (PING_COUNT, 0)
        r = re.search(r"= [\d.]+/([\d.]+)/", body)
        out.append(Ping(name, addr, sent, got, float(r.group(1)) / 1000 if r and got else None))
    return tuple(out)


def uptime(status: Mapping[str, str]) -> float | None:
    """From `ServerStatusGet`: "Current Time" minus "Server Started at"."""

    def when(text: str) -> datetime | None:
        text = re.sub(r"\s*\([A-Za-z]+\)\s*", " ", text).split(".")[0].strip()
        try:
            return datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
        except ValueError:
            return None

    start, now = when(status.get("Server Started at", "")), when(status.get("Current Time", ""))
    return (now - start).total_seconds() if start and now else None


def version(info: Mapping[str, str]) -> str:
    """`Version 5.01 Build 9674   (English)` -> `5.01 build 9674`."""
    m = re.search(r"Version (\S+) Build (\d+)", info.get("Version", ""))
    return f"{m.group(1)} build {m.group(2)}" if m else info.get("Version", "").strip()


def ping_targets(
    site: str, switch: IPv4Address, hosts: Mapping[str, IPv4Address]
) -> dict[str, str]:
    return {"switch": str(switch)} | {s: str(a) for s, a in hosts.items() if s != site}


def probe(
    site: str,
    node: NodeOutput,
    transport: Transport,
    targets: Mapping[str, str],
) -> NodeReport:
    """Read one node over `transport` (connected or not); never raises for a node problem."""
    t0 = time.monotonic()
    spec = spec_from_dict(node.spec)
    blank = _blank(site, node, True)
    if isinstance(transport, SshTransport):
        try:
            transport.connect()
        except TransportError as e:
            return replace(blank, reachable=False, error=str(e), seconds=time.monotonic() - t0)
    session = Session(transport, spec, read_timeout_s=READ_TIMEOUT_S, service_wait_s=0.0)
    with ThreadPoolExecutor(max_workers=1) as pool:
        pinging: Future[tuple[Ping, ...]] | None = None
        if isinstance(spec, BridgeSpec):
            pinging = pool.submit(_ping, transport, targets, node.private_address)
        try:
            report = _read(session, spec, blank)
            if not report.error:
                report = _stored(transport, spec, report)
        except TransportError as e:
            report = replace(blank, reachable=False, error=str(e))
        pings = pinging.result() if pinging is not None else ()
    failed = transport.failed_attempts if isinstance(transport, SshTransport) else 0
    return replace(
        report,
        pings=pings,
        seconds=time.monotonic() - t0,
        ssh_connections=transport.connects,
        ssh_failed_attempts=failed,
    )


def _ping(
    transport: Transport, targets: Mapping[str, str], source: IPv4Address | None
) -> tuple[Ping, ...]:
    try:
        res = transport.run(ping_script(targets, source), timeout=PING_DEADLINE_S + 10)
    except TransportError:
        return parse_pings("", targets)
    return parse_pings(res.stdout, targets)


def _read(session: Session, spec: ServerSpec | BridgeSpec, blank: NodeReport) -> NodeReport:
    extra = [v.Command("ServerInfoGet"), v.Command("ServerStatusGet")]
    try:
        state, replies = session.read(extra)
        host = session.read_host()
    except TransportError:
        raise  # the node is unreachable (see probe), not a SoftEther problem
    except SoftEtherError as e:
        return replace(blank, error=f"SoftEther: {e}")
    cascades = tuple(c for h in spec.hubs if (hub := state.hub(h.name)) for c in hub.cascades)
    if isinstance(spec, BridgeSpec):
        have = {c.name.lower() for c in cascades}
        cascades += tuple(CascadeState(c.name) for c in spec.cascades if c.name.lower() not in have)
    return replace(
        blank,
        version=version(v.items(replies["ServerInfoGet"].output)),
        uptime_s=uptime(v.items(replies["ServerStatusGet"].output)),
        cascades=cascades,
        drift=tuple(session.mask(ln) for ln in session.compare((state, host)).lines()),
    )


def _stored(transport: Transport, spec: ServerSpec | BridgeSpec, report: NodeReport) -> NodeReport:
    """The password hashes of the node's configuration file (nothing if it cannot be read)."""
    res = transport.run(f"cat {shlex.quote(hostos.config_path(spec))}", timeout=READ_TIMEOUT_S)
    if res.rc != 0:
        return report
    tree = configfile.parse(res.stdout)
    if isinstance(spec, ServerSpec):
        users = tuple(
            (f"{h.name}/{user}".lower(), hashed)
            for h in spec.hubs
            for user, hashed in sorted(configfile.user_hashes(tree, h.name).items())
        )
        return replace(report, stored_users=users)
    cascades = tuple(
        (c.name, f"{c.remote_hub}/{stored[0]}", stored[1])
        for c in spec.cascades
        if (stored := configfile.cascade_hashes(tree, BRIDGE_HUB).get(c.name.lower()))
    )
    return replace(report, stored_cascades=cascades)


def agree(nodes: list[NodeReport]) -> list[NodeReport]:
    """Each bridge's report with a `credentials` line for every cascade whose stored password
    differs from the one the server keeps for its user (it would fail at its next reconnect)."""
    users = {k: h for n in nodes if n.role == "server" for k, h in n.stored_users}
    if not users:
        return nodes  # the server's file was not read: nothing to compare with
    out = []
    for n in nodes:
        lines = []
        for name, user, hashed in n.stored_cascades:
            if user.lower() in users and users[user.lower()] != hashed:
                lines.append(
                    f"cascade {name}: its password differs from the home server's user {user}:"
                    " it works now and fails at its next reconnect (pulumi up sets both ends)"
                )
        out.append(replace(n, credentials=tuple(lines)) if lines else n)
    return out


def probe_all(
    nodes: Mapping[str, NodeOutput],
    switch: IPv4Address,
    hosts: Mapping[str, IPv4Address],
    private_key: str,
    sock_factory: SockFactory | None = None,
) -> list[NodeReport]:
    """Every node at once, one SSH connection each (closed at the end). A node not read
    within REPORT_DEADLINE_S is UNREACHABLE: its connection is closed and the report goes
    on without it (an sshd or SoftEther that stops answering mid-report held it 31 s)."""
    reports: dict[str, NodeReport] = {}
    transports: dict[str, SshTransport] = {}
    failures: list[BaseException] = []

    def one(site: str, node: NodeOutput) -> None:
        try:
            if node.ssh.host_key is None:
                reports[site] = replace(
                    _blank(site, node, False),
                    error="host key not pinned (config homeHostKey): not contacted",
                )
                return
            target = SshTarget(
                host=node.ssh.host,
                port=node.ssh.port,
                user=node.ssh.user,
                host_key=node.ssh.host_key,
                private_key=SecretStr(private_key),
                connect_deadline_s=SSH_DEADLINE_S,
            )
            transport = transports[site] = ssh_transport(target, sock_factory, attempt_timeout_s=3.0)
            try:
                reports[site] = probe(site, node, transport, ping_targets(site, switch, hosts))
            finally:
                transport.close()
        except BaseException as e:  # a defect, not a node problem: raised below
            failures.append(e)

    # Daemon threads: one that never returns does not hold the command's exit either.
    threads = {s: threading.Thread(target=one, args=(s, n), daemon=True) for s, n in nodes.items()}
    for t in threads.values():
        t.start()
    deadline = time.monotonic() + REPORT_DEADLINE_S
    for t in threads.values():
        t.join(max(0.0, deadline - time.monotonic()))
    if failures:
        raise failures[0]
    done = dict(reports)
    for site in nodes.keys() - done.keys():
        if site in transports:
            transports[site].close()
        done[site] = replace(
            _blank(site, nodes[site], False),
            error=f"no answer within {REPORT_DEADLINE_S:g} s (SSH or SoftEther stopped answering)",
        )
    return [done[s] for s in nodes]


def _blank(site: str, node: NodeOutput, reachable: bool) -> NodeReport:
    return NodeReport(site, node.role, node.ssh.host, reachable=reachable)


def check(outputs: Outputs, key: str, sock: SockFactory | None = None) -> Report:
    """The report of every node the outputs name."""
    t0 = time.monotonic()
    st = outputs.status
    nodes = agree(probe_all(st.nodes, st.switch, st.hosts, key, sock))
    return Report(st.stack, nodes, time.monotonic() - t0)


# ---- the text report ----------------------------------------------------------------------
def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(seconds)
    d, h, m = s // 86400, s % 86400 // 3600, s % 3600 // 60
    return f"{d}d{h:02d}h" if d else f"{h}h{m:02d}m" if h else f"{m}m{s % 60:02d}s"


def text_lines(report: Report) -> list[str]:
    bad = [n for n in report.nodes if n.problems]
    lines = [
        f"stack {report.stack}: {report.verdict}"
        + (f" ({', '.join(n.site for n in bad)})" if bad else "")
        + f" in {report.seconds:.2f} s"
    ]
    for n in report.nodes:
        lines += _node_lines(n)
    return lines


def _node_lines(n: NodeReport) -> list[str]:
    head = f"{n.site} ({n.role} {n.host}):"
    if not n.reachable:
        return [f"{head} UNREACHABLE: {n.error}"]
    if n.error:
        return [f"{head} {n.error}"]
    lines = [f"{head} SoftEther {n.version}, up {_duration(n.uptime_s)}"]
    if n.ssh_failed_attempts:
        lines.append(f"  SSH: answered after {n.ssh_failed_attempts} failed attempt(s)")
    lines += [f"  cascade {c.name}: {c.status or 'absent'}" for c in n.cascades]
    for p in n.pings:
        what = "tunnel -> L3 switch" if p.to == "switch" else f"site -> {p.to}"
        state = "UP  " if p.up else "DOWN"
        lines.append(
            f"  {state} {what} {p.address}: {p.received}/{p.sent} replies,"
            f" {p.loss:.0%} loss, rtt {_ms(p.rtt_s)}"
        )
    lines += [f"  credential: {c}" for c in n.credentials]
    if n.drift:
        lines.append(f"  drift: {len(n.drift)} change(s) the next `pulumi up` would make:")
        lines += [f"    {d}" for d in n.drift]
    else:
        lines.append("  drift: none")
    return lines
