from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest

from softether import vpncmd as v
from softether.facts import FACTS, read_commands

from .helpers import fixture_state, reference_specs, vpncmd_output

SPECS = reference_specs()


def test_facts_fresh_server_reads_stock_state() -> None:
    st = fixture_state("server_fresh_read", read_commands(SPECS.server), server=True)
    assert st.admin_password_set is False  # vpncmd did not ask for a password
    assert st.listeners == {443: True, 992: True, 1194: True, 5555: True}
    assert list(st.hubs) == ["default"]
    assert st.hub("DEFAULT") is not None and st.hub("DEFAULT").users == ()  # type: ignore[union-attr]
    assert st.hub("HYBRID") is None  # "Hub HYBRID" failed: its replies are not DEFAULT's
    assert st.bridges == () and st.l3_switches == {}
    assert st.protocols is not None
    assert st.protocols.openvpn and st.protocols.sstp
    assert not (st.protocols.l2tp_ipsec or st.protocols.vpn_azure or st.protocols.vpn_over_dns)


def test_facts_converged_server_reads_every_object() -> None:
    st = fixture_state("server_converged_read", read_commands(SPECS.server), server=True)
    assert st.admin_password_set is True
    assert st.listeners == {5555: True}
    hybrid = st.hub("HYBRID")
    assert hybrid is not None
    assert {u.name for u in hybrid.users} == {"hybrid-vpc", "hybrid-vnet"}
    assert all(u.note.startswith("hc-pw:") for u in hybrid.users)
    assert hybrid.ext_options["DisableUdpAcceleration"] == 1
    assert hybrid.securenat is False
    assert [(b.hub, b.device, b.status) for b in st.bridges] == [("DEFAULT", "eth1", "Operating")]
    sw = st.l3_switches["l3sw"]
    assert sw.running
    assert set(sw.interfaces) == {
        ("DEFAULT", IPv4Interface("192.168.1.249/24")),
        ("HYBRID", IPv4Interface("192.168.10.1/24")),
    }
    assert (IPv4Network("192.168.21.0/24"), IPv4Address("192.168.10.2"), 1) in sw.routes
    assert len(sw.routes) == 4


def test_facts_bridge_reads_cascade_details_and_status() -> None:
    bridge = SPECS.bridges["Hybrid-VPC"]
    fresh = fixture_state("bridge_fresh_read", read_commands(bridge), server=False)
    assert fresh.protocols is None
    assert fresh.hub("BRIDGE") is not None and fresh.hub("BRIDGE").cascades == ()  # type: ignore[union-attr]
    st = fixture_state("bridge_converged_read", read_commands(bridge), server=False)
    hub = st.hub("BRIDGE")
    assert hub is not None
    c = hub.cascade("HYBRID")
    assert c is not None
    assert c.compress is False  # "Data Compression,Disable"
    assert (c.server, c.port, c.remote_hub, c.username, c.max_tcp) == (
        "198.51.100.1",
        5555,
        "HYBRID",
        "hybrid-vpc",
        1,
    )
    assert c.online
    assert st.listeners == {5555: True}
    assert [(b.hub, b.device) for b in st.bridges] == [("BRIDGE", "vpntap")]


def test_facts_one_table_drives_the_reads_and_the_parsing() -> None:
    # Every row of FACTS is read for some node (the server and a bridge between them), and
    # every command read is a row (parse_state picks each reply's parser from the same rows).
    bridge = SPECS.bridges["Hybrid-VPC"]
    server, bridged = read_commands(SPECS.server), read_commands(bridge)
    assert {c.name for c in server + bridged} == {f.command for f in FACTS}
    assert {(f.command, f.args) for f in FACTS if f.args} <= {(c.name, c.args) for c in server}
    server_only = {f.command for f in FACTS if f.scope in ("server", "switch")}
    assert not {c.name for c in bridged} & server_only


def test_facts_fixtures_answer_any_script_command_by_command() -> None:
    # Another script (here a few of the reads) needs no recapture: each command has its file.
    C = v.Command
    st = fixture_state(
        "server_converged_read", [C("HubList"), C("UserList", hub="HYBRID")], server=True
    )
    hybrid = st.hub("HYBRID")
    assert hybrid is not None and {u.name for u in hybrid.users} == {"hybrid-vpc", "hybrid-vnet"}
    # A new read is one missing file per scenario, named.
    with pytest.raises(AssertionError, match=r"no fixture server_converged_read/SessionList\.csv"):
        vpncmd_output("server_converged_read", [C("SessionList")])
