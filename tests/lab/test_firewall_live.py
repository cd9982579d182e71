"""The cloud's firewall in a running lab: every `firewall:` check holds, and a rule taken out
of (or added to) one namespace's rendered set fails exactly the check that covers it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from ipaddress import IPv4Network

import pytest

from cli.main import main
from components.firewall import ANYWHERE, Ingress
from lab.firewall import Guard, apply, guards, verify, without
from lab.lab import Lab, open_lab

from .conftest import RunningLab, lab_fixture

pytestmark = pytest.mark.lab

VPC_SSH = "firewall: Hybrid-VPC bridge: SSH from the operator 198.51.100.254 accepted"
VPC_21 = "firewall: Hybrid-VPC bridge: all from the hybrid range 192.168.21.0/24 accepted"
VNET_31 = "firewall: Hybrid-VNet bridge: all from the hybrid range 192.168.31.0/24 accepted"
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
    apply(guards(lab.stack, lab.layout))  # whatever a test changed, the stack's rules again


def _failed(lab: Lab, changed: Guard, key: str) -> set[str]:
    apply({**guards(lab.stack, lab.layout), key: changed})
    ports = {site: n.admin_port for site, n in lab.nodes.items()}
    return {e.name for e, ok, _ in verify(lab.stack, lab.layout, ports) if not ok}


def _rule(g: Guard, source: str) -> str:
    return next(r.name for r in g.firewall.ingress if r.source == IPv4Network(source))


def test_firewall_every_check_holds(lab: Lab) -> None:
    ports = {site: n.admin_port for site, n in lab.nodes.items()}
    results = verify(lab.stack, lab.layout, ports)
    for e, ok, detail in results:
        print(f"{'PASS' if ok else 'FAIL'}  {e.name}: {detail}")
    assert len(results) == 15
    assert [e.name for e, ok, _ in results if not ok] == []


@pytest.mark.parametrize(
    ("key", "source", "checks"),
    [
        ("vpn1", "198.51.100.254/32", {VPC_SSH}),
        ("vpn1", "192.168.21.0/24", {VPC_21}),
        # The App Service subnet's MySQL crosses the VNet bridge's filter on its way out.
        ("vpn2", "192.168.31.0/24", {VNET_31, MYSQL_31}),
        ("db", "192.168.30.0/24", {MYSQL_30}),
    ],
)
def test_firewall_rule_removed_fails_exactly_its_check(
    lab: Lab, key: str, source: str, checks: set[str]
) -> None:
    g = guards(lab.stack, lab.layout)[key]
    assert _failed(lab, without(g, _rule(g, source)), key) == checks


def test_firewall_ssh_opened_to_anyone_fails_exactly_the_strangers_check(lab: Lab) -> None:
    g = guards(lab.stack, lab.layout)["vpn1"]
    anyone = Ingress("ssh-anyone", ANYWHERE, "tcp", 22, "SSH from anywhere")
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
    assert len(lines) == 15
    assert all(ln.startswith("PASS  firewall: ") for ln in lines)
