"""An AWS site: `HybridVpc` (the blog's "Hybrid-VPC"), its `Ec2Bridge` (or a pair of them),
and `aws_site`, which wires them (the VPC's routes to the other sites target the bridge's
network interface; a pair's failover controller moves them, with `FailoverRole`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws.ec2 as ec2
import pulumi_aws.iam as iam

from softether.dynamic import SoftEtherNode
from topology import CloudSite, RouteTable
from topology.clouds import AWS

from .bridge import BridgeArgs, converge, user_data
from .firewall import cidr_slug

INTERNET = "0.0.0.0/0"
DEBIAN_AMI_OWNER = "136693071363"  # the Debian cloud team's AWS account
# The input of a moved route that the failover controller owns once the route exists.
MOVED_TARGET = "networkInterfaceId"


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

    args: HybridVpcArgs
    vpc: ec2.Vpc
    subnets: dict[str, ec2.Subnet]
    route_table: ec2.RouteTable
    internet_gateway: ec2.InternetGateway

    def __init__(self, name: str, args: HybridVpcArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("hybrid:aws:HybridVpc", name, None, opts)
        site = args.site
        self.args = args
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

        The target is the ENI, never an address: .1 of every subnet is the VPC router. With a
        bridge pair, `eni_id` is bridge a's: the first `pulumi up` places the routes there,
        and from then on their target is the failover controller's (ReplaceRoute): Pulumi
        ignores it, so neither a preview nor an up after a failover moves traffic back.
        """
        moved = [MOVED_TARGET] if self.args.routes.standby_address is not None else None
        return [
            ec2.Route(
                f"{self._name}-rt-{cidr_slug(dest)}",
                route_table_id=self.route_table.id,
                destination_cidr_block=str(dest),
                network_interface_id=eni_id,
                region=self.args.site.region,
                opts=pulumi.ResourceOptions(parent=self, ignore_changes=moved),
            )
            for dest in self.args.routes.destinations
        ]


class FailoverRole(pulumi.ComponentResource):
    """What a pair's failover controllers may do with their instances' role: replace routes
    in the site's route table and nothing else (ReplaceRoute is scoped to the table's ARN),
    and read route tables (DescribeRouteTables has no resource-level permission: "*")."""

    role: iam.Role
    profile: iam.InstanceProfile

    def __init__(self, name: str, vpc: HybridVpc, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("hybrid:aws:FailoverRole", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        site = vpc.args.site.name
        self.role = iam.Role(
            f"{name}-role",
            description=f"Failover controllers of the {site} bridges: move the site's routes",
            assume_role_policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
                    ],
                }
            ),
            tags={"Name": f"{site}-failover"},
            opts=child,
        )
        iam.RolePolicy(
            f"{name}-routes",
            role=self.role.id,
            policy=vpc.route_table.arn.apply(route_policy),
            opts=child,
        )
        self.profile = iam.InstanceProfile(f"{name}-profile", role=self.role.name, opts=child)
        self.register_outputs({"roleArn": self.role.arn})


def route_policy(route_table_arn: str) -> str:
    """The failover role's policy document: ReplaceRoute on this one route table."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Sid": "MoveTheSiteRoutes", "Effect": "Allow", "Action": "ec2:ReplaceRoute", "Resource": route_table_arn},
                {"Sid": "ReadRouteTables", "Effect": "Allow", "Action": "ec2:DescribeRouteTables", "Resource": "*"},
            ],
        }
    )


@dataclass(frozen=True)
class Ec2BridgeArgs:
    common: BridgeArgs  # what every bridge needs
    vpc: HybridVpc  # the site's network: the subnet, the VPC of the security group, the gateway
    failover: FailoverRole | None = None  # a pair's bridge: the role its controller acts with


class Ec2Bridge(pulumi.ComponentResource):
    """The AWS bridge: security group, ENI at the fixed address (src/dst check off), Elastic
    IP, Debian 12 instance. `eni` is the target of the VPC's routes."""

    security_group: ec2.SecurityGroup
    eni: ec2.NetworkInterface
    public_ip: pulumi.Output[str]
    instance: ec2.Instance
    softether: SoftEtherNode

    def __init__(self, name: str, args: Ec2BridgeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("hybrid:aws:Ec2Bridge", name, None, opts)
        vpc, common = args.vpc, args.common
        site, bridge = common.site, common.vm
        region = site.region
        child = pulumi.ResourceOptions(parent=self)
        size = site.bridge_size
        arch = AWS.architecture(size)
        tag = f"{bridge.node}-bridge"
        self.security_group = ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=vpc.vpc.id,
            description=f"SoftEther bridge of {site.name}: SSH from the operator, the site's paths out",
            # One entry per port: an SG rule is a port range. No destination: an SG names
            # none; the VM's own filter (cloud-init's nftables) holds each path to its own.
            ingress=[
                {
                    "description": r.description,
                    "protocol": "tcp" if port is not None else "-1",
                    "from_port": port or 0,
                    "to_port": port or 0,
                    "cidr_blocks": [str(c) for c in r.sources],
                }
                for r in common.firewall.ingress
                for port in r.ports or (None,)
            ],
            egress=[
                {"protocol": "-1", "from_port": 0, "to_port": 0, "cidr_blocks": [str(c)]}
                for c in common.firewall.egress
            ],
            region=region,
            tags={"Name": tag},
            opts=child,
        )
        self.eni = ec2.NetworkInterface(
            f"{name}-eni",
            subnet_id=vpc.subnets[bridge.subnet].id,
            private_ips=[str(bridge.private_address)],
            security_groups=[self.security_group.id],
            # The bridge forwards packets addressed to other sites.
            source_dest_check=False,
            region=region,
            tags={"Name": tag},
            opts=child,
        )
        eip = ec2.Eip(
            f"{name}-eip",
            domain="vpc",
            network_interface=self.eni.id,
            region=region,
            tags={"Name": tag},
            # An Elastic IP can only be associated once the VPC has its internet gateway.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[vpc.internet_gateway]),
        )
        self.public_ip = eip.public_ip
        ami = ec2.get_ami_output(
            owners=[DEBIAN_AMI_OWNER],
            most_recent=True,
            filters=[
                {"name": "name", "values": [f"debian-12-{'arm64' if arch == 'arm64' else 'amd64'}-*"]},
                {"name": "architecture", "values": [arch]},
            ],
            region=region,
            opts=pulumi.InvokeOutputOptions(parent=self),
        )
        self.instance = ec2.Instance(
            f"{name}-vm",
            ami=ami.id,
            instance_type=size,
            primary_network_interface={"network_interface_id": self.eni.id},
            user_data=user_data(common, self._driver(args)),
            user_data_replace_on_change=True,
            iam_instance_profile=args.failover.profile.name if args.failover else None,
            metadata_options={"http_tokens": "required", "http_endpoint": "enabled"},
            # topology.clouds.AWS.cpu_credits: why unlimited; `hybrid cost` prices the surplus.
            credit_specification={"cpu_credits": site.cpu_credits} if site.cpu_credits else None,
            region=region,
            tags={"Name": tag},
            # The lookup finds the newest Debian image; a newer one must not replace a running
            # bridge on the next `pulumi up` (`pulumi up --replace` takes it on purpose).
            # The primary ENI is a separate resource that outlives the instance: a replacement
            # can attach it only once the old instance is gone (InvalidNetworkInterface.InUse
            # with Pulumi's default create-before-delete).
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[eip], ignore_changes=["ami"], delete_before_replace=True
            ),
        )
        self.softether = converge(name, common, self, self.public_ip, self.instance, self.instance.id)
        self.register_outputs({"publicIp": self.public_ip, "eniId": self.eni.id})

    def _driver(self, args: Ec2BridgeArgs) -> pulumi.Output[dict[str, Any]] | None:
        """The failover controller's AWS driver config: the routes it moves, to this ENI."""
        if args.failover is None:
            return None
        site, table = args.common.site, args.vpc.args.routes
        region = site.region or pulumi.Config("aws").require("region")
        return pulumi.Output.all(args.vpc.route_table.id, self.eni.id).apply(
            lambda v: {
                "kind": "aws",
                "region": region,
                "route_table_ids": [v[0]],
                "prefixes": [str(d) for d in table.destinations],
                "network_interface_id": v[1],
                "endpoint": None,
            }
        )


def aws_site(args: list[BridgeArgs], routes: RouteTable) -> tuple[HybridVpc, list[Ec2Bridge]]:
    """The site's VPC and its bridge (or pair), the VPC's routes to the other sites via the
    (first) bridge's ENI; a pair's bridges get the role that lets them move the routes."""
    site = args[0].site
    vpc = HybridVpc(site.name, HybridVpcArgs(site, routes))
    role = FailoverRole(f"{site.name}-failover", vpc) if len(args) > 1 else None
    bridges = [Ec2Bridge(f"{a.vm.node}-bridge", Ec2BridgeArgs(a, vpc, role)) for a in args]
    vpc.route_via(bridges[0].eni.id)
    return vpc, bridges
