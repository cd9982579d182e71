"""`plan(desired, current)`: the ordered vpncmd changes that turn `current` into `desired`.

Pure. Empty when converged. Objects the spec owns (listeners, hubs of a server, users and
cascades of a listed hub, local bridges, L3 switches with their interfaces and routes) are
complete lists: what is present but not desired is removed.

Order: listeners and protocol switches; hubs and their contents; local bridges; L3 switches
(stopped before their interfaces/routes change, started after; their hubs exist by then);
undesired hubs last (after the switch interfaces in them are gone); the server's certificate;
the admin password.

Rotation (README "Rotate"): SoftEther shows no password back, and a changed one waits silently
for the next login, so the caller says what rotates: `rotated` cascades (their password differs
from the node's previous spec) get the new password, then a controlled reconnect
(`CascadeOffline` ... `CascadeOnline` in the same script); `admin_stale`: the node was reached
with the previous admin password, which `ServerPasswordSet` replaces last; `certificate_name`:
the common name of the server's current certificate, regenerated when the spec wants another.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from pydantic import SecretStr

from .facts import CascadeState, HubState, NodeState
from .spec import BridgeSpec, Cascade, Hub, L3Switch, ServerSpec
from .vpncmd import Command, FileIn, SecretArg

NOTE_PREFIX = "hc-pw:"


@dataclass(frozen=True)
class Change:
    """One line of the diff and the vpncmd commands that make it true."""

    summary: str
    commands: tuple[Command, ...]

    @property
    def touches_cascade(self) -> bool:
        return any(c.name.startswith("Cascade") for c in self.commands)

    def __str__(self) -> str:
        return self.summary


@dataclass(frozen=True)
class Rotating:
    """What rotates on a node (see the module docstring); the default: nothing."""

    cascades: frozenset[tuple[str, str]] = frozenset()  # (hub, cascade), lower case
    admin_stale: bool = False
    certificate_name: str | None = None  # the current certificate's common name, if read


def plan(
    desired: ServerSpec | BridgeSpec,
    current: NodeState,
    reset_users: frozenset[tuple[str, str]] = frozenset(),
    rotating: Rotating = Rotating(),
) -> tuple[Change, ...]:
    """`reset_users`: (hub, user) pairs, lower case, whose password must be set again even
    though their note matches: a cascade to them was refused (the password was changed on the
    server by hand, which the note cannot show)."""
    return tuple(_plan(desired, current, reset_users, rotating))


def commands(changes: tuple[Change, ...]) -> tuple[Command, ...]:
    return tuple(cmd for ch in changes for cmd in ch.commands)


def password_note(
    admin: SecretStr,
    hub: str,
    user: str,
    password: SecretStr,
    hub_password: SecretStr | None = None,
) -> str:
    """The user's note that records which passwords were set (SoftEther never shows them back):
    the user's, and the hub-admin password of its hub.

    Keyed with the admin password, so the note tells nothing to whoever cannot administer the
    server anyway; a changed password (or admin password) changes the note, and is re-applied.
    """
    hub_pw = hub_password.get_secret_value() if hub_password else ""
    msg = f"{hub.lower()}\0{user.lower()}\0{password.get_secret_value()}\0{hub_pw}".encode()
    key = admin.get_secret_value().encode()
    return NOTE_PREFIX + hmac.new(key, msg, hashlib.sha256).hexdigest()[:20]


def _plan(
    d: ServerSpec | BridgeSpec,
    cur: NodeState,
    reset_users: frozenset[tuple[str, str]],
    rotating: Rotating,
) -> Iterator[Change]:
    yield from _listeners(d, cur)
    if isinstance(d, ServerSpec):
        yield from _hardening(d, cur)
    for hub in d.hubs:
        yield from _hub(d, hub, cur.hub(hub.name), reset_users, rotating.cascades)
    yield from _bridges(d, cur)
    if isinstance(d, ServerSpec):
        yield from _l3(d, cur)
        if d.prune_hubs:
            wanted = {h.name.lower() for h in d.hubs}
            for key, h in sorted(cur.hubs.items()):
                if key not in wanted:
                    yield Change(f"- hub {h.name}", (Command("HubDelete", (h.name,)),))
    for hub in d.hubs:
        yield from _cascades_online(hub, cur.hub(hub.name), rotating.cascades)
    want_cn = d.certificate_name if isinstance(d, ServerSpec) else None
    if want_cn and rotating.certificate_name is not None and rotating.certificate_name != want_cn:
        # SoftEther swaps it without disconnecting anyone; the bridges pin the new one next.
        yield Change(
            f"~ server certificate: {rotating.certificate_name} -> new self-signed {want_cn}",
            (Command("ServerCertRegenerate", (want_cn,)),),
        )
    if not cur.admin_password_set or rotating.admin_stale:
        what = "rotate (reached with the previous one)" if rotating.admin_stale else "set"
        yield Change(
            f"~ admin password: {what}",
            (Command("ServerPasswordSet", (SecretArg(d.admin_password),)),),
        )


def _listeners(d: ServerSpec | BridgeSpec, cur: NodeState) -> Iterator[Change]:
    for port in d.listeners:
        if port not in cur.listeners:
            yield Change(f"+ listener TCP {port}", (Command("ListenerCreate", (str(port),)),))
        elif not cur.listeners[port]:
            yield Change(
                f"~ listener TCP {port}: enable", (Command("ListenerEnable", (str(port),)),)
            )
    for port in sorted(cur.listeners):
        if port not in d.listeners:
            yield Change(f"- listener TCP {port}", (Command("ListenerDelete", (str(port),)),))


def _yn(b: bool) -> str:
    return "yes" if b else "no"


def _hardening(d: ServerSpec, cur: NodeState) -> Iterator[Change]:
    p, h = cur.protocols, d.hardening
    if p is None:
        return
    for proto, want, have in (("OpenVPN", h.openvpn, p.openvpn), ("SSTP", h.sstp, p.sstp)):
        if want != have:
            yield Change(
                f"~ protocol {proto}: {_onoff(have)} -> {_onoff(want)}",
                (
                    Command(
                        "ProtoOptionsSet",
                        (proto, "/NAME:Enabled", f"/VALUE:{'true' if want else 'false'}"),
                    ),
                ),
            )
    want_ipsec = (h.l2tp_ipsec, h.l2tp_raw, h.etherip)
    if want_ipsec != (p.l2tp_ipsec, p.l2tp_raw, p.etherip):
        hubs = {x.name.lower(): x.name for x in d.hubs}
        default_hub = hubs.get(p.ipsec_default_hub.lower(), d.hubs[0].name if d.hubs else "")
        yield Change(
            "~ IPsec/L2TP/EtherIP: "
            f"l2tp={_yn(h.l2tp_ipsec)} l2tpraw={_yn(h.l2tp_raw)} etherip={_yn(h.etherip)}",
            (
                Command(
                    "IPsecEnable",
                    (
                        f"/L2TP:{_yn(h.l2tp_ipsec)}",
                        f"/L2TPRAW:{_yn(h.l2tp_raw)}",
                        f"/ETHERIP:{_yn(h.etherip)}",
                        # The pre-shared key is kept as it is (unused while all three are off).
                        SecretArg(SecretStr(p.ipsec_psk), "/PSK"),
                        f"/DEFAULTHUB:{default_hub}",
                    ),
                ),
            ),
        )
    if h.vpn_azure != p.vpn_azure:
        yield Change(
            f"~ VPN Azure: {_onoff(p.vpn_azure)} -> {_onoff(h.vpn_azure)}",
            (Command("VpnAzureSetEnable", (_yn(h.vpn_azure),)),),
        )
    if (h.vpn_over_icmp, h.vpn_over_dns) != (p.vpn_over_icmp, p.vpn_over_dns):
        yield Change(
            f"~ VPN over ICMP/DNS: icmp={_yn(h.vpn_over_icmp)} dns={_yn(h.vpn_over_dns)}",
            (
                Command(
                    "VpnOverIcmpDnsEnable",
                    (f"/ICMP:{_yn(h.vpn_over_icmp)}", f"/DNS:{_yn(h.vpn_over_dns)}"),
                ),
            ),
        )


def _onoff(b: bool) -> str:
    return "on" if b else "off"


def _hub(
    d: ServerSpec | BridgeSpec,
    hub: Hub,
    cur: HubState | None,
    reset_users: frozenset[tuple[str, str]] = frozenset(),
    rotated: frozenset[tuple[str, str]] = frozenset(),
) -> Iterator[Change]:
    name = hub.name
    created = cur is None
    if created:
        pw = SecretArg(hub.password or SecretStr(""), "/PASSWORD")
        yield Change(f"+ hub {name}", (Command("HubCreate", (name, pw)),))
        cur = HubState(name=name)
    if not cur.online:
        yield Change(f"~ hub {name}: online", (Command("Online", hub=name),))
    if cur.securenat != hub.securenat:
        cmd = "SecureNatEnable" if hub.securenat else "SecureNatDisable"
        yield Change(
            f"~ hub {name}: SecureNAT -> {_onoff(hub.securenat)}", (Command(cmd, hub=name),)
        )
    for key, value in sorted(hub.ext_options.items()):
        if cur.ext_options.get(key) != value:
            yield Change(
                f"~ hub {name}: {key} -> {value}",
                (Command("ExtOptionSet", (key, f"/VALUE:{value}"), hub=name),),
            )
    notes = {
        u.name: password_note(d.admin_password, name, u.name, u.password, hub.password)
        for u in hub.users
    }
    confirmed = any((h := cur.user(u.name)) and h.note == notes[u.name] for u in hub.users)
    if hub.password is not None and hub.users and not confirmed and not created:
        # An existing hub (e.g. a fresh server's DEFAULT) may still have a blank hub-admin
        # password. A user note matching ours proves the one we set (notes include it);
        # without any, set it again.
        yield Change(
            f"~ hub {name}: hub admin password",
            (Command("SetHubPassword", (SecretArg(hub.password),), hub=name),),
        )
    for u in hub.users:
        note = notes[u.name]
        have = cur.user(u.name)
        set_pw = Command("UserPasswordSet", (u.name, SecretArg(u.password, "/PASSWORD")), hub=name)
        if have is None:
            create = Command(
                "UserCreate",
                (u.name, "/GROUP:none", "/REALNAME:none", f"/NOTE:{note}"),
                hub=name,
            )
            yield Change(f"+ user {name}/{u.name}", (create, set_pw))
        elif have.note != note or (name.lower(), u.name.lower()) in reset_users:
            set_note = Command(
                "UserSet", (u.name, "/GROUP:none", "/REALNAME:none", f"/NOTE:{note}"), hub=name
            )
            yield Change(f"~ user {name}/{u.name}: password", (set_pw, set_note))
    wanted_users = {u.name.lower() for u in hub.users}
    for have in cur.users:
        if have.name.lower() not in wanted_users:
            yield Change(
                f"- user {name}/{have.name}", (Command("UserDelete", (have.name,), hub=name),)
            )
    for c in hub.cascades:
        yield from _cascade(name, c, cur.cascade(c.name), (name.lower(), c.name.lower()) in rotated)
    wanted_cascades = {c.name.lower() for c in hub.cascades}
    for have_c in cur.cascades:
        if have_c.name.lower() not in wanted_cascades:
            yield Change(
                f"- cascade {name}/{have_c.name}",
                (Command("CascadeDelete", (have_c.name,), hub=name),),
            )


def _cascade(
    hub: str, c: Cascade, have: CascadeState | None, rotate: bool = False
) -> Iterator[Change]:
    target = (f"/SERVER:{c.server}:{c.port}", f"/HUB:{c.remote_hub}")
    detail = (
        Command(
            "CascadeDetailSet",
            (c.name, f"/MAXTCP:{c.max_tcp}", "/INTERVAL:1", "/TTL:0", "/HALF:no", "/NOQOS:no"),
            hub=hub,
        ),
    )
    if have is None:
        yield Change(
            f"+ cascade {hub}/{c.name} -> {c.server}:{c.port} hub {c.remote_hub} as {c.username}",
            (
                Command("CascadeCreate", (c.name, *target, f"/USERNAME:{c.username}"), hub=hub),
                Command(
                    "CascadePasswordSet",
                    (c.name, SecretArg(c.password, "/PASSWORD"), "/TYPE:standard"),
                    hub=hub,
                ),
                *(detail if c.max_tcp is not None else ()),
                *(_pin(hub, c) if c.server_cert else ()),
            ),
        )
        return
    cmds: list[Command] = []
    what: list[str] = []
    if (have.server.lower(), have.port, have.remote_hub.lower()) != (
        c.server.lower(),
        c.port,
        c.remote_hub.lower(),
    ):
        cmds.append(Command("CascadeSet", (c.name, *target), hub=hub))
        what.append(
            f"destination {have.server}:{have.port}/{have.remote_hub} -> "
            f"{c.server}:{c.port}/{c.remote_hub}"
        )
    if have.username.lower() != c.username.lower():
        cmds.append(Command("CascadeUsernameSet", (c.name, f"/USERNAME:{c.username}"), hub=hub))
        what.append(f"user {have.username} -> {c.username}")
    if have.auth_failed or rotate:
        cmds.append(
            Command(
                "CascadePasswordSet",
                (c.name, SecretArg(c.password, "/PASSWORD"), "/TYPE:standard"),
                hub=hub,
            )
        )
        # A rotated one: the server's user has the new password already (it is converged
        # first); the reconnect below makes the cascade log in with it now, not at some
        # later reconnect.
        what.append("password rotated, reconnect" if rotate else "password (the server refused the login)")
    if c.max_tcp is not None and have.max_tcp != c.max_tcp:
        cmds += detail
        what.append(f"max TCP {have.max_tcp} -> {c.max_tcp}")
    if have.compress:
        # Off in every cascade the stack owns: on, it carried a third of the rate at three
        # times the CPU per gigabit (bench/tunnel_settings.py, compress-on).
        cmds.append(Command("CascadeCompressDisable", (c.name,), hub=hub))
        what.append("compression off")
    want_sha1 = c.server_cert_sha1
    if want_sha1 and (have.cert_sha1 != want_sha1 or not have.verify_cert):
        cmds += _pin(hub, c)
        what.append(f"pin server certificate SHA1 {want_sha1[:12]}")
    elif not want_sha1 and have.verify_cert:
        cmds.append(Command("CascadeServerCertDisable", (c.name,), hub=hub))
        what.append("stop verifying the server certificate")
    if cmds:
        # The new settings take effect on the next connection.
        if have.online:
            cmds.insert(0, Command("CascadeOffline", (c.name,), hub=hub))
        yield Change(f"~ cascade {hub}/{c.name}: " + ", ".join(what), tuple(cmds))


def _pin(hub: str, c: Cascade) -> tuple[Command, ...]:
    assert c.server_cert is not None
    cert = FileIn(f"{c.name}-server.pem", c.server_cert, "/LOADCERT")
    return (
        Command("CascadeServerCertSet", (c.name, cert), hub=hub),
        Command("CascadeServerCertEnable", (c.name,), hub=hub),
    )


def _cascades_online(
    hub: Hub, cur: HubState | None, rotated: frozenset[tuple[str, str]]
) -> Iterator[Change]:
    """CascadeOnline last: after the local bridge exists (and anything it needs changed)."""
    for c in hub.cascades:
        have = cur.cascade(c.name) if cur else None
        rotate = (hub.name.lower(), c.name.lower()) in rotated
        if have is None or rotate or _cascade_differs(c, have) or not have.online:
            yield Change(
                f"~ cascade {hub.name}/{c.name}: online",
                (Command("CascadeOnline", (c.name,), hub=hub.name),),
            )


def _cascade_differs(c: Cascade, have: CascadeState) -> bool:
    return bool(next(_cascade("", c, have), None))


def _bridges(d: ServerSpec | BridgeSpec, cur: NodeState) -> Iterator[Change]:
    wanted = {(b.hub.lower(), b.device) for b in d.local_bridges}
    have = {(b.hub.lower(), b.device) for b in cur.bridges}
    for b in cur.bridges:
        if (b.hub.lower(), b.device) not in wanted:
            yield Change(
                f"- local bridge {b.hub} -> {b.device}",
                (Command("BridgeDelete", (b.hub, f"/DEVICE:{b.device}")),),
            )
    for b in d.local_bridges:
        if (b.hub.lower(), b.device) not in have:
            kind = "tap" if b.tap else "device"
            yield Change(
                f"+ local bridge {b.hub} -> {kind} {b.device}",
                (Command("BridgeCreate", (b.hub, f"/DEVICE:{b.device}", f"/TAP:{_yn(b.tap)}")),),
            )


def _l3(d: ServerSpec, cur: NodeState) -> Iterator[Change]:
    wanted = {s.name.lower() for s in d.l3_switches}
    for key, sw in sorted(cur.l3_switches.items()):
        if key not in wanted and d.prune_hubs:
            yield Change(f"- L3 switch {sw.name}", (Command("RouterDelete", (sw.name,)),))
    for sw in d.l3_switches:
        yield from _switch(sw, cur)


def _switch(sw: L3Switch, cur: NodeState) -> Iterator[Change]:
    name = sw.name
    have = cur.l3_switches.get(name.lower())
    if have is None:
        yield Change(f"+ L3 switch {name}", (Command("RouterAdd", (name,)),))
    running = have is not None and have.running
    have_if = {(h.lower(), a) for h, a in have.interfaces} if have else set()
    want_if = {(i.hub.lower(), i.address) for i in sw.interfaces}
    hub_of = {i.hub.lower(): i.hub for i in sw.interfaces}
    if have:
        hub_of.update({h.lower(): h for h, _ in have.interfaces})
    have_rt = set(have.routes) if have else set()
    want_rt = {(r.network, r.gateway, r.metric) for r in sw.routes}
    edits: list[Change] = []
    for hub, addr in sorted(have_if - want_if, key=str):
        edits.append(
            Change(
                f"- L3 {name} interface {addr} on {hub_of[hub]}",
                (Command("RouterIfDel", (name, f"/HUB:{hub_of[hub]}")),),
            )
        )
    for net, gw, metric in sorted(have_rt - want_rt, key=str):
        edits.append(
            Change(
                f"- L3 {name} route {net} via {gw}",
                (Command("RouterTableDel", (name, *_route_args(net, gw, metric))),),
            )
        )
    for i in sw.interfaces:
        if (i.hub.lower(), i.address) not in have_if:
            edits.append(
                Change(
                    f"+ L3 {name} interface {i.address} on {i.hub}",
                    (Command("RouterIfAdd", (name, f"/HUB:{i.hub}", f"/IP:{_ipmask(i.address)}")),),
                )
            )
    for r in sw.routes:
        if (r.network, r.gateway, r.metric) not in have_rt:
            edits.append(
                Change(
                    f"+ L3 {name} route {r.network} via {r.gateway}",
                    (
                        Command(
                            "RouterTableAdd", (name, *_route_args(r.network, r.gateway, r.metric))
                        ),
                    ),
                )
            )
    if edits and running:
        # Interfaces and routes cannot change while the switch runs (95, 98).
        yield Change(f"~ L3 switch {name}: stop for changes", (Command("RouterStop", (name,)),))
        running = False
    yield from edits
    if not running and sw.interfaces:
        yield Change(f"~ L3 switch {name}: start", (Command("RouterStart", (name,)),))


def _ipmask(a: IPv4Interface) -> str:
    return f"{a.ip}/{a.netmask}"


def _route_args(net: IPv4Network, gw: IPv4Address, metric: int) -> tuple[str, ...]:
    return (f"/NETWORK:{net.network_address}/{net.netmask}", f"/GATEWAY:{gw}", f"/METRIC:{metric}")
