"""The lab's layout: derived from the stack alone, addresses the stack's own (pure, no root)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest

from components.firewall import allowed
from lab.layout import INTERNET, build_layout, lab_id, pick
from topology import load_stack, plan_routes

FOUR = "tests/stacks/Pulumi.four-site.yaml"


def _layout(ref: str = "dev"):
    return build_layout(load_stack(ref), ref, lab_id(f"/run/hybrid-lab/{ref}"))


def test_layout_namespaces_are_prefixed_and_unique() -> None:
    lay = _layout()
    names = [n.name for n in lay.namespaces]
    assert len(names) == len(set(names))
    assert all(n.startswith(f"hc-{lay.lab_id}-") for n in names)
    # Interface names must fit the kernel's 15 characters.
    assert all(len(i) <= 15 for lk in lay.links for i in (lk.a_if, lk.b_if))


def test_layout_lab_id_differs_between_lab_directories() -> None:
    assert lab_id("/run/hybrid-lab/dev") != lab_id("/tmp/x/dev")


def test_layout_one_host_per_subnet_plus_home() -> None:
    stack = load_stack("dev")
    lay = _layout()
    subnets = [(s.name, sub.name) for s in stack.network.sites for sub in s.subnets]
    assert [(h.site, h.subnet) for h in lay.hosts[1:]] == subnets
    for h in lay.hosts[1:]:
        cidr = stack.network.site(h.site).subnet(h.subnet).cidr
        assert h.address in cidr


def test_layout_db_at_the_blogs_rds_address_and_app_in_delegated_subnet() -> None:
    lay = _layout()
    assert lay.db is not None and lay.app is not None
    assert lay.db.address == IPv4Address("192.168.20.225")
    assert lay.app.address in IPv4Network("192.168.31.0/24")
    assert (lay.app.site, lay.app.subnet) == ("Hybrid-VNet", "Hybrid_Subnet_Dammy")


def test_layout_router_routes_are_the_cloud_route_table() -> None:
    stack = load_stack("dev")
    plan = plan_routes(stack.network)
    lay = _layout()
    for k, site in enumerate(stack.network.sites, start=1):
        rtr = lay.ns(f"rtr{k}")
        table = plan.route_table(site.name)
        assert {(r.destination, r.via) for r in rtr.routes} == {
            (d, table.bridge_address) for d in table.destinations
        }
        assert rtr.forwarding


def test_layout_home_host_routes_are_the_plans_home_routes() -> None:
    plan = plan_routes(load_stack("dev").network)
    lan = _layout().ns("lan0")
    assert {(r.destination, r.via) for r in lan.routes} == {
        (r.destination, r.via) for r in plan.home_routes
    }


def test_layout_public_addresses_only_in_the_documentation_range() -> None:
    lay = _layout(FOUR)
    publics = [n.public for n in lay.nodes]
    assert len({p.ip for p in publics}) == len(publics) == 4
    assert all(p.network == INTERNET for p in publics)


def test_layout_four_site_has_a_bridge_router_and_host_for_the_extra_vnet() -> None:
    lay = _layout(FOUR)
    assert {n.site for n in lay.nodes} == {"home", "Hybrid-VPC", "Hybrid-VNet", "Hybrid-VNet2"}
    assert [h.address for h in lay.hosts if h.site == "Hybrid-VNet2"] == [
        IPv4Address("192.168.40.10")
    ]


def test_pick_skips_cloud_reserved_and_taken_addresses() -> None:
    cidr = IPv4Network("192.168.50.0/29")  # .0-.3 reserved, .7 broadcast
    taken: set[IPv4Address] = {IPv4Address("192.168.50.4")}
    assert pick(cidr, 4, taken) == IPv4Address("192.168.50.5")
    assert pick(cidr, 225, taken) == IPv4Address("192.168.50.6")
    with pytest.raises(ValueError, match="no free host address"):
        pick(cidr, 4, taken)


def test_layout_pair_second_bridge_is_a_node_of_its_own() -> None:
    """stacks/Pulumi.ha.yaml (fails on main: no pair): `vpn<k>b` per paired site, its own
    public address and its private address on its own subnet's switch of the site router."""
    lay = _layout("ha")
    bridges = {n.name: n for n in lay.nodes if n.kind == "bridge"}
    assert set(bridges) == {"Hybrid-VPC", "Hybrid-VPC-b", "Hybrid-VNet", "Hybrid-VNet-b"}
    assert len({n.public for n in lay.nodes}) == len(lay.nodes)
    assert all(n.public.ip in INTERNET for n in lay.nodes)
    b = bridges["Hybrid-VPC-b"]
    assert (b.ns, b.site, str(b.private)) == (f"hc-{lay.lab_id}-vpn1b", "Hybrid-VPC", "192.168.21.100")
    (private,) = [lk for lk in lay.links if lk.a_ns == b.ns and lk.a_if == "eth1"]
    assert (private.b_ns, private.b_switch, str(private.a_addr)) == (lay.router("Hybrid-VPC").name, "sw1", "192.168.21.100/24")
    # Azure's pair shares a subnet: two links into one switch, two names.
    vnet = [lk for lk in lay.links if lk.b_ns == lay.router("Hybrid-VNet").name and lk.b_if.startswith("b")]
    assert sorted((lk.b_if, lk.b_switch) for lk in vnet) == [("b0", "sw0"), ("b0b", "sw0")]
    # The site router's routes start on bridge a, as the cloud's first `pulumi up` places them.
    assert {r.via for r in lay.router("Hybrid-VPC").routes} == {IPv4Address("192.168.20.100")}
    # No host of the lab takes a bridge's address.
    assert not {h.address for h in lay.hosts} & {n.private for n in bridges.values()}


def test_layout_app_endpoint_is_in_a_zone_home_reaches() -> None:
    """The app is reached at its private endpoint: the program's address (its subnet of the
    app's site, which a path lets home reach) on an interface of the app's namespace, alone
    (/32: the app's own connections keep leaving from the delegated subnet, which home does
    not reach)."""
    stack = load_stack("dev")
    lay = _layout()
    assert lay.app is not None and lay.endpoint is not None
    assert lay.endpoint.ns == lay.app.ns
    site = stack.network.site(lay.app.site)
    assert stack.app_endpoint is not None
    assert (lay.endpoint.subnet, lay.endpoint.address) == (
        stack.app_endpoint.subnet, stack.app_endpoint.address,
    )  # fmt: skip
    assert lay.endpoint.subnet == site.bridge.subnet
    assert lay.endpoint.address in site.subnet(site.bridge.subnet).cidr
    home = next(h.address for h in lay.hosts if h.site == stack.network.home.name)
    assert allowed(lay.paths, home, lay.endpoint.address, 80)
    assert not allowed(lay.paths, home, lay.app.address, 80)
    mine = [lk.a_addr for lk in lay.links if lk.a_ns == lay.app.ns]
    assert IPv4Interface(f"{lay.endpoint.address}/32") in mine
    taken = [a.ip for lk in lay.links for a in (lk.a_addr, lk.b_addr) if a is not None]
    assert taken.count(lay.endpoint.address) == 1
