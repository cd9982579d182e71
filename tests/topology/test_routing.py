"""The routing plan: golden files for the reference and the 4-site stack, plus the rules behind them."""

from __future__ import annotations

import json
import subprocess
import sys
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from topology import load_stack, plan_routes

HERE = Path(__file__).parent
FOUR_SITE = str(HERE.parent / "stacks" / "Pulumi.four-site.yaml")
N = IPv4Network


def test_routing_plan_matches_reference_golden():
    plan = plan_routes(load_stack("dev").network)
    assert plan.lines() == (HERE / "golden" / "dev-routes.txt").read_text().splitlines()


def test_routing_plan_matches_four_site_golden():
    plan = plan_routes(load_stack(FOUR_SITE).network)
    assert plan.lines() == (HERE / "golden" / "four-site-routes.txt").read_text().splitlines()


def test_routing_l3_switch_has_every_cloud_range_including_the_forgotten_one():
    sw = plan_routes(load_stack("dev").network).l3_switch
    routes = {(str(r.destination), str(r.gateway)) for r in sw.routes}
    assert routes == {
        ("192.168.20.0/24", "192.168.10.2"),
        ("192.168.21.0/24", "192.168.10.2"),  # the blog forgot this one
        ("192.168.30.0/24", "192.168.10.3"),
        ("192.168.31.0/24", "192.168.10.3"),
    }
    assert [(i.hub, str(i.address)) for i in sw.interfaces] == [
        ("DEFAULT", "192.168.1.249/24"),
        ("HYBRID", "192.168.10.1/24"),
    ]


def test_routing_route_tables_cover_both_subnets_and_target_the_bridge():
    plan = plan_routes(load_stack("dev").network)
    aws, azure = plan.route_table("Hybrid-VPC"), plan.route_table("Hybrid-VNet")
    assert aws.subnets == ("Hybrid-Subnet", "Hybrid-Subnet-Dammy")
    assert aws.bridge_address == IPv4Address("192.168.20.100")  # not .1, the VPC router
    assert aws.destinations == (N("192.168.1.0/24"), N("192.168.30.0/24"), N("192.168.31.0/24"))
    assert azure.subnets == ("Hybrid_Subnet", "Hybrid_Subnet_Dammy")
    assert azure.destinations == (N("192.168.1.0/24"), N("192.168.20.0/24"), N("192.168.21.0/24"))


def test_routing_bridge_os_routes_go_via_the_l3_switch_on_the_tap():
    bridge = plan_routes(load_stack("dev").network).bridge("Hybrid-VNet")
    assert str(bridge.tap_address) == "192.168.10.3/24"
    assert {(str(r.destination), str(r.via), r.device) for r in bridge.routes} == {
        ("192.168.1.0/24", "192.168.10.1", "tap_vpntap"),
        ("192.168.20.0/24", "192.168.10.1", "tap_vpntap"),
        ("192.168.21.0/24", "192.168.10.1", "tap_vpntap"),
    }


def test_routing_home_routes_cover_clouds_and_transit():
    plan = plan_routes(load_stack("dev").network)
    assert [str(r.destination) for r in plan.home_routes] == [
        "192.168.20.0/24",
        "192.168.21.0/24",
        "192.168.30.0/24",
        "192.168.31.0/24",
        "192.168.10.0/24",
    ]
    assert {str(r.via) for r in plan.home_routes} == {"192.168.1.249"}


@pytest.mark.parametrize("stack", ["dev", FOUR_SITE])
def test_routing_every_place_reaches_every_remote_range(stack: str):
    net = load_stack(stack).network
    plan = plan_routes(net)
    ranges = {s.name: set(s.cidrs) for s in net.sites} | {net.home.name: set(net.home.cidrs)}
    every = set().union(*ranges.values())
    for site in net.sites:
        remote = every - ranges[site.name]
        assert set(plan.route_table(site.name).destinations) == remote
        assert {r.destination for r in plan.bridge(site.name).routes} == remote
    cloud = every - ranges[net.home.name]
    assert {r.destination for r in plan.l3_switch.routes} == cloud
    assert {r.destination for r in plan.home_routes} == cloud | {net.transit.cidr}


def test_routing_four_site_stack_adds_the_extra_site_everywhere():
    plan = plan_routes(load_stack(FOUR_SITE).network)
    extra = N("192.168.40.0/24")
    assert extra in plan.route_table("Hybrid-VPC").destinations
    assert extra in plan.route_table("Hybrid-VNet").destinations
    assert extra in {r.destination for r in plan.bridge("Hybrid-VPC").routes}
    assert (extra, IPv4Address("192.168.10.4")) in {
        (r.destination, r.gateway) for r in plan.l3_switch.routes
    }
    assert extra in {r.destination for r in plan.home_routes}
    assert plan.route_table("Hybrid-VNet2").destinations == (
        N("192.168.1.0/24"),
        N("192.168.20.0/24"),
        N("192.168.21.0/24"),
        N("192.168.30.0/24"),
        N("192.168.31.0/24"),
    )


def test_routes_cli_prints_plan_and_json():
    text = subprocess.run(
        [sys.executable, "-m", "cli", "routes", "--stack", "dev"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert text.splitlines()[0].split() == [
        "aws:Hybrid-VPC",
        "route-table",
        "192.168.1.0/24",
        "->",
        "eni",
        "of",
        "bridge",
        "192.168.20.100",
    ]
    rows = json.loads(
        subprocess.run(
            [sys.executable, "-m", "cli", "routes", "--stack", "dev", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    )
    assert {
        "where": "home:L3SW route",
        "destination": "192.168.21.0/24",
        "next_hop": "192.168.10.2",
    } in rows
