"""PrivateMysql under mocks: the blog's part-2 RDS parameters, defaults and overrides."""

from __future__ import annotations

import pytest

from components import program
from components.offline import ProgramRun, Record, is_secret, run_program
from topology import Stack

RDS = "aws:rds/instance:Instance"
SG = "aws:ec2/securityGroup:SecurityGroup"


def _rds(run: ProgramRun) -> Record:
    return run.one(RDS, "wordpress-db-instance")


@pytest.fixture(scope="module")
def options() -> ProgramRun:
    """The reference stack with every database option away from its default."""

    def build(stack: Stack) -> dict:
        assert stack.database is not None
        db = stack.database.model_copy(
            update={
                "multi_az": True,
                "skip_final_snapshot": False,
                "engine_version": "8.4.7",
                "instance_class": "db.t4g.small",
                "allowed_from": ("Hybrid-VNet", "home"),
            }
        )
        return program.build(stack.model_copy(update={"database": db}))

    return run_program("dev", build=build)


def test_private_mysql_is_one_component_owning_its_resources(dev: ProgramRun) -> None:
    component = dev.one("hybrid:aws:PrivateMysql", "wordpress-db")
    assert {r.name for r in dev.children(component)} == {
        "wordpress-db-subnets",
        "wordpress-db-sg",
        "wordpress-db-password",
        "wordpress-db-instance",
    }


def test_private_mysql_subnet_group_spans_both_vpc_subnets_in_two_zones(dev: ProgramRun) -> None:
    subnets = [
        dev.one("aws:ec2/subnet:Subnet", f"Hybrid-VPC-{n}")
        for n in ("Hybrid-Subnet", "Hybrid-Subnet-Dammy")
    ]
    group = dev.one("aws:rds/subnetGroup:SubnetGroup", "wordpress-db-subnets")
    assert sorted(group.input("subnetIds")) == sorted(s.id for s in subnets)
    assert {s.input("availabilityZone") for s in subnets} == {"ap-northeast-1a", "ap-northeast-1c"}
    assert _rds(dev).input("dbSubnetGroupName") == group.id


def test_private_mysql_reference_instance_matches_the_blog(dev: ProgramRun) -> None:
    rds = _rds(dev)
    assert rds.input("engine") == "mysql"
    assert rds.input("engineVersion") == "8.4"
    assert rds.input("instanceClass") == "db.t4g.micro"
    assert rds.input("dbName") == "wordpress"
    assert rds.input("username") == "wpadmin"
    assert rds.input("port") == 3306
    assert rds.input("publiclyAccessible") is False
    assert rds.input("multiAz") is False
    # Next to the bridge: Hybrid-Subnet's zone.
    assert rds.input("availabilityZone") == "ap-northeast-1a"


def test_private_mysql_teardown_settings_let_destroy_finish(dev: ProgramRun) -> None:
    rds = _rds(dev)
    assert rds.input("deletionProtection") is False
    assert rds.input("skipFinalSnapshot") is True
    assert rds.input("finalSnapshotIdentifier") is None
    assert rds.input("storageEncrypted") is True


def test_private_mysql_password_is_generated_alphanumeric_and_secret(dev: ProgramRun) -> None:
    generated = dev.one("random:index/randomPassword:RandomPassword", "wordpress-db-password")
    assert generated.input("special") is False
    assert generated.input("length") >= 16
    rds = _rds(dev)
    assert is_secret(rds.inputs["password"])
    assert rds.input("password") == generated.outputs["result"]


def test_private_mysql_security_group_opens_only_the_port_to_allowed_sites(dev: ProgramRun) -> None:
    sg = dev.one(SG, "wordpress-db-sg")
    [rule] = sg.input("ingress")
    assert (rule["protocol"], rule["fromPort"], rule["toPort"]) == ("tcp", 3306, 3306)
    assert rule["cidrBlocks"] == ["192.168.30.0/24", "192.168.31.0/24"]  # Hybrid-VNet only
    assert not sg.input("egress")
    assert sg.input("vpcId") == dev.one("aws:ec2/vpc:Vpc", "Hybrid-VPC-vpc").id
    assert _rds(dev).input("vpcSecurityGroupIds") == [sg.id]


def test_private_mysql_exports_the_private_host_never_the_password(dev: ProgramRun) -> None:
    host = dev.exports["databaseHost"]
    assert host.value == _rds(dev).outputs["address"]
    assert not host.secret
    password = dev.one("random:index/randomPassword:RandomPassword", "wordpress-db-password")
    assert all(password.outputs["result"] not in str(e.value) for e in dev.exports.values())


def test_private_mysql_options_override_the_defaults(options: ProgramRun) -> None:
    rds = _rds(options)
    assert rds.input("engineVersion") == "8.4.7"
    assert rds.input("instanceClass") == "db.t4g.small"
    assert rds.input("multiAz") is True
    # AWS places a Multi-AZ standby itself and rejects an explicit zone.
    assert rds.input("availabilityZone") is None


def test_private_mysql_keeps_a_uniquely_named_final_snapshot_when_asked(
    options: ProgramRun,
) -> None:
    rds = _rds(options)
    assert rds.input("skipFinalSnapshot") is False
    suffix = options.one("random:index/randomString:RandomString", "wordpress-db-snapshot-suffix")
    assert (suffix.input("special"), suffix.input("upper")) == (False, False)
    assert suffix.outputs["result"]
    assert rds.input("finalSnapshotIdentifier") == f"wordpress-db-final-{suffix.outputs['result']}"


def test_private_mysql_allows_every_range_of_every_listed_site(options: ProgramRun) -> None:
    # In the order of the paths to the database (components/firewall.py): each site of
    # allowedFrom (a site's zone leaves out the App Service subnet), then that subnet.
    [rule] = options.one(SG, "wordpress-db-sg").input("ingress")
    stack = options.stack.network
    assert set(rule["cidrBlocks"]) == {*map(str, stack.site("Hybrid-VNet").cidrs), *map(str, stack.home.cidrs)}
    assert rule["cidrBlocks"] == ["192.168.30.0/24", "192.168.1.0/24", "192.168.31.0/24"]
