"""A bridge pair (stacks/Pulumi.ha.yaml) under mocks: two SoftEther nodes per site, the routes
the failover controller moves owned by it alone, its cloud permissions, its cloud-init."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.azure import FAILOVER_ACTIONS
from components.offline import ProgramRun, Record, plain
from softether import derive as derive_module
from softether.derive import (
    FAILOVER_CONFIG,
    FAILOVER_LIB,
    FAILOVER_MODULE,
    FAILOVER_UNIT,
    failover_package,
    tap_mac,
    vip_mac,
)
from topology import load_stack, plan_routes

INSTANCE = "aws:ec2/instance:Instance"
ENI = "aws:ec2/networkInterface:NetworkInterface"
AWS_ROUTE = "aws:ec2/route:Route"
AWS_TABLE = "aws:ec2/routeTable:RouteTable"
VM = "azure-native:compute:VirtualMachine"
AZ_ROUTE = "azure-native:network:Route"
AZ_TABLE = "azure-native:network:RouteTable"
NODE = "pulumi-python:dynamic/softether:SoftEtherNode"


def _user_data(run: ProgramRun, node: str) -> str:
    """What the VM's cloud-init reads."""
    vm = next(vm for vm in run.stack.network.bridge_vms if vm.node == node)
    if run.stack.network.site(vm.site).cloud == "aws":
        return run.one(INSTANCE, f"{node}-bridge-vm").input("userData")
    return base64.b64decode(plain(run.one(VM, f"{node}-bridge-vm").inputs["osProfile"])["customData"]).decode()


def _files(run: ProgramRun, node: str) -> dict[str, str]:
    doc = yaml.safe_load(_user_data(run, node))
    return {f["path"]: f["content"] for f in doc["write_files"]}


def _failover(run: ProgramRun, node: str) -> dict[str, Any]:
    return json.loads(_files(run, node)[FAILOVER_CONFIG])


def _spec(run: ProgramRun, node: str) -> dict[str, Any]:
    return plain(run.one(NODE, f"{node}-bridge-softether").inputs["spec"])


def test_pair_each_bridge_is_its_own_softether_node(ha: ProgramRun) -> None:
    server = plain(run_server(ha).inputs["spec"])
    hybrid = next(h for h in server["hubs"] if h["name"] == "HYBRID")
    assert sorted(u["name"] for u in hybrid["users"]) == ["hybrid-vnet", "hybrid-vnet-b", "hybrid-vpc", "hybrid-vpc-b"]
    a, b = _spec(ha, "Hybrid-VPC"), _spec(ha, "Hybrid-VPC-b")
    assert [c["username"] for h in a["hubs"] for c in h["cascades"]] == ["hybrid-vpc"]
    assert [c["username"] for h in b["hubs"] for c in h["cascades"]] == ["hybrid-vpc-b"]
    assert (a["host_os"]["address"], b["host_os"]["address"]) == ("192.168.10.12/24", "192.168.10.13/24")
    # Two MACs on one hub, and the virtual address's a third: no L2 conflict.
    macs = {a["host_os"]["mac"], b["host_os"]["mac"], vip_mac("Hybrid-VPC")}
    assert macs == {tap_mac("Hybrid-VPC"), tap_mac("Hybrid-VPC-b"), vip_mac("Hybrid-VPC")} and len(macs) == 3
    assert a["admin_password"] != b["admin_password"]


def run_server(run: ProgramRun) -> Record:
    return next(r for r in run.of_type(NODE) if plain(r.inputs["spec"]).get("kind") == "server")


def test_pair_aws_bridges_are_in_two_zones(ha: ProgramRun) -> None:
    zones = []
    for node, address in (("Hybrid-VPC", "192.168.20.100"), ("Hybrid-VPC-b", "192.168.21.100")):
        eni = ha.one(ENI, f"{node}-bridge-eni")
        assert eni.input("privateIps") == [address] and eni.input("sourceDestCheck") is False
        subnet = next(r for r in ha.of_type("aws:ec2/subnet:Subnet") if r.id == eni.input("subnetId"))
        zones.append(subnet.input("availabilityZone"))
    assert zones == ["ap-northeast-1a", "ap-northeast-1c"]


def test_pair_azure_bridges_are_in_two_zones(ha: ProgramRun) -> None:
    assert [ha.one(VM, f"{n}-bridge-vm").input("zones") for n in ("Hybrid-VNet", "Hybrid-VNet-b")] == [["1"], ["2"]]


def _moved(run: ProgramRun) -> dict[tuple[str, str], set[str]]:
    """What the controllers move after a failover, from their own configs: (cloud, route
    table) -> the prefixes (AWS) or route names (Azure)."""
    out: dict[tuple[str, str], set[str]] = {}
    for vm in run.stack.network.bridge_vms:
        if vm.role is None:
            continue
        d = _failover(run, vm.node)["driver"]
        if d["kind"] == "aws":
            for table in d["route_table_ids"]:
                out.setdefault(("aws", table), set()).update(d["prefixes"])
        else:
            out.setdefault(("azure", d["route_table"]), set()).update(d["routes"])
    return out


def test_pair_no_pulumi_resource_holds_a_next_hop_the_controller_moves(ha: ProgramRun) -> None:
    """After a failover the controllers have changed exactly: the target of each AWS route
    they list, the next hop of each Azure route they list. The engine diffs a resource with
    its ignored inputs taken from the state: so every resource of the program that holds one
    of them ignores it (and nothing else of it), and none holds one another way (an inline
    route of a table)."""
    moved = _moved(ha)
    tables = {r.id: r for r in ha.of_type(AWS_TABLE)}
    assert {t for c, t in moved if c == "aws"} == set(tables)
    held: dict[tuple[str, str], set[str]] = {}
    for r in ha.of_type(AWS_ROUTE):
        key = ("aws", r.input("routeTableId"))
        if r.input("networkInterfaceId") is not None and r.input("destinationCidrBlock") in moved.get(key, ()):
            assert r.ignore_changes == ("networkInterfaceId",), r.name
            held.setdefault(key, set()).add(r.input("destinationCidrBlock"))
        else:
            assert r.ignore_changes == (), r.name  # the internet route stays Pulumi's
    for r in ha.of_type(AZ_ROUTE):
        key = ("azure", r.input("routeTableName"))
        assert r.input("routeName") in moved[key] and r.ignore_changes == ("nextHopIpAddress",), r.name
        held.setdefault(key, set()).add(r.input("routeName"))
    for t in ha.of_type(AZ_TABLE):
        # The table leaves its routes to the Route resources: an update of it would put
        # inline next hops back.
        assert t.input("routes") is None and t.ignore_changes == ("routes",)
    assert held == moved


def test_pair_routes_are_first_placed_on_bridge_a(ha: ProgramRun) -> None:
    eni_a = ha.one(ENI, "Hybrid-VPC-bridge-eni").id
    assert {r.input("networkInterfaceId") for r in ha.of_type(AWS_ROUTE) if r.input("networkInterfaceId")} == {eni_a}
    assert {r.input("nextHopIpAddress") for r in ha.of_type(AZ_ROUTE)} == {"192.168.30.100"}


def test_pair_single_bridge_routes_stay_pulumis(dev: ProgramRun) -> None:
    """Without a pair nothing moves a route: Pulumi owns every next hop, as before."""
    assert all(r.ignore_changes == () for r in dev.of_type(AWS_ROUTE))
    assert dev.of_type(AZ_ROUTE) == []
    assert all(r.ignore_changes == () and r.input("routes") for r in dev.of_type(AZ_TABLE))
    assert not dev.of_type("aws:iam/role:Role") and not dev.of_type("azure-native:authorization:RoleAssignment")
    for node in ("Hybrid-VPC", "Hybrid-VNet"):
        assert FAILOVER_CONFIG not in _files(dev, node)


def test_pair_aws_role_may_replace_routes_of_its_route_table_only(ha: ProgramRun) -> None:
    table = ha.one(AWS_TABLE, "Hybrid-VPC-rt")
    (policy,) = ha.of_type("aws:iam/rolePolicy:RolePolicy")
    statements = json.loads(policy.input("policy"))["Statement"]
    assert {(s["Action"], s["Resource"]) for s in statements} == {
        ("ec2:ReplaceRoute", table.outputs["arn"]),
        ("ec2:DescribeRouteTables", "*"),
    }
    (role,) = ha.of_type("aws:iam/role:Role")
    assert policy.input("role") == role.id
    trust = json.loads(role.input("assumeRolePolicy"))["Statement"]
    assert [s["Principal"] for s in trust] == [{"Service": "ec2.amazonaws.com"}]
    (profile,) = ha.of_type("aws:iam/instanceProfile:InstanceProfile")
    for node in ("Hybrid-VPC", "Hybrid-VPC-b"):
        assert ha.one(INSTANCE, f"{node}-bridge-vm").input("iamInstanceProfile") == profile.outputs["name"]
    assert profile.input("role") == role.outputs["name"]


def test_pair_azure_identity_may_write_routes_of_its_route_table_only(ha: ProgramRun) -> None:
    table = ha.one(AZ_TABLE, "Hybrid-VNet-rt")
    (role,) = ha.of_type("azure-native:authorization:RoleDefinition")
    assert [p["actions"] for p in role.input("permissions")] == [list(FAILOVER_ACTIONS)]
    assert role.input("roleType") == "CustomRole"
    grants = ha.of_type("azure-native:authorization:RoleAssignment")
    vms = [ha.one(VM, f"{node}-bridge-vm") for node in ("Hybrid-VNet", "Hybrid-VNet-b")]
    assert all(vm.input("identity") == {"type": "SystemAssigned"} for vm in vms)
    assert sorted(g.input("principalId") for g in grants) == sorted(vm.outputs["identity"]["principalId"] for vm in vms)
    assert {(g.input("scope"), g.input("roleDefinitionId"), g.input("principalType")) for g in grants} == {
        (table.id, role.id, "ServicePrincipal")
    }


def test_pair_cloud_init_delivers_the_controller(ha: ProgramRun) -> None:
    for node, me, peer, own, eni in (
        ("Hybrid-VPC", "a", "b", "192.168.10.12/24", "Hybrid-VPC-bridge-eni"),
        ("Hybrid-VPC-b", "b", "a", "192.168.10.13/24", "Hybrid-VPC-b-bridge-eni"),
    ):
        files = _files(ha, node)
        config = json.loads(files[FAILOVER_CONFIG])
        assert (config["me"], config["peer"], config["own_address"], config["vip"]) == (me, peer, own, "192.168.10.2/24")
        assert config["driver"]["network_interface_id"] == ha.one(ENI, eni).id
        assert config["probes"] == ["192.168.1.249"]
        unit = files[f"/etc/systemd/system/{FAILOVER_UNIT}"]
        assert f"python3 -m {FAILOVER_MODULE} {FAILOVER_CONFIG}" in unit and "Restart=always" in unit
        assert f"PYTHONPATH={FAILOVER_LIB}" in unit
        run = yaml.safe_load(_user_data(ha, node))["runcmd"]
        assert any(f"systemctl enable --now {FAILOVER_UNIT}" in " ".join(c) for c in run)
    vnet_b = _failover(ha, "Hybrid-VNet-b")["driver"]
    assert (vnet_b["next_hop_ip"], vnet_b["route_table"]) == ("192.168.30.101", "Hybrid-VNet-rt")


def test_pair_controller_package_comes_with_the_converge(ha: ProgramRun, dev: ProgramRun) -> None:
    """The package is the spec's (HostOsSpec.files, written over SSH), not the user data's:
    EC2 takes 16 KB of user data, and new controller code must not replace the VMs."""
    for node in ("Hybrid-VPC", "Hybrid-VPC-b", "Hybrid-VNet", "Hybrid-VNet-b"):
        files = [tuple(f) for f in _spec(ha, node)["host_os"].get("files", [])]
        assert files == [tuple(f) for f in failover_package()]
        assert all(path.startswith(f"{FAILOVER_LIB}/softether/failover/") for path, _ in files)
        assert not any(path.startswith(FAILOVER_LIB) for path in _files(ha, node))
        assert len(_user_data(ha, node).encode()) <= 16384
    # A single bridge's spec has no `files` at all: its digest is the one it had before pairs.
    assert "files" not in _spec(dev, "Hybrid-VPC")["host_os"]


def test_pair_aws_bridge_is_reached_through_the_other(ha: ProgramRun, dev: ProgramRun) -> None:
    """The active bridge forwards what home sends to the standby's own address onto the VPC:
    it enters the standby's ENI, so a pair's SG admits home (the lab found the standby's
    administration check unanswered); a single bridge's never sees home on its ENI."""

    def sources(run: ProgramRun, node: str) -> set[str]:
        sg = run.one("aws:ec2/securityGroup:SecurityGroup", f"{node}-bridge-sg")
        return {c for rule in sg.input("ingress") for c in rule["cidrBlocks"]}

    assert all("192.168.1.0/24" in sources(ha, n) for n in ("Hybrid-VPC", "Hybrid-VPC-b"))
    assert "192.168.1.0/24" not in sources(dev, "Hybrid-VPC")


def test_pair_package_goes_to_the_pairs_bridges_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """softether.derive puts every module of softether/failover/ in a pair's bridge specs."""
    (tmp_path / "__main__.py").write_text("print('main')\n")
    (tmp_path / "config.py").write_text("X = 1\n")
    (tmp_path / "notes.txt").write_text("not a module\n")
    monkeypatch.setattr(derive_module, "FAILOVER_SOURCE", tmp_path)
    for ref, paired in (("ha", True), ("dev", False)):
        net = load_stack(ref).network
        secrets = {n: "pw" for n in derive_module.secret_names(net)}
        specs = derive_module.derive(net, plan_routes(net), secrets)
        for vm in net.bridge_vms:
            host = specs.bridges[vm.node].host_os
            assert host is not None
            expected = (
                (f"{FAILOVER_LIB}/softether/failover/__main__.py", "print('main')\n"),
                (f"{FAILOVER_LIB}/softether/failover/config.py", "X = 1\n"),
            )
            assert host.files == (expected if paired else ())


def test_pair_bridges_answer_the_vpn_nodes_pings(ha: ProgramRun, dev: ProgramRun) -> None:
    """`hybrid status` pings every bridge from every VPN node. A pair's active bridge gets them
    on the vip's macvlan, not the tap; a standby on its NIC, forwarded by the active, and its
    replies go back through its own tunnel (the ha lab's status was DOWN for each of these):
    the VM's filter admits the nodes' pings on any interface and forwards them (and replies
    seen without their requests) to a pair's bridges; the SG / NSG admit the nodes."""
    rules = _files(ha, "Hybrid-VPC")["/etc/nftables.conf"]
    assert "    ip saddr @nodes icmp type echo-request accept" in rules.splitlines()
    assert (
        "ip saddr @nodes ip daddr { 192.168.20.100, 192.168.21.100, 192.168.30.100, 192.168.30.101 }"
        " icmp type { echo-request, echo-reply } accept"
    ) in rules
    single = _files(dev, "Hybrid-VPC")["/etc/nftables.conf"]
    assert '    iifname "tap_vpntap" ip saddr @nodes icmp type echo-request accept' in single.splitlines()
    assert "echo-reply" not in single
    sg = ha.one("aws:ec2/securityGroup:SecurityGroup", "Hybrid-VPC-b-bridge-sg")
    assert any("192.168.30.101/32" in r["cidrBlocks"] and r["protocol"] == "-1" for r in sg.input("ingress"))
    nsg = ha.one("azure-native:network:NetworkSecurityGroup", "Hybrid-VNet-nsg")
    (pings,) = [r for r in nsg.input("securityRules") if r["name"] == "vpn-node-pings"]
    assert pings["destinationAddressPrefixes"] == ["192.168.30.100/32", "192.168.30.101/32"]
    assert pings["priority"] < min(r["priority"] for r in nsg.input("securityRules") if r["access"] == "Deny")


def test_pair_bridge_hub_lets_the_virtual_mac_move_to_its_local_bridge() -> None:
    """SoftEther drops a local bridge's frames from a MAC another session of the hub sent
    within 13 s (the active's broadcasts reach the standby's hub through its cascade): a pair's
    bridge hub turns that check off, a single bridge's hub is left as it was."""
    for ref, paired in (("ha", True), ("dev", False)):
        net = load_stack(ref).network
        secrets = {n: "pw" for n in derive_module.secret_names(net)}
        specs = derive_module.derive(net, plan_routes(net), secrets)
        for vm in net.bridge_vms:
            (hub,) = specs.bridges[vm.node].hubs
            want = {"DisableCheckMacOnLocalBridge": 1} if paired else {}
            assert hub.ext_options == want
