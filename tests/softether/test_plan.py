"""Table-driven plans: (spec, state) -> the diff lines, in order."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Interface, IPv4Network

import pytest
from pydantic import SecretStr

from softether import vpncmd as v
from softether.facts import (
    HubState,
    L3State,
    NodeState,
    Protocols,
    UserState,
    parse_state,
    read_commands,
)
from softether.plan import commands, password_note, plan
from softether.spec import Hub, ServerSpec, User

from .helpers import fixture_state, reference_specs, vpncmd_output

SPECS = reference_specs(server_address="198.51.100.1")
SERVER = SPECS.server
BRIDGE = SPECS.bridges["Hybrid-VPC"]


def converged_server() -> NodeState:
    return fixture_state("server_converged_read", read_commands(SERVER), server=True)


def converged_bridge() -> NodeState:
    return fixture_state("bridge_converged_read", read_commands(BRIDGE), server=False)


def names(state: NodeState, spec: ServerSpec | object = SERVER) -> list[str]:
    return [c.summary for c in plan(spec, state)]  # type: ignore[arg-type]


def test_plan_converged_server_and_bridge_are_empty() -> None:
    assert plan(SERVER, converged_server()) == ()
    assert plan(BRIDGE, converged_bridge()) == ()


def test_plan_fresh_server_builds_everything_in_dependency_order() -> None:
    fresh = fixture_state("server_fresh_read", read_commands(SERVER), server=True)
    lines = names(fresh)
    assert lines[:3] == ["- listener TCP 443", "- listener TCP 992", "- listener TCP 1194"]
    pos = {ln: i for i, ln in enumerate(lines)}
    assert pos["+ hub HYBRID"] < pos["+ user HYBRID/hybrid-vpc"]
    assert pos["+ hub HYBRID"] < pos["+ L3 L3SW interface 192.168.10.1/24 on HYBRID"]
    assert pos["+ L3 switch L3SW"] < pos["+ L3 L3SW route 192.168.21.0/24 via 192.168.10.2"]
    assert lines[-2:] == ["~ L3 switch L3SW: start", "~ admin password: set"]
    assert "+ local bridge DEFAULT -> device eth1" in lines
    # DEFAULT exists on a fresh server with a blank hub-admin password: set it; HYBRID gets
    # its password from HubCreate.
    assert pos["~ hub DEFAULT: hub admin password"] < pos["+ user DEFAULT/operator"]
    assert "~ hub HYBRID: hub admin password" not in lines
    assert "~ hub HYBRID: DisableUdpAcceleration -> 1" in lines
    # The reference spec keeps hub DEFAULT, so nothing is deleted but listeners.
    assert not [ln for ln in lines if ln.startswith("- ") and "listener" not in ln]


@pytest.mark.parametrize(
    ("drift", "expected"),
    [
        (
            # operator is DEFAULT's only user: with its note gone, nothing proves the hub
            # password any more, so it is set again.
            "user",
            ["~ hub DEFAULT: hub admin password", "+ user DEFAULT/operator"],
        ),
        (
            "route",
            [
                "~ L3 switch L3SW: stop for changes",
                "+ L3 L3SW route 192.168.21.0/24 via 192.168.10.2",
                "~ L3 switch L3SW: start",
            ],
        ),
        ("extra_user", ["- user HYBRID/intruder"]),
        ("extra_hub", []),  # the home server's other hubs are the user's: left alone
        ("listener", ["- listener TCP 443"]),
        ("password_changed", ["~ user HYBRID/hybrid-vpc: password"]),
        ("securenat", ["~ hub HYBRID: SecureNAT -> off"]),
        ("switch_stopped", ["~ L3 switch L3SW: start"]),
        ("openvpn", ["~ protocol OpenVPN: on -> off"]),
    ],
)
def test_plan_drift_is_repaired_exactly(drift: str, expected: list[str]) -> None:
    st = converged_server()
    hybrid = st.hubs["hybrid"]
    default = st.hubs["default"]
    sw = st.l3_switches["l3sw"]
    match drift:
        case "user":
            st = replace(st, hubs={**st.hubs, "default": replace(default, users=())})
        case "route":
            routes = tuple(r for r in sw.routes if r[0] != IPv4Network("192.168.21.0/24"))
            st = replace(st, l3_switches={"l3sw": replace(sw, routes=routes)})
        case "extra_user":
            users = (*hybrid.users, UserState("intruder"))
            st = replace(st, hubs={**st.hubs, "hybrid": replace(hybrid, users=users)})
        case "extra_hub":
            st = replace(st, hubs={**st.hubs, "extra": HubState("EXTRA")})
        case "listener":
            st = replace(st, listeners={**st.listeners, 443: True})
        case "password_changed":
            users = tuple(
                replace(u, note="hc-pw:old") if u.name == "hybrid-vpc" else u for u in hybrid.users
            )
            st = replace(st, hubs={**st.hubs, "hybrid": replace(hybrid, users=users)})
        case "securenat":
            st = replace(st, hubs={**st.hubs, "hybrid": replace(hybrid, securenat=True)})
        case "switch_stopped":
            st = replace(st, l3_switches={"l3sw": replace(sw, running=False)})
        case "openvpn":
            assert st.protocols is not None
            st = replace(st, protocols=replace(st.protocols, openvpn=True))
    assert names(st) == expected


def test_plan_switch_changes_are_bracketed_by_stop_and_start() -> None:
    st = converged_server()
    sw = st.l3_switches["l3sw"]
    moved = ((sw.interfaces[0][0], IPv4Interface("192.168.1.248/24")), sw.interfaces[1])
    st = replace(st, l3_switches={"l3sw": replace(sw, interfaces=moved)})
    cmds = [c.name for c in commands(plan(SERVER, st))]
    assert cmds == ["RouterStop", "RouterIfDel", "RouterIfAdd", "RouterStart"]


def test_plan_removes_undesired_switch_before_undesired_hub() -> None:
    spec = ServerSpec(admin_password=SecretStr("a"), hubs=(Hub(name="KEEP"),), prune_hubs=True)
    st = NodeState(
        admin_password_set=True,
        listeners={5555: True},
        hubs={"keep": HubState("KEEP"), "old": HubState("OLD")},
        l3_switches={"sw": L3State("SW", True, (("OLD", IPv4Interface("10.9.0.1/24")),))},
        protocols=Protocols(),
    )
    assert names(st, spec) == ["- L3 switch SW", "- hub OLD"]
    # Pruning is an explicit opt-in: by default a hub or L3 switch the spec does not list is kept.
    assert names(st, spec.model_copy(update={"prune_hubs": False})) == []


def test_plan_password_note_depends_on_every_input() -> None:
    a = SecretStr("admin")
    base = password_note(a, "H", "u", SecretStr("p"))
    assert base == password_note(a, "h", "U", SecretStr("p"))  # SoftEther names ignore case
    assert base != password_note(a, "H", "u", SecretStr("q"))
    assert base != password_note(SecretStr("other"), "H", "u", SecretStr("p"))


def test_plan_bridge_fresh_creates_cascade_then_bridge_then_online() -> None:
    st = fixture_state("bridge_fresh_read", read_commands(BRIDGE), server=False)
    cmds = [c.name for c in commands(plan(BRIDGE, st))]
    assert cmds == [
        "ListenerDelete",
        "ListenerDelete",
        "ListenerDelete",
        "CascadeCreate",
        "CascadePasswordSet",
        "CascadeDetailSet",
        "BridgeCreate",
        "CascadeOnline",
        "ServerPasswordSet",
    ]
    assert all(c.touches_cascade for c in plan(BRIDGE, st) if "cascade" in c.summary)


def test_plan_bridge_cascade_target_change_goes_offline_set_online() -> None:
    st = converged_bridge()
    hub = st.hubs["bridge"]
    c = hub.cascades[0]
    moved = replace(c, server="198.51.100.9")
    st = replace(st, hubs={"bridge": replace(hub, cascades=(moved,))})
    ch = plan(BRIDGE, st)
    assert [c.name for c in commands(ch)] == ["CascadeOffline", "CascadeSet", "CascadeOnline"]
    assert ch[0].summary.startswith("~ cascade BRIDGE/HYBRID: destination 198.51.100.9:5555")


def test_plan_bridge_offline_cascade_is_brought_online_only() -> None:
    st = converged_bridge()
    hub = st.hubs["bridge"]
    off = replace(hub.cascades[0], status="Offline")
    st = replace(st, hubs={"bridge": replace(hub, cascades=(off,))})
    assert [c.name for c in commands(plan(BRIDGE, st))] == ["CascadeOnline"]


def test_plan_bridge_cascade_compression_is_turned_off() -> None:
    st = converged_bridge()
    hub = st.hubs["bridge"]
    on = replace(hub.cascades[0], compress=True)
    ch = plan(BRIDGE, replace(st, hubs={"bridge": replace(hub, cascades=(on,))}))
    assert [c.name for c in commands(ch)] == [
        "CascadeOffline",
        "CascadeCompressDisable",
        "CascadeOnline",
    ]
    assert ch[0].summary == "~ cascade BRIDGE/HYBRID: compression off"


def test_plan_new_user_carries_its_password_note_and_masks_secret() -> None:
    spec = ServerSpec(
        admin_password=SecretStr("adm"),
        hubs=(Hub(name="H", users=(User(name="u", password=SecretStr("pw-123")),)),),
    )
    st = NodeState(True, {5555: True}, {"h": HubState("H")}, protocols=Protocols())
    (change,) = plan(spec, st)
    create, setpw = change.commands
    assert (
        f"/NOTE:{password_note(spec.admin_password, 'H', 'u', SecretStr('pw-123'))}" in create.args
    )
    assert "pw-123" in setpw.render() and "pw-123" not in str(change) + str(setpw)


# PEM framing around arbitrary base64: only the decoded bytes matter (their SHA-1 is what
# SoftEther shows for a pinned certificate), so no real certificate is needed here.
PEM = """-----BEGIN CERTIFICATE-----
MIIBdzCCAR2gAwIBAgIUJ4nZ0b2V0T6yWm1cVbq3k5mQ2QIwCgYIKoZIzj0EAwIw
ETEPMA0GA1UEAwwGaGMtZml4MB4XDTI2MDEwMTAwMDAwMFoXDTM2MDEwMTAwMDAw
MFowETEPMA0GA1UEAwwGaGMtZml4MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE
-----END CERTIFICATE-----
"""


def test_plan_pins_the_server_certificate_and_detects_a_different_one() -> None:
    from softether.spec import cert_sha1
    from softether.vpncmd import FileIn

    pinned = reference_specs(server_address="198.51.100.1", server_cert=PEM)
    bridge = pinned.bridges["Hybrid-VPC"]
    st = converged_bridge()  # captured without a pinned certificate
    ch = plan(bridge, st)
    cmds = commands(ch)
    assert [c.name for c in cmds] == [
        "CascadeOffline",
        "CascadeServerCertSet",
        "CascadeServerCertEnable",
        "CascadeOnline",
    ]
    (cert,) = cmds[1].files_in
    assert cert == FileIn("HYBRID-server.pem", PEM, "/LOADCERT")
    assert cmds[1].render() == "CascadeServerCertSet HYBRID /LOADCERT:HYBRID-server.pem"
    sha = cert_sha1(PEM)
    assert f"pin server certificate SHA1 {sha[:12]}" in ch[0].summary
    hub = st.hubs["bridge"]
    done = replace(hub.cascades[0], verify_cert=True, cert_sha1=sha)
    assert plan(bridge, replace(st, hubs={"bridge": replace(hub, cascades=(done,))})) == ()
    other = replace(done, cert_sha1="0" * 40)
    assert plan(bridge, replace(st, hubs={"bridge": replace(hub, cascades=(other,))})) != ()
    # Unpinning turns verification off.
    assert [
        c.name
        for c in commands(
            plan(BRIDGE, replace(st, hubs={"bridge": replace(hub, cascades=(done,))}))
        )
    ] == [
        "CascadeOffline",
        "CascadeServerCertDisable",
        "CascadeOnline",
    ]


def test_plan_hub_set_offline_by_hand_is_drift() -> None:
    # Issue 15 #5: `Offline` on a hub left an empty plan (and a PASS for "configuration
    # matches") while nothing crossed the hub.
    out = vpncmd_output("bridge_converged_read", read_commands(BRIDGE))
    parsed = v.split_output(
        out.replace("Status,Online", "Status,Offline", 1), v.script(read_commands(BRIDGE))
    )
    state = parse_state(
        v.pair(read_commands(BRIDGE), parsed.replies),
        admin_password_set=parsed.password_prompted,
        server=False,
    )
    assert state.hub("BRIDGE") is not None and not state.hub("BRIDGE").online  # type: ignore[union-attr]
    changes = plan(BRIDGE, state)
    assert [c.summary for c in changes] == ["~ hub BRIDGE: online"]
    assert [str(c) for c in commands(changes)] == ["[BRIDGE] Online"]


def test_plan_cascade_refused_login_is_password_drift_on_both_ends() -> None:
    # Issue 15 #5: a user password changed on the server by hand: the note still matches,
    # the bridge's cascade reads "Error 9: User authentication failed." and nothing planned.
    bridge = converged_bridge()
    hub = bridge.hub("BRIDGE")
    assert hub is not None
    refused = replace(hub.cascades[0], status="Error 9: User authentication failed.")
    state = replace(bridge, hubs={"bridge": replace(hub, cascades=(refused,))})
    cmds = [c.name for c in commands(plan(BRIDGE, state))]
    assert cmds == ["CascadeOffline", "CascadePasswordSet", "CascadeOnline"]
    # The server re-sets the refused user's password (and note) when told which one.
    reset = plan(SERVER, converged_server(), frozenset({("hybrid", "hybrid-vpc")}))
    assert [c.summary for c in reset] == ["~ user HYBRID/hybrid-vpc: password"]
