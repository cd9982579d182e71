"""Current state of a node, read with read-only vpncmd commands in /CSV mode.

pyinfra-style facts: `read_commands(desired)` says what to read (one /IN script: the desired
spec names the hubs, cascades and switches whose details matter; everything else only needs
its name, to be removed), `parse_state(pairs)` turns the replies into a `NodeState`.
Missing objects read as absent, never as errors.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

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


def read_commands(desired: ServerSpec | BridgeSpec) -> list[v.Command]:
    """The read-only commands whose replies `parse_state` needs, in script order."""
    C = v.Command
    cmds = [C("ListenerList"), C("HubList"), C("BridgeList")]
    if isinstance(desired, ServerSpec):
        cmds += [
            C("RouterList"),
            C("ProtoOptionsGet", ("OpenVPN",)),
            C("ProtoOptionsGet", ("SSTP",)),
            C("IPsecGet"),
            C("VpnAzureGetStatus"),
            C("VpnOverIcmpDnsGet"),
        ]
        for sw in desired.l3_switches:
            cmds += [C("RouterIfList", (sw.name,)), C("RouterTableList", (sw.name,))]
    for hub in desired.hubs:
        h = hub.name
        cmds += [C("StatusGet", hub=h), C("UserList", hub=h), C("CascadeList", hub=h)]
        if hub.ext_options:
            cmds.append(C("ExtOptionList", hub=h))
        cmds += [C("CascadeGet", (c.name,), hub=h) for c in hub.cascades]
    return cmds


Pairs = Sequence[tuple[v.Command, v.Reply]]


def parse_state(pairs: Pairs, *, admin_password_set: bool, server: bool) -> NodeState:
    """Build the node state from (command, reply) pairs of a `read_commands` script."""
    listeners: dict[int, bool] = {}
    hub_names: list[str] = []
    bridges: list[BridgeState] = []
    switches: dict[str, bool] = {}
    l3_if: dict[str, list[tuple[str, IPv4Interface]]] = {}
    l3_rt: dict[str, list[tuple[IPv4Network, IPv4Address, int]]] = {}
    proto: dict[str, str] = {}
    hubs: dict[str, _HubAcc] = {}

    for cmd, reply in pairs:
        if not reply.ok:
            continue  # an absent hub/cascade/switch: nothing to record
        out = reply.output
        arg0 = cmd.args[0] if cmd.args and isinstance(cmd.args[0], str) else ""
        hubd = hubs.setdefault(cmd.hub.lower(), _HubAcc()) if cmd.hub else _HubAcc()
        match cmd.name:
            case "ListenerList":
                for r in v.table(out):
                    port = int(r["port"].split()[-1])
                    listeners[port] = r["status"].strip() == "Listening"
            case "HubList":
                hub_names = [r["hub"] for r in v.table(out)]
            case "BridgeList":
                bridges = [BridgeState(r["hub"], r["device"], r["status"]) for r in v.table(out)]
            case "RouterList":
                switches = {r["name"]: r["running"].startswith("Start") for r in v.table(out)}
            case "RouterIfList":
                l3_if[arg0] = [
                    (r["hub"], IPv4Interface(f"{r['ip']}/{r['mask']}")) for r in v.table(out)
                ]
            case "RouterTableList":
                l3_rt[arg0] = [
                    (
                        IPv4Network(f"{r['network']}/{r['mask']}"),
                        IPv4Address(r["gateway"]),
                        v.number(r["metric"]),
                    )
                    for r in v.table(out)
                ]
            case "ProtoOptionsGet":
                enabled = next((r["value"] for r in v.table(out) if r["name"] == "Enabled"), "")
                proto[arg0.lower()] = enabled
            case "IPsecGet" | "VpnAzureGetStatus" | "VpnOverIcmpDnsGet":
                proto.update(v.items(out))
            case "StatusGet":
                status = v.items(out)
                hubd.securenat = v.yes(status.get("securenat", "no"))
                hubd.online = status.get("status", "Online").strip() != "Offline"
            case "UserList":
                hubd.users = tuple(UserState(r["name"], r.get("note", "")) for r in v.table(out))
            case "CascadeList":
                hubd.cascades = [(r["name"], r["status"]) for r in v.table(out)]
            case "ExtOptionList":
                hubd.ext = {r["item"]: v.number(r["value"]) for r in v.table(out)}
            case "CascadeGet":
                hubd.details[arg0.lower()] = v.items(out)
            case _:
                pass

    hub_states: dict[str, HubState] = {}
    for name in hub_names:
        d = hubs.get(name.lower(), _HubAcc())
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
        name.lower(): L3State(name, running, tuple(l3_if.get(name, ())), tuple(l3_rt.get(name, ())))
        for name, running in switches.items()
    }
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
        listeners=listeners,
        hubs=hub_states,
        bridges=tuple(bridges),
        l3_switches=l3,
        protocols=protocols,
    )


@dataclass
class _HubAcc:
    online: bool = True
    securenat: bool = False
    users: tuple[UserState, ...] = ()
    cascades: list[tuple[str, str]] = field(default_factory=list)
    ext: dict[str, int] = field(default_factory=dict)
    details: dict[str, dict[str, str]] = field(default_factory=dict)


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
