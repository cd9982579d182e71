"""components.firewall: the one rule set every security group and NSG is created from."""

from __future__ import annotations

from ipaddress import IPv4Network

from components.firewall import ANYWHERE, database_ingress, firewall_rules
from components.offline import ProgramRun
from topology import load_stack

SG = "aws:ec2/securityGroup:SecurityGroup"
NSG = "azure-native:network:NetworkSecurityGroup"


def test_firewall_rules_bridge_ssh_from_operator_all_from_hybrid_out_anywhere() -> None:
    net = load_stack("dev").network
    fw = firewall_rules(load_stack("dev")).bridge
    assert [(r.source, r.protocol, r.port) for r in fw.ingress] == [
        (IPv4Network("203.0.113.0/24"), "tcp", 22),
        *((c, "all", None) for c in net.ranges.values()),
    ]
    assert fw.egress == (ANYWHERE,)


def test_firewall_rules_database_mysql_from_allowed_sites_no_egress() -> None:
    fw = firewall_rules(load_stack("dev")).database
    assert fw is not None
    assert [(str(r.source), r.protocol, r.port) for r in fw.ingress] == [
        ("192.168.30.0/24", "tcp", 3306),
        ("192.168.31.0/24", "tcp", 3306),
    ]  # Hybrid-VNet only
    assert fw.egress == ()


def test_database_ingress_keeps_site_order_without_repeats() -> None:
    stack = load_stack("dev")
    assert stack.database is not None
    db = stack.database.model_copy(update={"allowed_from": ("home", "Hybrid-VNet", "home")})
    rules = database_ingress(stack.network, db)
    assert [str(r.source) for r in rules] == [
        "192.168.1.0/24",
        "192.168.30.0/24",
        "192.168.31.0/24",
    ]
    assert len({r.name for r in rules}) == len(rules)


def test_firewall_rules_no_database_no_database_filter() -> None:
    stack = load_stack("dev")
    assert firewall_rules(stack.model_copy(update={"database": None})).database is None


def test_firewall_rules_are_what_components_create(dev: ProgramRun) -> None:
    rules = firewall_rules(dev.stack)
    assert rules.database is not None
    sg = dev.one(SG, "Hybrid-VPC-bridge-sg")
    assert [(r["protocol"], r["fromPort"], r["cidrBlocks"]) for r in sg.input("ingress")] == [
        ("tcp" if r.port else "-1", r.port or 0, [str(r.source)]) for r in rules.bridge.ingress
    ]
    assert [r["cidrBlocks"] for r in sg.input("egress")] == [[str(c)] for c in rules.bridge.egress]
    nsg = dev.one(NSG, "Hybrid-VNet-nsg")
    assert [(r["name"], r["sourceAddressPrefix"]) for r in nsg.input("securityRules")] == [
        (r.name, str(r.source)) for r in rules.bridge.ingress
    ]
    [mysql] = dev.one(SG, "wordpress-db-sg").input("ingress")
    assert mysql["cidrBlocks"] == [str(r.source) for r in rules.database.ingress]
    assert {mysql["fromPort"]} == {r.port for r in rules.database.ingress}
    assert not dev.one(SG, "wordpress-db-sg").input("egress")
