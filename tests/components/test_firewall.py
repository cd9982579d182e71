"""components.firewall: the stack's paths, and every filter made from them (SG, NSG, RDS SG,
the bridge VM's nftables)."""

from __future__ import annotations

import os
import shutil
import subprocess
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
import yaml

from components.firewall import (
    ANYWHERE,
    allowed,
    bridge_ruleset,
    database_ingress,
    firewall_rules,
    flows,
)
from components.offline import ProgramRun, run_program
from tests.components.conftest import DEV, HOME_ADMIN, PINNED
from topology import Stack, load_stack
from topology.model import RULESET_FILE

SG = "aws:ec2/securityGroup:SecurityGroup"
NSG = "azure-native:network:NetworkSecurityGroup"
HOME_HOST = IPv4Address("192.168.1.10")
APP = IPv4Address("192.168.31.20")
DB = IPv4Address("192.168.20.225")
VPC_HOST, VNET_HOST = IPv4Address("192.168.21.10"), IPv4Address("192.168.30.10")
BRIDGES = (IPv4Address("192.168.20.100"), IPv4Address("192.168.30.100"))


def _nets(*cidrs: str) -> tuple[IPv4Network, ...]:
    return tuple(IPv4Network(c) for c in cidrs)


def with_paths(tmp_path: Path, paths: list[dict[str, object]]) -> Path:
    """The reference stack file with `network.paths` set."""
    doc = yaml.safe_load(DEV.read_text())
    doc["config"]["hybrid-cloud:network"]["paths"] = paths
    path = tmp_path / "Pulumi.paths.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_flows_default_home_both_ways_and_the_app_subnet_to_the_database_port_only() -> None:
    got = [(f.name, f.ports, f.why) for f in flows(load_stack("dev"))]
    assert got == [
        ("home -> Hybrid-VPC", None, "default: home <-> every site"),
        ("Hybrid-VPC -> home", None, "default: home <-> every site"),
        ("home -> Hybrid-VNet", None, "default: home <-> every site"),
        ("Hybrid-VNet -> home", None, "default: home <-> every site"),
        ("Hybrid-VNet -> database", (3306,), "database.allowedFrom"),
        ("Hybrid-VNet/Hybrid_Subnet_Dammy -> database", (3306,), "app: the database only"),
        ("Hybrid-VPC -> website", (80, 443), "app.access: private (its endpoint)"),
    ]
    vnet = flows(load_stack("dev"))[2].destination
    assert vnet.cidrs == _nets("192.168.30.0/24")  # the App Service subnet is a zone of its own


def test_allowed_the_app_subnet_reaches_the_database_port_and_nothing_else() -> None:
    fs = flows(load_stack("dev"))
    assert allowed(fs, APP, DB, 3306)
    assert not allowed(fs, APP, DB, 22)
    assert not allowed(fs, APP, HOME_HOST, 22) and not allowed(fs, APP, HOME_HOST, None)
    assert not any(allowed(fs, APP, b, 22) for b in BRIDGES)
    # Home and every site, both ways, every protocol; the clouds to each other only as said.
    assert allowed(fs, HOME_HOST, VPC_HOST, None) and allowed(fs, VNET_HOST, HOME_HOST, 5555)
    assert allowed(fs, HOME_HOST, BRIDGES[0], 22)
    assert not allowed(fs, HOME_HOST, APP, None)
    assert not allowed(fs, VPC_HOST, VNET_HOST, None) and not allowed(fs, VNET_HOST, VPC_HOST, 22)
    assert allowed(fs, VNET_HOST, DB, 3306)  # database.allowedFrom: Hybrid-VNet


ENDPOINT = IPv4Address("192.168.30.254")  # the dev stack's private endpoint (its default address)


def test_flows_private_site_reached_from_the_other_sites_at_its_endpoint_over_http_only() -> None:
    stack = load_stack("dev")
    assert stack.app_endpoint is not None and stack.app_endpoint.address == ENDPOINT
    fs = flows(stack)
    assert allowed(fs, VPC_HOST, ENDPOINT, 443) and allowed(fs, VPC_HOST, ENDPOINT, 80)
    assert not allowed(fs, VPC_HOST, ENDPOINT, 22) and not allowed(fs, VPC_HOST, ENDPOINT, None)
    assert not allowed(fs, VPC_HOST, VNET_HOST, 443)  # the endpoint's address only
    assert allowed(fs, HOME_HOST, ENDPOINT, 443)  # home: its default path to every site
    assert not allowed(fs, APP, ENDPOINT, 443)  # the app subnet still reaches the database only
    # The bridges' own filter carries it.
    assert 'ip daddr { 192.168.30.254/32 } tcp dport { 80, 443 } accept comment "Hybrid-VPC -> website"' in bridge_ruleset(stack)


def test_flows_public_site_has_no_endpoint_path() -> None:
    stack = load_stack("dev")
    assert stack.app is not None
    public = stack.model_copy(update={"app": stack.app.model_copy(update={"access": "public"})})
    assert public.app_endpoint is None
    assert [f for f in flows(public) if f.destination.label == "website"] == []


def test_bridge_sg_admits_ssh_from_the_operator_and_what_its_site_sends_out() -> None:
    fw = firewall_rules(load_stack("dev")).bridges["Hybrid-VPC"]
    assert [(r.sources, r.destinations, r.ports, r.allow) for r in fw.ingress] == [
        (_nets("203.0.113.0/24"), None, (22,), True),
        (_nets("192.168.20.0/24", "192.168.21.0/24"), None, None, True),
        (_nets("192.168.20.0/24", "192.168.21.0/24"), None, (80, 443), True),  # the private endpoint
    ]
    assert fw.egress == (ANYWHERE,) and fw.implicit == ()


def test_site_nsg_holds_each_path_of_the_site_then_denies_the_rest_between_sites() -> None:
    fw = firewall_rules(load_stack("dev")).bridges["Hybrid-VNet"]
    others = _nets("192.168.1.0/24", "192.168.10.0/24", "192.168.20.0/24", "192.168.21.0/24")
    vnet = _nets("192.168.30.0/24", "192.168.31.0/24")
    db = _nets("192.168.20.0/24", "192.168.21.0/24")
    assert [(r.name, r.sources, r.destinations, r.ports, r.allow) for r in fw.ingress] == [
        ("ssh-operator", _nets("203.0.113.0/24"), None, (22,), True),
        ("path-0", _nets("192.168.1.0/24"), _nets("192.168.30.0/24"), None, True),
        ("path-1", _nets("192.168.30.0/24"), _nets("192.168.1.0/24"), None, True),
        ("path-2", _nets("192.168.30.0/24"), db, (3306,), True),
        ("path-3", _nets("192.168.31.0/24"), db, (3306,), True),
        ("path-4", db, _nets("192.168.30.254/32"), (80, 443), True),  # the private endpoint
        ("deny-out", vnet, others, None, False),
        ("deny-in", others, vnet, None, False),
    ]
    # What Azure's AllowVnetInBound admits after them: the VirtualNetwork tag.
    assert set(fw.implicit) == set(load_stack("dev").network.ranges.values())


def test_firewall_rules_database_mysql_from_its_paths_no_egress() -> None:
    fw = firewall_rules(load_stack("dev")).database
    assert fw is not None
    assert [(r.sources, r.ports) for r in fw.ingress] == [
        (_nets("192.168.30.0/24"), (3306,)),  # database.allowedFrom: Hybrid-VNet
        (_nets("192.168.31.0/24"), (3306,)),  # the App Service subnet
    ]
    assert fw.egress == ()


def test_database_ingress_keeps_site_order_without_repeats() -> None:
    stack = load_stack("dev")
    assert stack.database is not None
    db = stack.database.model_copy(update={"allowed_from": ("home", "Hybrid-VNet", "home")})
    rules = database_ingress(stack.model_copy(update={"database": db}))
    assert [str(c) for r in rules for c in r.sources] == [
        "192.168.1.0/24",
        "192.168.30.0/24",
        "192.168.31.0/24",
    ]
    assert len({r.name for r in rules}) == len(rules)


def test_firewall_rules_no_database_no_database_filter_nor_path() -> None:
    stack = load_stack("dev")
    bare = stack.model_copy(update={"database": None, "app": None})
    assert firewall_rules(bare).database is None
    assert [f.name for f in flows(bare) if "database" in f.name] == []


def test_firewall_rules_are_what_components_create(dev: ProgramRun) -> None:
    rules = firewall_rules(dev.stack)
    assert rules.database is not None
    aws = rules.bridges["Hybrid-VPC"]
    sg = dev.one(SG, "Hybrid-VPC-bridge-sg")
    assert [(r["protocol"], r["fromPort"], r["cidrBlocks"]) for r in sg.input("ingress")] == [
        ("tcp" if r.ports else "-1", port, [str(c) for c in r.sources])
        for r in aws.ingress
        for port in r.ports or (0,)  # one SG rule per port
    ]
    assert [r["cidrBlocks"] for r in sg.input("egress")] == [[str(c)] for c in aws.egress]
    nsg = dev.one(NSG, "Hybrid-VNet-nsg").input("securityRules")
    azure = rules.bridges["Hybrid-VNet"]
    assert [(r["name"], r["access"], r["priority"]) for r in nsg] == [
        (r.name, "Allow" if r.allow else "Deny", 100 + i) for i, r in enumerate(azure.ingress)
    ]
    prefixes = [r.get("sourceAddressPrefixes") or [r["sourceAddressPrefix"]] for r in nsg]
    assert prefixes == [[str(c) for c in r.sources] for r in azure.ingress]
    [mysql] = dev.one(SG, "wordpress-db-sg").input("ingress")
    assert mysql["cidrBlocks"] == [str(c) for r in rules.database.ingress for c in r.sources]
    assert not dev.one(SG, "wordpress-db-sg").input("egress")


def test_nsg_admits_the_app_subnet_only_to_the_database_port(dev: ProgramRun) -> None:
    """Audit 2, finding 5: the bridges accepted everything from the App Service subnet."""
    nsg = dev.one(NSG, "Hybrid-VNet-nsg").input("securityRules")
    app = [
        r for r in nsg
        if r["access"] == "Allow" and "192.168.31.0/24" in (r.get("sourceAddressPrefixes") or [r["sourceAddressPrefix"]])
    ]
    assert [(r["destinationAddressPrefixes"], r["destinationPortRange"], r["protocol"]) for r in app] == [
        (["192.168.20.0/24", "192.168.21.0/24"], "3306", "Tcp")
    ]
    denies = [r for r in nsg if r["access"] == "Deny"]
    assert [r["name"] for r in denies] == ["deny-out", "deny-in"]
    assert max(r["priority"] for r in nsg if r["access"] == "Allow") < min(r["priority"] for r in denies)
    sg = dev.one(SG, "Hybrid-VPC-bridge-sg").input("ingress")
    assert not [r for r in sg if "192.168.31.0/24" in r["cidrBlocks"] or "192.168.1.0/24" in r["cidrBlocks"]]


def test_paths_of_the_stack_open_exactly_their_ports_in_each_filter(tmp_path: Path) -> None:
    run = run_program(
        with_paths(tmp_path, [{"from": "Hybrid-VPC", "to": "Hybrid-VNet/Hybrid_Subnet", "ports": [22, 443]}]),
        config=PINNED,
        secrets=HOME_ADMIN,
    )
    stack: Stack = run.stack
    fs = flows(stack)
    assert (fs[-1].name, fs[-1].ports, fs[-1].why) == (
        "Hybrid-VPC -> Hybrid-VNet/Hybrid_Subnet",
        (22, 443),
        "network.paths[0]",
    )
    assert allowed(fs, VPC_HOST, VNET_HOST, 443) and not allowed(fs, VPC_HOST, VNET_HOST, 80)
    assert not allowed(fs, VNET_HOST, VPC_HOST, 22)  # one direction
    sg = run.one(SG, "Hybrid-VPC-bridge-sg").input("ingress")
    assert [(r["protocol"], r["fromPort"]) for r in sg if r["cidrBlocks"] == ["192.168.20.0/24", "192.168.21.0/24"]] == [
        ("-1", 0),
        ("tcp", 80),  # the private endpoint (app.access: private)
        ("tcp", 443),
        ("tcp", 22),
        ("tcp", 443),
    ]
    nsg = run.one(NSG, "Hybrid-VNet-nsg").input("securityRules")
    [rule] = [r for r in nsg if r.get("destinationPortRanges") == ["22", "443"]]
    assert (rule["sourceAddressPrefixes"], rule["destinationAddressPrefix"], rule["destinationPortRanges"]) == (
        ["192.168.20.0/24", "192.168.21.0/24"],
        "192.168.30.0/24",
        ["22", "443"],
    )
    assert "tcp dport { 22, 443 } accept" in bridge_ruleset(stack)


def test_bridge_ruleset_forwards_only_the_flows_and_replaces_only_its_own_table() -> None:
    text = bridge_ruleset(load_stack("dev"))
    assert text.count("accept comment") == len(flows(load_stack("dev")))
    assert (
        'ip saddr { 192.168.31.0/24 } ip daddr { 192.168.20.0/24, 192.168.21.0/24 } tcp dport { 3306 } accept'
        in text
    )
    assert "type filter hook forward priority filter; policy drop;" in text
    assert "flush ruleset" not in text  # other tables (the lab's cloud filter) stay
    assert text.splitlines()[2:4] == ["table inet hybrid_paths", "delete table inet hybrid_paths"]


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nft"), reason="nft -c needs root")
def test_bridge_ruleset_is_valid_nftables() -> None:
    # `nft -c` checks against the kernel without committing, in a network namespace of its own.
    for stack in (load_stack("dev"), load_stack("tests/stacks/Pulumi.four-site.yaml")):
        p = subprocess.run(
            ["unshare", "-n", "nft", "-c", "-f", "-"],
            input=bridge_ruleset(stack),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert p.returncode == 0, p.stderr


def test_bridge_user_data_writes_the_ruleset_and_loads_it_first(dev: ProgramRun) -> None:
    vm = dev.one("aws:ec2/instance:Instance", "Hybrid-VPC-bridge-vm")
    doc = yaml.safe_load(vm.input("userData"))
    [entry] = [f for f in doc["write_files"] if f["path"] == RULESET_FILE]
    assert entry["content"] == bridge_ruleset(dev.stack)
    assert doc["runcmd"][0] == ["systemctl", "enable", "--now", "nftables.service"]
