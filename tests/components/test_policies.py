"""The network security policies, evaluated offline: each catches its violation, and the
program's own resources (reference and 4-site stacks) pass every policy."""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.offline import SECRET_SIG, SECRET_SIG_KEY, ProgramRun, plain, run_program
from policies import POLICIES, Resource, evaluate
from policies.security import policy_config
from tests.components.conftest import DEV, PINNED
from topology import load_stack

CONFIG = policy_config(load_stack("dev"))
SG = "aws:ec2/securityGroup:SecurityGroup"
NSG = "azure-native:network:NetworkSecurityGroup"
NODE = "pulumi-python:dynamic/softether:SoftEtherNode"
PINNED_CLOUD_CONFIG = (
    "#cloud-config\nssh_deletekeys: true\nssh_genkeytypes: [ed25519]\nssh_keys:\n"
    "  ed25519_private: |\n    -----BEGIN OPENSSH PRIVATE KEY-----\n    abc\n    -----END OPENSSH PRIVATE KEY-----\n"
    "  ed25519_public: ssh-ed25519 AAAA host\n"
)


def _secret(value: Any) -> dict[str, Any]:
    return {SECRET_SIG_KEY: SECRET_SIG, "value": value}


def _policies(type_: str, props: dict[str, Any]) -> set[str]:
    return {v.policy for v in evaluate([Resource(type_, "r", "urn:r", props)], CONFIG)}


def _resources(run: ProgramRun) -> list[Resource]:
    return [Resource(r.type, r.name, r.urn, r.inputs, r.parent) for r in run.records]


def _sg(protocol: str, port: int, cidr: str) -> dict[str, Any]:
    return {"ingress": [{"protocol": protocol, "fromPort": float(port), "toPort": float(port), "cidrBlocks": [cidr]}]}


def _nsg(port: str, source: str) -> dict[str, Any]:
    rule = {"direction": "Inbound", "access": "Allow", "protocol": "Tcp", "sourceAddressPrefix": source, "destinationPortRange": port}
    return {"securityRules": [rule]}


@pytest.mark.parametrize(
    ("type_", "props"),
    [
        (SG, _sg("tcp", 22, "0.0.0.0/0")),
        (SG, _sg("tcp", 5555, "0.0.0.0/0")),
        (SG, _sg("-1", 0, "0.0.0.0/0")),  # every port, 3306 included
        (NSG, _nsg("5000-6000", "*")),
        (NSG, _nsg("3306", "Internet")),
        ("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", {"ipProtocol": "tcp", "fromPort": 3306.0, "toPort": 3306.0, "cidrIpv4": "0.0.0.0/0"}),
    ],
)
def test_policy_no_open_admin_ports_catches_a_world_open_admin_port(type_: str, props: dict[str, Any]) -> None:
    assert "no-open-admin-ports" in _policies(type_, props)


@pytest.mark.parametrize(("type_", "props"), [(SG, _sg("tcp", 443, "0.0.0.0/0")), (NSG, _nsg("80", "*"))])
def test_policy_no_open_admin_ports_allows_other_ports(type_: str, props: dict[str, Any]) -> None:
    assert "no-open-admin-ports" not in _policies(type_, props)


@pytest.mark.parametrize(
    ("props", "caught"),
    [
        (_sg("tcp", 22, "198.51.100.0/24"), True),  # not the operator's range
        (_sg("-1", 0, "8.8.8.0/24"), True),  # every port from a stranger covers SSH
        (_sg("tcp", 22, "203.0.113.0/24"), False),  # the operator
        (_sg("tcp", 22, "203.0.113.128/25"), False),  # inside the operator's range
        (_sg("-1", 0, "192.168.1.0/24"), False),  # the home LAN: a hybrid range
        (_sg("tcp", 443, "198.51.100.0/24"), False),  # not SSH
    ],
)
def test_policy_ssh_only_from_operator_checks_every_source_of_port_22(props: dict[str, Any], caught: bool) -> None:
    assert ("ssh-only-from-operator" in _policies(SG, props)) is caught


def _nsg_to(source: str, destination: str, port: str = "*", access: str = "Allow") -> dict[str, Any]:
    rule = {"direction": "Inbound", "access": access, "protocol": "*", "sourceAddressPrefix": source,
            "destinationAddressPrefix": destination, "destinationPortRange": port}  # fmt: skip
    return {"securityRules": [rule]}


@pytest.mark.parametrize(
    ("type_", "props", "caught"),
    [
        (NSG, _nsg_to("192.168.31.0/24", "192.168.1.0/24"), True),  # the app subnet to home
        (NSG, _nsg_to("192.168.31.0/24", "192.168.1.0/25", "22"), True),  # a part of it, one port
        (NSG, _nsg_to("192.168.31.0/24", "*"), True),  # anywhere: home included
        (NSG, _nsg_to("*", "192.168.1.0/24"), True),  # from anyone: the app subnet included
        (NSG, _nsg_to("192.168.31.0/24", "192.168.20.0/24", "3306"), False),  # the database
        (NSG, _nsg_to("192.168.31.0/24", "192.168.1.0/24", access="Deny"), False),
        (NSG, _nsg_to("192.168.30.0/24", "192.168.1.0/24"), False),  # another subnet of the VNet
        (SG, _sg("-1", 0, "192.168.31.0/24"), True),  # an SG names no destination: every port
        (SG, _sg("tcp", 3306, "192.168.31.0/24"), False),  # one port: the VM's filter holds it
    ],
)
def test_policy_no_app_to_home_catches_a_rule_from_the_app_subnet_to_home(
    type_: str, props: dict[str, Any], caught: bool
) -> None:
    assert ("no-app-to-home" in _policies(type_, props)) is caught


def test_policy_no_app_to_home_catches_a_path_from_the_app_subnet_to_home_in_the_bridges_filter(
    tmp_path: Path, dev: ProgramRun
) -> None:
    """Issue 21 item 8: not only the SG/NSG rules, the flows in each bridge VM's nftables
    ruleset (its user data) too."""
    from policies.security import ruleset_accepts

    aws = dev.one("aws:ec2/instance:Instance", "Hybrid-VPC-bridge-vm")
    text = plain(aws.inputs["userData"])
    accepts = ruleset_accepts(text)
    assert (("192.168.31.0/24",), ("192.168.20.0/24", "192.168.21.0/24")) in accepts  # app -> database
    assert not [a for a in accepts if "192.168.31.0/24" in a[0] and "192.168.1.0/24" in a[1]]
    doc = yaml.safe_load(DEV.read_text())
    doc["config"]["hybrid-cloud:network"]["paths"] = [{"from": "Hybrid-VNet/Hybrid_Subnet_Dammy", "to": "home", "ports": [22]}]
    path = tmp_path / "Pulumi.open.yaml"
    path.write_text(yaml.safe_dump(doc))
    run = run_program(path, config=PINNED)
    found = {(v.policy, v.message) for v in evaluate(_resources(run), policy_config(run.stack))}
    for vm in ("Hybrid-VPC-bridge-vm", "Hybrid-VNet-bridge-vm"):
        assert (
            "no-app-to-home",
            f"{vm}: the bridge's forwarding filter (/etc/nftables.conf) accepts the App Service subnet"
            " (192.168.31.0/24) to a home range (192.168.1.0/24)",
        ) in found


@pytest.mark.parametrize(
    ("type_", "props", "caught"),
    [
        (SG, _sg("tcp", 5555, "203.0.113.0/24"), True),  # the operator's range is the internet
        (SG, _sg("tcp", 443, "198.51.100.7/32"), True),  # a fresh server's other listeners
        (SG, _sg("-1", 0, "8.8.8.0/24"), True),
        (NSG, _nsg("992", "Internet"), True),
        (NSG, _nsg("1000-2000", "*"), True),  # 1194
        (SG, _sg("tcp", 5555, "192.168.1.0/24"), False),  # the home LAN: a hybrid range
        (SG, _sg("-1", 0, "192.168.20.0/24"), False),
        (SG, _sg("tcp", 22, "203.0.113.0/24"), False),  # SSH from the operator
    ],
)
def test_policy_softether_not_from_internet_catches_a_softether_port_open_outside(
    type_: str, props: dict[str, Any], caught: bool
) -> None:
    assert ("softether-not-from-internet" in _policies(type_, props)) is caught


@pytest.mark.parametrize(
    ("props", "caught"),
    [
        ({"password": "hunter2hunter2"}, True),
        ({"password": _secret("hunter2hunter2")}, False),
        ({"siteConfig": {"appSettings": [{"name": "DB_PASSWORD", "value": "x"}]}}, True),
        ({"siteConfig": {"appSettings": [{"name": "DB_PASSWORD", "value": _secret("x")}]}}, False),
        ({"siteConfig": {"appSettings": [{"name": "DB_HOST", "value": "db"}]}}, False),
        ({"tags": {"note": "-----BEGIN OPENSSH PRIVATE KEY-----\nabc"}}, True),
        ({"userData": PINNED_CLOUD_CONFIG}, True),
        ({"userData": _secret(PINNED_CLOUD_CONFIG)}, False),
        ({"userData": "#cloud-config\npackages: [vim]\n"}, False),  # nothing secret in it
        ({"osProfile": {"customData": base64.b64encode(PINNED_CLOUD_CONFIG.encode()).decode()}}, True),
    ],
)
def test_policy_no_plain_secret_catches_plain_passwords_and_keys(props: dict[str, Any], caught: bool) -> None:
    assert ("no-plain-secret" in _policies("any:module:Type", props)) is caught


@pytest.mark.parametrize(
    ("type_", "props", "caught"),
    [
        ("aws:ec2/instance:Instance", {"userData": _secret(PINNED_CLOUD_CONFIG)}, False),
        ("aws:ec2/instance:Instance", {"userData": _secret("#cloud-config\npackages: [vim]\n")}, True),
        ("aws:ec2/instance:Instance", {}, True),
        ("aws:ec2/instance:Instance", {"userData": _secret(PINNED_CLOUD_CONFIG.replace("ssh_genkeytypes: [ed25519]", "ssh_genkeytypes: [ed25519, rsa]"))}, True),
        (
            "azure-native:compute:VirtualMachine",
            {"osProfile": _secret({"customData": base64.b64encode(PINNED_CLOUD_CONFIG.encode()).decode()})},
            False,
        ),
        ("azure-native:compute:VirtualMachine", {"osProfile": {"adminUsername": "x"}}, True),
        (NODE, {"target": _secret({"host": "h", "host_key": "ssh-ed25519 AAAA"})}, False),
        (NODE, {"target": _secret({"host": "h", "host_key": ""})}, True),
        (NODE, {"target": _secret({"host": "h"})}, True),
    ],
)
def test_policy_bridge_host_key_pinned_catches_a_vm_without_the_key(type_: str, props: dict[str, Any], caught: bool) -> None:
    assert ("bridge-host-key-pinned" in _policies(type_, props)) is caught


@pytest.mark.parametrize("run_name", ["dev", "four_site", "ha"])
def test_policies_pass_on_the_whole_program(run_name: str, request: pytest.FixtureRequest) -> None:
    run: ProgramRun = request.getfixturevalue(run_name)
    assert evaluate(_resources(run), policy_config(run.stack), POLICIES) == []


def test_policies_catch_the_bridge_ssh_rule_opened_to_the_world(dev: ProgramRun) -> None:
    resources = _resources(dev)
    i = next(i for i, r in enumerate(resources) if r.type == SG and r.name == "Hybrid-VPC-bridge-sg")
    props = copy.deepcopy(dict(resources[i].props))
    ssh = next(rule for rule in props["ingress"] if rule["protocol"] == "tcp")
    ssh["cidrBlocks"] = ["0.0.0.0/0"]
    resources[i] = Resource(SG, resources[i].name, resources[i].urn, props)
    found = {(v.policy, v.urn) for v in evaluate(resources, CONFIG)}
    assert found == {("no-open-admin-ports", resources[i].urn), ("ssh-only-from-operator", resources[i].urn)}


def test_policies_catch_user_data_made_plain(dev: ProgramRun) -> None:
    vm = dev.one("aws:ec2/instance:Instance", "Hybrid-VPC-bridge-vm")
    props = dict(vm.inputs, userData=plain(vm.inputs["userData"]))
    found = evaluate([Resource(vm.type, vm.name, vm.urn, props)], CONFIG)
    assert [(v.policy, v.message) for v in found] == [
        ("no-plain-secret", "Hybrid-VPC-bridge-vm: userData holds a secret as a plain value")
    ]


def test_policies_of_the_pack_are_unique_and_each_checks_something() -> None:
    names = [p.name for p in POLICIES]
    assert len(set(names)) == len(names)
    assert all(p.validate is not None or p.remediate is not None for p in POLICIES)
    assert {
        "no-open-admin-ports", "ssh-only-from-operator", "no-app-to-home", "softether-not-from-internet",
        "no-plain-secret", "bridge-host-key-pinned", "no-public-site", "storage-not-public",
    } <= set(names)  # fmt: skip
