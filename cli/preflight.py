"""`hybrid preflight --stack NAME`: the home server as `pulumi up` will meet it, read-only.

The home server is the one machine the stack does not create. Before any cloud resource
exists, this checks it on the program's own code paths: the pinned host key and the operator
key (softether.transport), SoftEther read with the reconciler's read-only script
(`Session.read`) and compared with what the stack wants (softether.derive, `Session.compare`).
One line per check, PASS / WARN / FAIL; exit 1 on a FAIL. Nothing is changed on the server:
every vpncmd command sent is a read (`vpncmd.READ_ONLY`), every shell command only reads.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shlex
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import SecretStr

from softether import vpncmd as v
from softether.derive import admin_secret, derive, secret_names
from softether.errors import AccessDeniedError, AuthFailed, SoftEtherError, TransportError
from softether.facts import NodeState
from softether.spec import ServerSpec, SshTarget
from topology import Stack, plan_routes
from topology.load import PROJECT, admin_password_problems

from .args import MAX_KEY_BYTES, add_stack, read_input, stack_of

if TYPE_CHECKING:  # the SSH stack (paramiko) loads when preflight runs, not for every `hybrid` command
    import paramiko

    from softether.session import Session
    from softether.transport import RunRecord, SshTransport

PASSWORD_ENV = "HYBRID_HOME_ADMIN_PASSWORD"
KEY_ENV = "HYBRID_OPERATOR_KEY"
DEFAULT_KEY = "~/.ssh/hybrid-cloud"
TIMEOUT_S = 10.0
# The first release with upstream's OpenSSL-3 error-queue fix (README, softether-notes).
FIXED = (5, 2, 5185)
SockFactory = Callable[[str, int, float], socket.socket]


@dataclass(frozen=True)
class Check:
    name: str
    level: str  # PASS | WARN | FAIL
    text: str

    def line(self) -> str:
        return f"{self.level} {self.name}: {self.text}"


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    user: str
    host_key: str | None  # pinned (`ssh-ed25519 AAAA...`), None if not yet


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("preflight", help="check the home server before the first pulumi up (read-only)")
    add_stack(p)
    p.add_argument("--key", help=f"the operator's private key file (default: ${KEY_ENV}, {DEFAULT_KEY})")
    p.add_argument("--host", help="SSH to this address instead of the stack's home ssh.host")
    p.add_argument("--port", type=int, help="SSH port instead of the stack's home ssh.port")
    p.add_argument("--host-key", help=f"the pinned host key instead of {PROJECT}:homeHostKey")
    p.add_argument("--netns", help="connect from this network namespace (the lab's operator)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    stack = stack_of(args)
    ssh = stack.network.home.vpn_server.ssh
    target = Target(args.host or ssh.host, args.port or ssh.port, ssh.user, args.host_key or stack.home_host_key)
    problems: list[str] = []
    if not 1 <= target.port <= 65535:
        problems.append(f"--port: {target.port} is not a TCP port")
    if target.host_key is not None:
        import paramiko

        from softether.transport import parse_public_key

        try:
            parse_public_key(target.host_key)
        except (ValueError, paramiko.SSHException) as e:
            problems.append(f"host key: {target.host_key[:40]!r} is not a public key ({e})")
    key_file = Path(args.key or os.environ.get(KEY_ENV) or DEFAULT_KEY).expanduser()
    private_key = ""
    try:
        private_key = read_input(str(key_file), "--key", MAX_KEY_BYTES)
    except ValueError as e:
        problems.append(str(e))
    if args.netns and not Path(f"/run/netns/{args.netns}").exists():
        problems.append(f"--netns: {args.netns} does not exist")
    password = os.environ.get(PASSWORD_ENV) or None
    if password is not None:
        problems += [f"${PASSWORD_ENV}: {line}" for line in admin_password_problems(password)]
    if problems:
        for line in problems:
            print(f"hybrid preflight: {line}", file=sys.stderr)
        return 2
    sock: SockFactory | None = None
    if args.netns:
        from lab.node import netns_socket

        ns = args.netns
        sock = lambda h, p, t: netns_socket(ns, h, p, t)  # noqa: E731
    checks = preflight(stack, target, private_key, password, sock, key_name=str(key_file))
    for c in checks:
        print(c.line())
    return 1 if any(c.level == "FAIL" for c in checks) else 0


def server_spec(stack: Stack, admin_password: str | None) -> ServerSpec:
    """The stack's home server spec. The other passwords are generated at `pulumi up`:
    placeholders here (the plan's password lines say "password", never the value)."""
    net = stack.network
    values = {n: secrets.token_hex(16) for n in secret_names(net)}
    if admin_password is not None:
        values[admin_secret(net.home.name)] = admin_password
    return derive(net, plan_routes(net), values).server


def preflight(
    stack: Stack,
    target: Target,
    private_key: str,
    admin_password: str | None,
    sock_factory: SockFactory | None = None,
    *,
    key_name: str = "the operator key",
    records: list[RunRecord] | None = None,
) -> list[Check]:
    """Every check, in order; stops after a FAIL that the later checks depend on.
    `records` receives the transport's command records (tests assert nothing mutates)."""
    import paramiko

    from softether.transport import fingerprint, parse_public_key, ssh_transport

    out: list[Check] = []
    label = f"{target.user}@{target.host}:{target.port}"
    try:
        offered = _offered_key(target, sock_factory)
    except (OSError, paramiko.SSHException, EOFError) as e:
        return [Check("ssh", "FAIL", f"{label}: no SSH service answers ({type(e).__name__}: {e})")]
    out.append(Check("ssh", "PASS", f"{label} answers ({offered.get_name()})"))
    pin = f"{offered.get_name()} {offered.get_base64()}"
    fp = f"{offered.get_name()} {fingerprint(offered)}"
    how = (
        f"pin it: pulumi config set {PROJECT}:homeHostKey \"{pin}\" (ssh-keyscan line: "
        f"{_known(target)} {pin}; fingerprint {fp}: compare with ssh-keygen -lf "
        "/etc/ssh/ssh_host_ed25519_key.pub on the server)"
    )
    if target.host_key is None:
        out.append(Check("host key", "FAIL", f"not pinned; the server offers {fp}; {how}"))
        return out
    pinned = parse_public_key(target.host_key)
    if (pinned.get_name(), pinned.get_base64()) != (offered.get_name(), offered.get_base64()):
        out.append(
            Check(
                "host key",
                "FAIL",
                f"the server offers {fp}, the pinned key is {pinned.get_name()} {fingerprint(pinned)};"
                f" if the server was re-created, {how}; otherwise do not connect",
            )
        )
        return out
    out.append(Check("host key", "PASS", f"matches the pinned {fp}"))
    transport = ssh_transport(
        SshTarget(
            host=target.host,
            port=target.port,
            user=target.user,
            host_key=target.host_key,
            private_key=SecretStr(private_key),
            connect_deadline_s=TIMEOUT_S,
        ),
        sock_factory,
    )
    try:
        out += _checks(stack, transport, admin_password, key_name)
    finally:
        transport.close()
        if records is not None:
            records.extend(transport.records)
    return out


def _known(t: Target) -> str:
    return t.host if t.port == 22 else f"[{t.host}]:{t.port}"


def _offered_key(target: Target, sock_factory: SockFactory | None) -> paramiko.PKey:
    """The host key the server offers (as ssh-keyscan reads it); no authentication."""
    import paramiko

    from softether.transport import parse_public_key

    sock = (sock_factory or _connect)(target.host, target.port, TIMEOUT_S)
    t = paramiko.Transport(sock)
    try:
        opts = t.get_security_options()
        want = parse_public_key(target.host_key).get_name() if target.host_key else "ssh-ed25519"
        opts.key_types = [want, *(k for k in opts.key_types if k != want)]
        t.start_client(timeout=TIMEOUT_S)
        return t.get_remote_server_key()
    finally:
        t.close()


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    return socket.create_connection((host, port), timeout=timeout)


def _version(text: str) -> tuple[int, int, int] | None:
    m = re.search(r"Version (\d+)\.(\d+) Build (\d+)", text)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def _checks(
    stack: Stack, transport: SshTransport, admin_password: str | None, key_name: str
) -> list[Check]:
    out: list[Check] = []
    server = stack.network.home.vpn_server
    try:
        transport.connect()
    except AuthFailed:
        return [
            Check(
                "root login",
                "FAIL",
                f"{key_name} is refused for {transport.user}: append the stack output "
                f"operatorPublicKey to ~{transport.user}/.ssh/authorized_keys on the server",
            )
        ]
    except TransportError as e:
        return [Check("root login", "FAIL", str(e))]
    out.append(Check("root login", "PASS", f"{transport.user} with {key_name}"))
    spec = server_spec(stack, admin_password)
    dev = server.bridge_device
    res = transport.run(
        f"command -v {shlex.quote(spec.vpncmd)} || echo none; echo @@; ss -Hltnp; echo @@; "
        f"[ -e /sys/class/net/{shlex.quote(dev)} ] && echo present || echo absent",
        timeout=TIMEOUT_S,
    )
    vpncmd_path, sockets, device = [*res.stdout.split("@@\n"), "", "", ""][:3]
    listening = _listeners(sockets)
    softether = {p for p, who in listening.items() if who in ("vpnserver", "vpnbridge")}
    if vpncmd_path.strip() in ("", "none"):
        out.append(Check("softether installed", "FAIL", f"no {spec.vpncmd} on the server: install softether-vpnserver and softether-vpncmd"))
    else:
        out.append(Check("softether installed", "PASS", f"vpncmd at {vpncmd_path.strip()}"))
    if not softether:
        out.append(Check("softether running", "FAIL", "no vpnserver process listens on any TCP port"))
    else:
        ports = ", ".join(map(str, sorted(softether)))
        out.append(Check("softether running", "PASS", f"vpnserver listens on TCP {ports}"))
    who = listening.get(server.port)
    if server.port in softether:
        extra = sorted(softether - {server.port})
        note = f"; the stack removes {', '.join(map(str, extra))}" if extra else ""
        out.append(Check("listener", "PASS", f"TCP {server.port} (network.home.vpnServer.port){note}"))
    elif who:
        out.append(Check("listener", "FAIL", f"TCP {server.port} is taken by {who}, not SoftEther"))
    else:
        out.append(Check("listener", "FAIL", f"nothing listens on TCP {server.port}: the program administers SoftEther there (vpncmd localhost:{server.port})"))
    if device.strip() == "present":
        out.append(Check("lan device", "PASS", f"{dev} exists (network.home.vpnServer.bridgeDevice)"))
    else:
        out.append(Check("lan device", "FAIL", f"{dev} does not exist on the server (network.home.vpnServer.bridgeDevice)"))
    if server.port not in softether:
        return out
    from softether.session import Session

    out += _softether_checks(Session(transport, spec, read_timeout_s=TIMEOUT_S, service_wait_s=0.0), admin_password)
    return out


def _listeners(ss: str) -> dict[int, str]:
    """`ss -Hltnp` -> port -> process name (first seen)."""
    out: dict[int, str] = {}
    for line in ss.splitlines():
        cols = line.split()
        if len(cols) < 4:
            continue
        port = cols[3].rsplit(":", 1)[-1]
        name = re.search(r'users:\(\("([^"]+)"', line)
        if port.isdigit():
            out.setdefault(int(port), name.group(1) if name else "another process")
    return out


def _softether_checks(session: Session, admin_password: str | None) -> list[Check]:
    out: list[Check] = []
    try:
        state, replies = session.read([v.Command("ServerInfoGet")])
    except AccessDeniedError:
        if admin_password is None:
            return [Check("admin password", "WARN", f"set; not compared with the stack's (give it in ${PASSWORD_ENV}); SoftEther not read further")]
        return [Check("admin password", "FAIL", "set to something other than the stack's secret: SoftEther refuses it")]
    except TransportError:
        raise  # the connection itself failed: not a SoftEther check
    except SoftEtherError as e:
        return [Check("softether", "FAIL", str(e))]
    version = " ".join(v.items(replies["ServerInfoGet"].output).get("Version", "?").split()[:4])
    got = _version(version)
    if got is None:
        out.append(Check("version", "WARN", f"cannot read the version ({version!r})"))
    elif got < FIXED:
        out.append(
            Check(
                "version",
                "WARN",
                f"{version}: before 5.02 build 5185, upstream's OpenSSL-3 fix: after a server "
                "restart cascades can read Established and carry nothing (hybrid status "
                "reports it); published CVEs (2023 Talos set, CVE-2024-38520); prefer a fixed "
                "release (README: network.softether.source)",
            )
        )
    else:
        out.append(Check("version", "PASS", version))
    # With a placeholder password (none given) a server that has one refused it above.
    if state.admin_password_set:
        out.append(Check("admin password", "PASS", "set, and matches the stack's secret"))
    else:
        out.append(Check("admin password", "WARN", "unset: whoever reaches the listener can administer SoftEther; pulumi up sets the stack's"))
    spec = session.spec
    assert isinstance(spec, ServerSpec)
    # The other passwords are placeholders until `pulumi up` generates them: not compared.
    lines = [ln for ln in session.compare((state, None)).lines() if not ln.endswith("password")]
    out.append(_objects("hubs", "hub", state, spec, lines))
    out.append(_objects("l3 switches", "L3 switch", state, spec, lines))
    return out


def _objects(check: str, kind: str, state: NodeState, spec: ServerSpec, lines: list[str]) -> Check:
    """What the plan does to each hub (or L3 switch): adopt, change, create, delete."""
    if kind == "hub":
        have = {h.name for h in state.hubs.values()}
        want = {h.name for h in spec.hubs}
    else:
        have = {s.name for s in state.l3_switches.values()}
        want = {s.name for s in spec.l3_switches}
    parts: list[str] = []
    deleted: list[str] = []
    for name in sorted(have | want, key=str.lower):
        mine = [ln for ln in lines if _about(ln, kind, name)]
        if name.lower() not in {w.lower() for w in want}:
            if any(ln.startswith("-") for ln in mine):
                deleted.append(name)
                parts.append(f"{name}: not the stack's, pulumi up DELETES it")
            else:
                parts.append(f"{name}: not the stack's, left alone")
        elif name.lower() not in {h.lower() for h in have}:
            parts.append(f"{name}: created")
        elif mine:
            parts.append(f"{name}: adopted, {len(mine)} change(s)")
        else:
            parts.append(f"{name}: adopted as it is")
    return Check(check, "WARN" if deleted else "PASS", "; ".join(parts) or "none")


def _about(line: str, kind: str, name: str) -> bool:
    n = re.escape(name)
    if kind == "hub":
        return bool(re.match(rf"^[+~-] (hub {n}(:|$)|user {n}/|cascade {n}/)", line, re.I))
    return bool(re.match(rf"^[+~-] (L3 switch {n}(:|$)|L3 {n} )", line, re.I))
