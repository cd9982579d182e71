from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from softether.derive import derive, secret_names
from softether.spec import spec_from_json
from topology import load_stack, plan_routes

from .helpers import reference_specs


def test_derive_names_every_secret_once() -> None:
    net = load_stack("dev").network
    names = secret_names(net)
    assert len(names) == len(set(names))
    assert names == (
        "admin/home",
        "admin/Hybrid-VPC",
        "admin/Hybrid-VNet",
        "user/DEFAULT/operator",
        "user/HYBRID/hybrid-vpc",
        "user/HYBRID/hybrid-vnet",
        "hub/DEFAULT",
        "hub/HYBRID",
    )
    with pytest.raises(KeyError, match="hub/HYBRID"):
        derive(net, plan_routes(net), {n: "x" for n in names[:-1]})


def test_derive_reference_server_matches_the_blog_with_corrections() -> None:
    server = reference_specs().server
    assert server.listeners == (5555,)
    assert [h.name for h in server.hubs] == ["DEFAULT", "HYBRID"]
    assert all(not h.securenat for h in server.hubs)
    # Hub-admin passwords are set (SoftEther would admit a blank one from localhost).
    assert all(h.password is not None and h.password.get_secret_value() for h in server.hubs)
    (sw,) = server.l3_switches
    assert {(str(i.hub), str(i.address)) for i in sw.interfaces} == {
        ("DEFAULT", "192.168.1.249/24"),
        ("HYBRID", "192.168.10.1/24"),
    }
    # The blog forgot 192.168.21.0/24 -> .2; the routing plan does not.
    assert (IPv4Network("192.168.21.0/24"), IPv4Address("192.168.10.2")) in {
        (r.network, r.gateway) for r in sw.routes
    }
    assert server.local_bridges[0].device == "eth1" and server.local_bridges[0].offloads_off


def test_derive_bridge_cascade_uses_the_servers_user_and_password() -> None:
    specs = reference_specs(server_address="198.51.100.1")
    server_users = {u.name: u.password for u in specs.server.hub("HYBRID").users}
    for site, bridge in specs.bridges.items():
        (c,) = bridge.cascades
        assert c.server == "198.51.100.1" and c.remote_hub == "HYBRID"
        assert c.password == server_users[c.username], site
        assert bridge.traffic_check is not None
        assert str(bridge.traffic_check.target) == "192.168.10.1"
    vnet = specs.bridges["Hybrid-VNet"].host_os
    assert vnet is not None and str(vnet.address) == "192.168.10.3/24"
    assert {str(r.network) for r in vnet.routes} == {
        "192.168.1.0/24",
        "192.168.20.0/24",
        "192.168.21.0/24",
    }


def test_derive_specs_round_trip_through_json_with_secrets_revealed_only_on_request() -> None:
    specs = reference_specs()
    for spec in (specs.server, *specs.bridges.values()):
        masked = spec.to_json()
        assert all(s not in masked for s in spec.secrets())
        assert spec_from_json(spec.to_json(reveal=True)) == spec
