"""PrivateMysql: Amazon RDS for MySQL reachable only over the hybrid network (blog part 2)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_random as random
from pulumi_aws import ec2, rds

from topology import Database, Topology

from .firewall import Firewall


@dataclass(frozen=True)
class PrivateMysqlArgs:
    """`subnets` are every subnet of the database's VPC site, by topology name; `firewall`:
    its security group's rules (components/firewall.py)."""

    config: Database
    network: Topology
    firewall: Firewall
    vpc_id: pulumi.Input[str]
    subnets: Mapping[str, ec2.Subnet]


class PrivateMysql(pulumi.ComponentResource):
    """A private RDS MySQL instance; `password` is a secret Output."""

    address: pulumi.Output[str]
    port: int
    db_name: str
    username: str
    password: pulumi.Output[str]

    def __init__(
        self, name: str, args: PrivateMysqlArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybrid:aws:PrivateMysql", name, None, opts)
        cfg = args.config
        site = args.network.site(cfg.site)
        child = pulumi.ResourceOptions(parent=self)
        region = site.region  # None: the provider's region (aws:region)

        # RDS refuses a subnet group that does not cover two availability zones, even for a
        # single-AZ instance: this is why the blog's "dummy" subnet exists.
        subnet_group = rds.SubnetGroup(
            f"{name}-subnets",
            description=f"{cfg.db_name} over every subnet of {site.name}",
            subnet_ids=[s.id for s in args.subnets.values()],
            region=region,
            opts=child,
        )
        # Only the sites that run a client may connect; no egress rule: the database starts no
        # connection (pulumi-aws removes the default allow-all egress when none is declared).
        security_group = ec2.SecurityGroup(
            f"{name}-sg",
            description=f"MySQL {cfg.port}/tcp from {', '.join(cfg.allowed_from)}",
            vpc_id=args.vpc_id,
            region=region,
            ingress=[
                ec2.SecurityGroupIngressArgs(
                    protocol="tcp",
                    from_port=cfg.port,
                    to_port=cfg.port,
                    cidr_blocks=[str(c) for r in args.firewall.ingress for c in r.sources],
                    description="hybrid sites over the SoftEther tunnels",
                )
            ],
            egress=[
                {"protocol": "-1", "from_port": 0, "to_port": 0, "cidr_blocks": [str(c)]}
                for c in args.firewall.egress
            ],
            opts=child,
        )
        # RDS rejects '/', '@', '"' and spaces in a master password, and the value travels
        # through App Service settings and shell-quoted WordPress config: letters and digits only.
        password = random.RandomPassword(f"{name}-password", length=32, special=False, opts=child)
        final_snapshot: pulumi.Output[str] | None = None
        if not cfg.skip_final_snapshot:
            # A fixed identifier would collide with the snapshot the previous teardown left.
            suffix = random.RandomString(
                f"{name}-snapshot-suffix", length=8, special=False, upper=False, opts=child
            )
            final_snapshot = pulumi.Output.format("{0}-final-{1}", name, suffix.result)
        instance = rds.Instance(
            f"{name}-instance",
            engine="mysql",
            region=region,
            engine_version=cfg.engine_version,
            instance_class=cfg.instance_class,
            allocated_storage=cfg.allocated_storage,
            storage_type="gp3",
            storage_encrypted=True,
            db_name=cfg.db_name,
            username=cfg.username,
            password=password.result,
            port=cfg.port,
            # A subnet group's id is its name (and known under mocks, where `name` is not).
            db_subnet_group_name=subnet_group.id,
            vpc_security_group_ids=[security_group.id],
            publicly_accessible=False,
            multi_az=cfg.multi_az,
            # The blog pins the instance next to the bridge, in the bridge subnet's zone. AWS
            # rejects an explicit zone for a Multi-AZ instance: it places the standby itself.
            availability_zone=None
            if cfg.multi_az
            else args.subnets[site.bridge.subnet].availability_zone,
            skip_final_snapshot=cfg.skip_final_snapshot,
            # `pulumi destroy` must finish: no deletion protection, automated backups go too.
            deletion_protection=False,
            delete_automated_backups=True,
            final_snapshot_identifier=final_snapshot,
            opts=child,
        )

        self.address = instance.address
        self.port = cfg.port
        self.db_name = cfg.db_name
        self.username = cfg.username
        self.password = pulumi.Output.secret(password.result)
        self.subnet_group = subnet_group
        self.security_group = security_group
        self.instance = instance
        self.register_outputs({"address": self.address})
