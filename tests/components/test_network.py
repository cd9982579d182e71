"""HybridVpc and HybridVnet under mocks: every part-1 network parameter of the reference."""

from __future__ import annotations

import pytest

from components.offline import ProgramRun, Record
from topology import plan_routes

VPC = "aws:ec2/vpc:Vpc"
SUBNET = "aws:ec2/subnet:Subnet"
ROUTE = "aws:ec2/route:Route"
RT_ASSOC = "aws:ec2/routeTableAssociation:RouteTableAssociation"
ENI = "aws:ec2/networkInterface:NetworkInterface"
AZ_SUBNET = "azure-native:network:Subnet"
AZ_RT = "azure-native:network:RouteTable"
AZ_VNET = "azure-native:network:VirtualNetwork"
AZ_NSG = "azure-native:network:NetworkSecurityGroup"


def _in(run: ProgramRun, component_type: str, name: str, type_: str) -> list[Record]:
    return [r for r in run.under(run.one(component_type, name)) if r.type == type_]


def test_hybrid_vpc_has_both_cidr_blocks(dev: ProgramRun) -> None:
    assert dev.one(VPC, "Hybrid-VPC-vpc").input("cidrBlock") == "192.168.20.0/24"
    assoc = dev.one(
        "aws:ec2/vpcIpv4CidrBlockAssociation:VpcIpv4CidrBlockAssociation", "Hybrid-VPC-cidr-1"
    )
    assert assoc.input("cidrBlock") == "192.168.21.0/24"
    assert assoc.input("vpcId") == dev.one(VPC, "Hybrid-VPC-vpc").id


def test_hybrid_vpc_subnets_in_two_zones_after_the_secondary_block(dev: ProgramRun) -> None:
    subnets = {r.input("tags")["Name"]: r for r in _in(dev, "hybrid:aws:HybridVpc", "Hybrid-VPC", SUBNET)}
    assert {n: (r.input("cidrBlock"), r.input("availabilityZone")) for n, r in subnets.items()} == {
        "Hybrid-Subnet": ("192.168.20.0/24", "ap-northeast-1a"),
        "Hybrid-Subnet-Dammy": ("192.168.21.0/24", "ap-northeast-1c"),
    }
    assoc = dev.one(
        "aws:ec2/vpcIpv4CidrBlockAssociation:VpcIpv4CidrBlockAssociation", "Hybrid-VPC-cidr-1"
    )
    assert all(assoc.urn in r.dependencies for r in subnets.values())
    assert not any(r.input("mapPublicIpOnLaunch") for r in subnets.values())


def test_hybrid_vpc_route_table_is_on_both_subnets(dev: ProgramRun) -> None:
    table = dev.one("aws:ec2/routeTable:RouteTable", "Hybrid-VPC-rt")
    subnets = {r.id for r in _in(dev, "hybrid:aws:HybridVpc", "Hybrid-VPC", SUBNET)}
    assocs = _in(dev, "hybrid:aws:HybridVpc", "Hybrid-VPC", RT_ASSOC)
    assert {a.input("subnetId") for a in assocs} == subnets
    assert {a.input("routeTableId") for a in assocs} == {table.id}


@pytest.mark.parametrize("run_name", ["dev", "four_site"])
def test_hybrid_vpc_routes_every_remote_range_to_the_bridge_eni(run_name: str, request: pytest.FixtureRequest) -> None:
    run: ProgramRun = request.getfixturevalue(run_name)
    eni = run.one(ENI, "Hybrid-VPC-bridge-eni")
    table = run.one("aws:ec2/routeTable:RouteTable", "Hybrid-VPC-rt")
    routes = [r for r in _in(run, "hybrid:aws:HybridVpc", "Hybrid-VPC", ROUTE) if r.input("networkInterfaceId")]
    expected = [str(d) for d in plan_routes(run.stack.network).route_table("Hybrid-VPC").destinations]
    # Registration order under the mocks is not creation order: compare as sorted lists.
    assert sorted(r.input("destinationCidrBlock") for r in routes) == sorted(expected)
    assert {r.input("networkInterfaceId") for r in routes} == {eni.id}
    assert {r.input("routeTableId") for r in routes} == {table.id}
    # No route names an address: .1 of every subnet is the VPC router.
    assert not any(r.input("instanceId") or r.input("gatewayId") for r in routes)


def test_hybrid_vpc_reference_routes_reach_home_and_both_azure_prefixes(dev: ProgramRun) -> None:
    routes = _in(dev, "hybrid:aws:HybridVpc", "Hybrid-VPC", ROUTE)
    bridge = {r.input("destinationCidrBlock") for r in routes if r.input("networkInterfaceId")}
    assert bridge == {"192.168.1.0/24", "192.168.30.0/24", "192.168.31.0/24"}


def test_hybrid_vpc_default_route_goes_to_its_internet_gateway(dev: ProgramRun) -> None:
    igw = dev.one("aws:ec2/internetGateway:InternetGateway", "Hybrid-VPC-igw")
    route = dev.one(ROUTE, "Hybrid-VPC-rt-internet")
    assert route.input("destinationCidrBlock") == "0.0.0.0/0"
    assert route.input("gatewayId") == igw.id
    assert igw.input("vpcId") == dev.one(VPC, "Hybrid-VPC-vpc").id


def test_hybrid_vnet_has_both_prefixes_and_no_ddos_bastion_or_firewall(dev: ProgramRun) -> None:
    vnet = dev.one(AZ_VNET, "Hybrid-VNet-vnet")
    assert vnet.input("addressSpace") == {"addressPrefixes": ["192.168.30.0/24", "192.168.31.0/24"]}
    assert not vnet.input("enableDdosProtection")
    assert not vnet.input("ddosProtectionPlan")
    expensive = ("BastionHost", "DdosProtectionPlan", "AzureFirewall", "FirewallPolicy")
    assert not [r.type for r in dev.records if any(e in r.type for e in expensive)]


def test_hybrid_vnet_subnets_carry_the_route_table_and_nsg(dev: ProgramRun) -> None:
    table = dev.one(AZ_RT, "Hybrid-VNet-rt")
    nsg = dev.one(AZ_NSG, "Hybrid-VNet-nsg")
    vnet = dev.one(AZ_VNET, "Hybrid-VNet-vnet")
    subnets = {r.input("subnetName"): r for r in _in(dev, "hybrid:azure:HybridVnet", "Hybrid-VNet", AZ_SUBNET)}
    assert {n: r.input("addressPrefix") for n, r in subnets.items()} == {
        "Hybrid_Subnet": "192.168.30.0/24",
        "Hybrid_Subnet_Dammy": "192.168.31.0/24",
    }
    for r in subnets.values():
        assert r.input("routeTable") == {"id": table.id}
        assert r.input("networkSecurityGroup") == {"id": nsg.id}
        assert r.input("virtualNetworkName") == vnet.outputs["name"]


def test_hybrid_vnet_subnets_are_created_one_after_the_other(dev: ProgramRun) -> None:
    first = dev.one(AZ_SUBNET, "Hybrid-VNet-Hybrid_Subnet")
    second = dev.one(AZ_SUBNET, "Hybrid-VNet-Hybrid_Subnet_Dammy")
    assert first.urn in second.dependencies


def test_hybrid_vnet_delegates_only_the_app_subnet_to_app_service(dev: ProgramRun) -> None:
    assert dev.stack.app is not None
    delegated = {
        r.input("subnetName"): r.input("delegations")
        for r in dev.of_type(AZ_SUBNET)
        if r.input("delegations")
    }
    assert delegated == {
        dev.stack.app.subnet: [{"name": "app-service", "serviceName": "Microsoft.Web/serverFarms"}]
    }


@pytest.mark.parametrize(
    ("site", "hop", "destinations"),
    [
        ("Hybrid-VNet", "192.168.30.100", ["192.168.1.0/24", "192.168.20.0/24", "192.168.21.0/24", "192.168.40.0/24"]),
        ("Hybrid-VNet2", "192.168.40.100", ["192.168.1.0/24", "192.168.20.0/24", "192.168.21.0/24", "192.168.30.0/24", "192.168.31.0/24"]),
    ],
)
def test_hybrid_vnet_udr_next_hop_is_the_bridge_address(
    four_site: ProgramRun, site: str, hop: str, destinations: list[str]
) -> None:
    routes = four_site.one(AZ_RT, f"{site}-rt").input("routes")
    assert [r["addressPrefix"] for r in routes] == destinations
    assert {(r["nextHopType"], r["nextHopIpAddress"]) for r in routes} == {("VirtualAppliance", hop)}


def test_hybrid_vnet_reference_udr_matches_the_blog(dev: ProgramRun) -> None:
    routes = dev.one(AZ_RT, "Hybrid-VNet-rt").input("routes")
    assert {(r["addressPrefix"], r["nextHopIpAddress"]) for r in routes} == {
        ("192.168.1.0/24", "192.168.30.100"),
        ("192.168.20.0/24", "192.168.30.100"),
        ("192.168.21.0/24", "192.168.30.100"),
    }


def test_four_site_stack_builds_one_network_component_per_site(four_site: ProgramRun) -> None:
    kinds = ("hybrid:aws:HybridVpc", "hybrid:azure:HybridVnet")
    built = sorted((r.type, r.name) for r in four_site.records if r.type in kinds)
    assert built == sorted(
        (kinds[s.cloud == "azure"], s.name) for s in four_site.stack.network.sites
    )
    vnet2 = four_site.one(AZ_VNET, "Hybrid-VNet2-vnet")
    assert vnet2.input("addressSpace") == {"addressPrefixes": ["192.168.40.0/24"]}
