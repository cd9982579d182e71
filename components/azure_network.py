"""`HybridVnet`: an Azure site of the topology (the blog's Azure VNet)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_azure_native.network as network
import pulumi_azure_native.resources as resources

from topology import CloudSite, RouteTable, Topology

from .firewall import Ingress, bridge_ingress, cidr_slug

# Regional VNet Integration of an App Service needs its subnet delegated to this service.
APP_SERVICE_DELEGATION = "Microsoft.Web/serverFarms"


@dataclass(frozen=True)
class HybridVnetArgs:
    network: Topology
    site: CloudSite
    routes: RouteTable  # this site's table from the routing plan
    app_subnet: str | None = None  # delegated to Microsoft.Web/serverFarms


class HybridVnet(pulumi.ComponentResource):
    """Resource group, VNet with every prefix of the site, its subnets, one route table (UDR)
    and one NSG on every subnet. No Bastion, DDoS plan or firewall (cost).

    The UDR's next hop is the bridge's fixed private address (VirtualAppliance), known from
    the topology, so the routes are complete before the bridge exists.
    """

    resource_group: resources.ResourceGroup
    vnet: network.VirtualNetwork
    subnets: dict[str, network.Subnet]
    route_table: network.RouteTable
    security_group: network.NetworkSecurityGroup

    def __init__(self, name: str, args: HybridVnetArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("hybrid:azure:HybridVnet", name, None, opts)
        site, table = args.site, args.routes
        child = pulumi.ResourceOptions(parent=self)
        self.resource_group = resources.ResourceGroup(f"{name}-rg", location=site.region, opts=child)
        rg = self.resource_group.name
        self.vnet = network.VirtualNetwork(
            f"{name}-vnet",
            resource_group_name=rg,
            location=site.region,
            address_space={"address_prefixes": [str(c) for c in site.cidrs]},
            # The subnets are separate resources; without this every VNet update would
            # try to delete them.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["subnets"]),
        )
        self.route_table = network.RouteTable(
            f"{name}-rt",
            resource_group_name=rg,
            location=site.region,
            disable_bgp_route_propagation=True,
            routes=[
                {
                    "name": f"to-{cidr_slug(dest)}",
                    "address_prefix": str(dest),
                    "next_hop_type": "VirtualAppliance",
                    "next_hop_ip_address": str(table.bridge_address),
                }
                for dest in table.destinations
            ],
            opts=child,
        )
        self.security_group = network.NetworkSecurityGroup(
            f"{name}-nsg",
            resource_group_name=rg,
            location=site.region,
            security_rules=nsg_rules(bridge_ingress(args.network)),
            opts=child,
        )
        self.subnets = {}
        previous: list[pulumi.Resource] = []
        for s in site.subnets:
            delegated = s.name == args.app_subnet
            subnet = network.Subnet(
                f"{name}-{s.name}",
                subnet_name=s.name,
                resource_group_name=rg,
                virtual_network_name=self.vnet.name,
                address_prefix=str(s.cidr),
                route_table={"id": self.route_table.id},
                network_security_group={"id": self.security_group.id},
                delegations=(
                    [{"name": "app-service", "service_name": APP_SERVICE_DELEGATION}] if delegated else None
                ),
                # Azure rejects concurrent changes to subnets of one VNet
                # (AnotherOperationInProgress): create them one after the other.
                opts=pulumi.ResourceOptions(parent=self, depends_on=previous),
            )
            self.subnets[s.name] = subnet
            previous = [subnet]
        self.register_outputs({"vnetId": self.vnet.id, "routeTableId": self.route_table.id})


def nsg_rules(rules: tuple[Ingress, ...]) -> list[network.SecurityRuleArgsDict]:
    """Inbound allow rules in priority order; Azure's default rules deny the rest from the internet."""
    return [
        {
            "name": r.name,
            "priority": 100 + i,
            "direction": "Inbound",
            "access": "Allow",
            "protocol": "Tcp" if r.protocol == "tcp" else "*",
            "source_address_prefix": str(r.source),
            "source_port_range": "*",
            "destination_address_prefix": "*",
            "destination_port_range": "*" if r.port is None else str(r.port),
            "description": r.description,
        }
        for i, r in enumerate(rules)
    ]
