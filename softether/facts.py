"""Current state of a node, read with read-only vpncmd commands in /CSV mode.

pyinfra-style facts: a fact is a unit, one row of `FACTS`: the read-only command, where it
runs (the node, a server only, each desired L3 switch, each desired hub, each desired hub with
extended options, each desired cascade) and the parser that records its reply. Both
`read_commands(desired)` (what to read, as one /IN script) and `parse_state(pairs)` (the
replies -> `NodeState`) are driven by that one table, so they cannot drift apart. What is not
read keeps its default (the accumulators below). Missing objects read as absent, never as
errors.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Literal

from . import vpncmd as v
from .spec import BridgeSpec, ServerSpec


@dataclass(frozen=True)
class UserState:
    name: str
    note: str = ""


@dataclass(frozen=True)
class CascadeState:
    name: str
    status: str = ""
    server: str = ""
    port: int = 0
    remote_hub: str = ""
    username: str = ""
    max_tcp: int = 0
    verify_cert: bool = False
    compress: bool = False
    cert_sha1: str = ""  # of the registered server certificate, "" if none

    @property
    def online(self) -> bool:
        # "Offline" means switched off; "Connecting"/"Retrying"/"Online (Established)" are on.
        return self.status != "" and not self.status.startswith("Offline")

    @property
    def established(self) -> bool:
        return self.status.startswith("Online")

    @property
    def auth_failed(self) -> bool:
        """The server refused the cascade's login (`Error 9: User authentication failed.`):
        its password differs on one side."""
        m = re.match(r"Error (\d+)", self.status)
        return bool(m) and v.error_name(int(m.group(1))) == "ERR_AUTH_FAILED"


@dataclass(frozen=True)
class HubState:
    name: str
    online: bool = True  # False: switched Offline (by hand); nothing crosses it
    securenat: bool = False
    users: tuple[UserState, ...] = ()
    cascades: tuple[CascadeState, ...] = ()
    ext_options: dict[str, int] = field(default_factory=dict)

    def cascade(self, name: str) -> CascadeState | None:
        return next((c for c in self.cascades if c.name.lower() == name.lower()), None)

    def user(self, name: str) -> UserState | None:
        return next((u for u in self.users if u.name.lower() == name.lower()), None)


@dataclass(frozen=True)
class BridgeState:
    hub: str
    device: str
    status: str  # "Operating" | "Error" | ...


@dataclass(frozen=True)
class L3State:
    name: str
    running: bool
    interfaces: tuple[tuple[str, IPv4Interface], ...] = ()  # (hub, address)
    routes: tuple[tuple[IPv4Network, IPv4Address, int], ...] = ()


@dataclass(frozen=True)
class Protocols:
    openvpn: bool = False
    sstp: bool = False
    l2tp_ipsec: bool = False
    l2tp_raw: bool = False
    etherip: bool = False
    ipsec_psk: str = "vpn"
    ipsec_default_hub: str = "DEFAULT"
    vpn_azure: bool = False
    vpn_over_icmp: bool = False
    vpn_over_dns: bool = False


@dataclass(frozen=True)
class NodeState:
    """What vpncmd reports. `admin_password_set` is False when vpncmd did not ask for one."""

    admin_password_set: bool
    listeners: dict[int, bool] = field(default_factory=dict)  # port -> listening
    hubs: dict[str, HubState] = field(default_factory=dict)  # keyed by lower-case name
    bridges: tuple[BridgeState, ...] = ()
    l3_switches: dict[str, L3State] = field(default_factory=dict)
    protocols: Protocols | None = None  # None on a VPN Bridge (unsupported there)

    def hub(self, name: str) -> HubState | None:
        return self.hubs.get(name.lower())


Pairs = Sequence[tuple[v.Command, v.Reply]]


@dataclass
class _HubAcc:
    online: bool = True
    securenat: bool = False
    users: tuple[UserState, ...] = ()
    cascades: list[tuple[str, str]] = field(default_factory=list)
    ext: dict[str, int] = field(default_factory=dict)
    details: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass
class _NodeAcc:
    """What the replies said so far; the defaults are what an unread fact means."""

    listeners: dict[int, bool] = field(default_factory=dict)
    hub_names: list[str] = field(default_factory=list)
    bridges: list[BridgeState] = field(default_factory=list)
    switches: dict[str, bool] = field(default_factory=dict)
    l3_if: dict[str, list[tuple[str, IPv4Interface]]] = field(default_factory=dict)
    l3_rt: dict[str, list[tuple[IPv4Network, IPv4Address, int]]] = field(default_factory=dict)
    proto: dict[str, str] = field(default_factory=dict)
    hubs: dict[str, _HubAcc] = field(default_factory=dict)

    def hub(self, cmd: v.Command) -> _HubAcc:
        return self.hubs.setdefault((cmd.hub or "").lower(), _HubAcc())


def _arg0(cmd: v.Command) -> str:
    return cmd.args[0] if cmd.args and isinstance(cmd.args[0], str) else ""


# ---- the parsers: (what was read so far, the command, its /CSV output) -------------------
def _listeners(acc: _NodeAcc, cmd: v.Command, out: Sequence[str]) -> None:
    for r in v.table(out):
        acc.listeners[int(r["port"].split()[-1])] = r["status"].strip() == "Listening"


def _hubs(acc: _NodeAcc, cmd: v.Command, out: Sequence[str]) -> None:
    acc.hub_names = [r["hub"] for r in v.table(out)]


def _bridges(acc: _NodeAcc, cmd: v.Command, out: Sequence[str]) -> None:
    acc.bridges = [BridgeState(r["hub"], r["device"], r["status"]) for r in v.table(out)]


def _switches(acc: _NodeAcc, cmd: v.Command, out: Sequence[str]) -> None:
    acc.switches = {r["name"]: r["running"].startswith("Start") for r in v.table(out)}


def _switch_interfaces(acc: _NodeAcc, cmd: v.Command, out: Sequence[str]) -> None:
    acc.l3_if[_arg0(cmd)] = [
        (r["hub"], IPv4Interface(f"{r['ip']}/{r['mask']}")) for r in v.table(out)
    ]


def _switch_routes(acc: _NodeAcc, cmd: v.Command, out: Sequence[str]) -> None:
    acc.l3_rt[_arg0(cmd)] = [
        (
            IPv4Network(f"{r['network']}/{r['mask']}"),
            IPv4Address(r["gateway"]),
            v.number(r["metric"]),
        )
        for r in v.table(out)
    ]


def _proto_options(acc: _NodeAcc, cmd: v.Command, out: Sequence[str]) -> None:
    enabled = next((r["value"] for r in v.table(out) if r["name"] == "Enabled"), "")
    acc.proto[_arg0(cmd).lower()] = enabled


def _proto_items(acc: _NodeAcc, cmd: v.Command, out: Sequence[str]) -> None:
    acc.proto.update(v.items(out))


def _hub_status(acc: _NodeAcc, cmd: v.Command, out: Sequence[str]) -> None:
    status = v.items(out)
    hub = acc.hub(cmd)
    hub.securenat = v.yes(status.get("securenat", "no"))
    hub.online = status.get("status", "Online").strip() != "Offline"


def _users(acc: _NodeAcc, cmd: v.Command, out: Sequence[str]) -> None:
    acc.hub(cmd).users = tuple(UserState(r["name"], r.get("note", "")) for r in v.table(out))


def _cascades(acc: _NodeAcc, cmd: v.Command, out: Sequence[str]) -> None:
    acc.hub(cmd).cascades = [(r["name"], r["status"]) for r in v.table(out)]


def _ext_options(acc: _NodeAcc, cmd: v.Command, out: Sequence[str]) -> None:
    acc.hub(cmd).ext = {r["item"]: v.number(r["value"]) for r in v.table(out)}


def _cascade_details(acc: _NodeAcc, cmd: v.Command, out: Sequence[str]) -> None:
    acc.hub(cmd).details[_arg0(cmd).lower()] = v.items(out)


Scope = Literal["node", "server", "switch", "hub", "hub_ext_options", "cascade"]


@dataclass(frozen=True)
class Fact:
    """One read: the vpncmd command (verbatim), its fixed arguments, where it runs, and the
    parser of its reply."""

    command: str
    scope: Scope
    parse: Callable[[_NodeAcc, v.Command, Sequence[str]], None]
    args: tuple[str, ...] = ()


# In script order. A new read is one row here (and its parser), nothing else.
FACTS: tuple[Fact, ...] = (
    Fact("ListenerList", "node", _listeners),
    Fact("HubList", "node", _hubs),
    Fact("BridgeList", "node", _bridges),
    Fact("RouterList", "server", _switches),
    Fact("ProtoOptionsGet", "server", _proto_options, ("OpenVPN",)),
    Fact("ProtoOptionsGet", "server", _proto_options, ("SSTP",)),
    Fact("IPsecGet", "server", _proto_items),
    Fact("VpnAzureGetStatus", "server", _proto_items),
    Fact("VpnOverIcmpDnsGet", "server", _proto_items),
    Fact("RouterIfList", "switch", _switch_interfaces),
    Fact("RouterTableList", "switch", _switch_routes),
    Fact("StatusGet", "hub", _hub_status),
    Fact("UserList", "hub", _users),
    Fact("CascadeList", "hub", _cascades),
    Fact("ExtOptionList", "hub_ext_options", _ext_options),
    Fact("CascadeGet", "cascade", _cascade_details),
)
_PARSERS = {f.command: f.parse for f in FACTS}


def read_commands(desired: ServerSpec | BridgeSpec) -> list[v.Command]:
    """The read-only commands of `FACTS` for this node, in script order: the desired spec
    names the hubs, cascades and switches whose details matter; everything else only needs
    its name, to be removed."""
    C = v.Command
    cmds = [C(f.command, f.args) for f in FACTS if f.scope == "node"]
    if isinstance(desired, ServerSpec):
        cmds += [C(f.command, f.args) for f in FACTS if f.scope == "server"]
        switch = [f for f in FACTS if f.scope == "switch"]
        cmds += [C(f.command, (sw.name,)) for sw in desired.l3_switches for f in switch]
    for hub in desired.hubs:
        h = hub.name
        for f in FACTS:
            match f.scope:
                case "hub":
                    cmds.append(C(f.command, f.args, hub=h))
                case "hub_ext_options" if hub.ext_options:
                    cmds.append(C(f.command, f.args, hub=h))
                case "cascade":
                    cmds += [C(f.command, (c.name,), hub=h) for c in hub.cascades]
                case _:
                    pass
    return cmds


def parse_state(pairs: Pairs, *, admin_password_set: bool, server: bool) -> NodeState:
    """Build the node state from (command, reply) pairs of a `read_commands` script (other
    read-only commands of the same script are ignored)."""
    acc = _NodeAcc()
    for cmd, reply in pairs:
        parse = _PARSERS.get(cmd.name)
        if reply.ok and parse is not None:  # a failed reply: an absent hub/cascade/switch
            parse(acc, cmd, reply.output)

    hub_states: dict[str, HubState] = {}
    for name in acc.hub_names:
        d = acc.hubs.get(name.lower(), _HubAcc())
        cascades = tuple(_cascade(n, st, d.details.get(n.lower())) for n, st in d.cascades)
        hub_states[name.lower()] = HubState(
            name=name,
            online=d.online,
            securenat=d.securenat,
            users=d.users,
            cascades=cascades,
            ext_options=d.ext,
        )
    l3 = {
        name.lower(): L3State(
            name, running, tuple(acc.l3_if.get(name, ())), tuple(acc.l3_rt.get(name, ()))
        )
        for name, running in acc.switches.items()
    }
    proto = acc.proto
    protocols = (
        Protocols(
            openvpn=v.yes(proto.get("openvpn", "false")),
            sstp=v.yes(proto.get("sstp", "false")),
            l2tp_ipsec=v.yes(proto.get("l2tp_ipsec", "no")),
            l2tp_raw=v.yes(proto.get("l2tp_raw", "no")),
            etherip=v.yes(proto.get("etherip", "no")),
            ipsec_psk=proto.get("psk", "vpn"),
            ipsec_default_hub=proto.get("default_hub", "DEFAULT"),
            vpn_azure=v.yes(proto.get("vpn_azure", "no")),
            vpn_over_icmp=v.yes(proto.get("vpn_over_icmp", "no")),
            vpn_over_dns=v.yes(proto.get("vpn_over_dns", "no")),
        )
        if server
        else None
    )
    return NodeState(
        admin_password_set=admin_password_set,
        listeners=acc.listeners,
        hubs=hub_states,
        bridges=tuple(acc.bridges),
        l3_switches=l3,
        protocols=protocols,
    )


def _cascade(name: str, status: str, it: dict[str, str] | None) -> CascadeState:
    if it is None:
        return CascadeState(name=name, status=status)
    return CascadeState(
        name=name,
        status=status,
        server=it.get("server", ""),
        port=v.number(it.get("port", "0")),
        remote_hub=it.get("remote_hub", ""),
        username=it.get("username", ""),
        max_tcp=v.number(it.get("max_tcp", "0")),
        verify_cert=v.yes(it.get("verify_cert", "Disable")),
        compress=v.yes(it.get("compress", "Disable")),
        cert_sha1=_sha1(it.get("server_cert", "")),
    )


def _sha1(text: str) -> str:
    m = re.search(r'SHA1="*([0-9A-Fa-f]{40})', text)
    return m.group(1).upper() if m else ""
