"""`HybridVpc`: an AWS site of the topology (the blog's "Hybrid-VPC")."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws.ec2 as ec2

from topology import CloudSite, RouteTable

from .firewall import cidr_slug

INTERNET = "0.0.0.0/0"


@dataclass(frozen=True)
class HybridVpcArgs:
    site: CloudSite
    routes: RouteTable  # this site's table from the routing plan


class HybridVpc(pulumi.ComponentResource):
    """VPC with every CIDR block of the site, its subnets, an internet gateway (the bridge's
    public side) and one route table on every subnet.

    The routes to the other sites need the bridge's network interface, which exists only
    after the bridge: `route_via(eni_id)` adds them.
    """

    vpc: ec2.Vpc
    subnets: dict[str, ec2.Subnet]
    route_table: ec2.RouteTable
    internet_gateway: ec2.InternetGateway

    def __init__(self, name: str, args: HybridVpcArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("hybrid:aws:HybridVpc", name, None, opts)
        site = args.site
        self._args = args
        child = pulumi.ResourceOptions(parent=self)
        region = site.region
        self.vpc = ec2.Vpc(
            f"{name}-vpc",
            cidr_block=str(site.cidrs[0]),
            enable_dns_support=True,
            enable_dns_hostnames=True,
            region=region,
            tags={"Name": site.name},
            opts=child,
        )
        # A subnet in a secondary block can only be created once the block is associated.
        extra = [
            ec2.VpcIpv4CidrBlockAssociation(
                f"{name}-cidr-{i}", vpc_id=self.vpc.id, cidr_block=str(cidr), region=region, opts=child
            )
            for i, cidr in enumerate(site.cidrs[1:], start=1)
        ]
        self.subnets = {
            s.name: ec2.Subnet(
                f"{name}-{s.name}",
                vpc_id=self.vpc.id,
                cidr_block=str(s.cidr),
                availability_zone=s.zone,
                map_public_ip_on_launch=False,
                region=region,
                tags={"Name": s.name},
                opts=pulumi.ResourceOptions(parent=self, depends_on=extra),
            )
            for s in site.subnets
        }
        self.internet_gateway = ec2.InternetGateway(
            f"{name}-igw", vpc_id=self.vpc.id, region=region, tags={"Name": site.name}, opts=child
        )
        self.route_table = ec2.RouteTable(
            f"{name}-rt", vpc_id=self.vpc.id, region=region, tags={"Name": f"{site.name}-rt"}, opts=child
        )
        # The bridge's own outbound traffic (the cascade to the home server, package installs).
        ec2.Route(
            f"{name}-rt-internet",
            route_table_id=self.route_table.id,
            destination_cidr_block=INTERNET,
            gateway_id=self.internet_gateway.id,
            region=region,
            opts=child,
        )
        # Every subnet gets the table: the second one exists for RDS failover, which breaks
        # if it cannot reach the other sites.
        for subnet_name, subnet in self.subnets.items():
            ec2.RouteTableAssociation(
                f"{name}-rt-{subnet_name}",
                subnet_id=subnet.id,
                route_table_id=self.route_table.id,
                region=region,
                opts=child,
            )
        self.register_outputs({"vpcId": self.vpc.id, "routeTableId": self.route_table.id})

    def route_via(self, eni_id: pulumi.Input[str]) -> list[ec2.Route]:
        """Route every remote range of the site to the bridge's network interface.

        The target is the ENI, never an address: .1 of every subnet is the VPC router.
        """
        return [
            ec2.Route(
                f"{self._name}-rt-{cidr_slug(dest)}",
                route_table_id=self.route_table.id,
                destination_cidr_block=str(dest),
                network_interface_id=eni_id,
                region=self._args.site.region,
                opts=pulumi.ResourceOptions(parent=self),
            )
            for dest in self._args.routes.destinations
        ]

