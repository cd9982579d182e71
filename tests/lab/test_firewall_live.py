"""The filters in a running lab: every `firewall:` check holds, and a rule taken out
of (or added to) one namespace's rendered set fails exactly the check that covers it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from cli.main import main
from components.firewall import ANYWHERE, VM_TABLE, Rule
from lab.firewall import Guard, apply, enforce, guards, verify, without
from lab.lab import Lab, open_lab
from lab.proc import in_ns, run

from .conftest import RunningLab, lab_fixture

pytestmark = pytest.mark.lab

APP = "Hybrid-VNet/Hybrid_Subnet_Dammy"
VPC_SSH = "firewall: Hybrid-VPC bridge: SSH from the operator 198.51.100.254 accepted"
VPC_HOME = "firewall: Hybrid-VPC -> home: SSH accepted (a path)"
VNET_HOME = "firewall: Hybrid-VNet -> home: SSH accepted (a path)"
HOME_APP = f"firewall: home -> {APP}: SSH refused (no path)"
APP_BRIDGES = f"firewall: {APP} -> the bridges' SSH (192.168.20.100, 192.168.30.100): refused"
MYSQL_30 = "firewall: database: MySQL 3306 from Hybrid-VNet 192.168.30.0/24 accepted"
MYSQL_31 = "firewall: database: MySQL 3306 from Hybrid-VNet 192.168.31.0/24 accepted"
VPC_STRANGER = (
    "firewall: Hybrid-VPC bridge: SSH from another internet address 198.51.100.253 refused"
)
DB_EGRESS = "firewall: database: starts no connection"


@pytest.fixture(scope="module")
def dev() -> Iterator[RunningLab]:
    yield from lab_fixture("dev")


@pytest.fixture
def lab(dev: RunningLab) -> Iterator[Lab]:
    lab = open_lab(dev.ref, dev.root)
    yield lab
    enforce(lab.stack, lab.layout)  # whatever a test changed, the stack's filters again


def _verify(lab: Lab) -> set[str]:
    ports = {site: n.admin_port for site, n in lab.nodes.items()}
    return {e.name for e, ok, _ in verify(lab.stack, lab.layout, ports) if not ok}


def _failed(lab: Lab, changed: Guard, key: str) -> set[str]:
    apply({**guards(lab.stack, lab.layout), key: changed})
    return _verify(lab)


def test_firewall_every_check_holds(lab: Lab) -> None:
    ports = {site: n.admin_port for site, n in lab.nodes.items()}
    results = verify(lab.stack, lab.layout, ports)
    for e, ok, detail in results:
        print(f"{'PASS' if ok else 'FAIL'}  {e.name}: {detail}")
    assert len(results) == 25  # with the app's private endpoint from the other sites (3)
    assert [e.name for e, ok, _ in results if not ok] == []


@pytest.mark.parametrize(
    ("key", "rule", "checks"),
    [
        ("vpn1", "ssh-operator", {VPC_SSH}),
        ("vpn1", "path-0", {VPC_HOME}),  # the VPC's subnets out through its bridge's SG
        ("vpn2", "path-1", {VNET_HOME}),
        # The App Service subnet's MySQL crosses the VNet's NSG on its way out.
        ("vpn2", "path-3", {MYSQL_31}),
        ("db", "mysql-0", {MYSQL_30}),
    ],
)
def test_firewall_rule_removed_fails_exactly_its_check(
    lab: Lab, key: str, rule: str, checks: set[str]
) -> None:
    g = guards(lab.stack, lab.layout)[key]
    assert _failed(lab, without(g, rule), key) == checks


def test_firewall_nsg_denies_removed_the_bridges_own_filter_still_holds(lab: Lab) -> None:
    g = guards(lab.stack, lab.layout)["vpn2"]
    # Azure's default then admits every hybrid range (the VirtualNetwork tag): the VM's
    # filter alone keeps the App Service subnet from the home LAN.
    assert _failed(lab, without(without(g, "deny-out"), "deny-in"), "vpn2") == set()


def test_firewall_bridge_vm_filter_removed_fails_exactly_what_only_it_holds(lab: Lab) -> None:
    vpn2 = lab.layout.ns("vpn2").name
    run(in_ns(vpn2, "nft", "delete", "table", "inet", VM_TABLE))
    # Within the VNet the NSG admits the App Service subnet (AllowVnetInBound): only the
    # bridge's own filter kept it from the bridge's SSH, and home from that subnet.
    assert _verify(lab) == {APP_BRIDGES, HOME_APP}


def test_firewall_ssh_opened_to_anyone_fails_exactly_the_strangers_check(lab: Lab) -> None:
    g = guards(lab.stack, lab.layout)["vpn1"]
    anyone = Rule("ssh-anyone", (ANYWHERE,), None, (22,), "SSH from anywhere")
    wide = replace(g, firewall=replace(g.firewall, ingress=(*g.firewall.ingress, anyone)))
    assert _failed(lab, wide, "vpn1") == {VPC_STRANGER}


def test_firewall_database_egress_opened_fails_exactly_the_egress_check(lab: Lab) -> None:
    g = guards(lab.stack, lab.layout)["db"]
    assert _failed(lab, replace(g, firewall=replace(g.firewall, egress=(ANYWHERE,))), "db") == {
        DB_EGRESS
    }


def test_firewall_checks_are_in_hybrid_lab_test(
    dev: RunningLab, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HYBRID_LAB_DIR", str(dev.root))
    assert main(["lab", "test", "--stack", dev.ref]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "  firewall: " in ln]
    assert len(lines) == 25
    assert all(ln.startswith("PASS  firewall: ") for ln in lines)
