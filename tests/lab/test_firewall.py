"""lab.firewall without root: which namespaces are filtered, the nftables text, the probes."""

from __future__ import annotations

from ipaddress import IPv4Network

import pytest

from components.firewall import bridge_ruleset, firewall_rules
from lab.firewall import Guard, expectations, guards, lab_rules, render, without
from lab.layout import OPERATOR, STRANGER, build_layout, lab_id
from topology import load_stack

PORTS = {"Hybrid-VPC": 5555, "Hybrid-VNet": 5555}


def _lab():
    stack = load_stack("dev")
    return stack, build_layout(stack, "dev", lab_id("/run/hybrid-lab-test/dev"))


def test_guards_are_the_bridges_and_the_database_on_their_nics() -> None:
    stack, layout = _lab()
    gs = guards(stack, layout)
    assert {k: g.interfaces for k, g in gs.items()} == {
        "vpn1": ("eth0", "eth1"),
        "vpn2": ("eth0", "eth1"),
        "db": ("eth0",),
    }
    assert layout.db is not None and gs["db"].ns == layout.db.ns


def test_lab_rules_put_the_lab_operator_in_place_of_operator_cidr() -> None:
    stack, _ = _lab()
    cloud, lab = firewall_rules(stack), lab_rules(stack)
    for site in ("Hybrid-VPC", "Hybrid-VNet"):
        assert cloud.bridges[site].ingress[0].sources == (IPv4Network("203.0.113.0/24"),)
        assert lab.bridges[site].ingress[0].sources == (IPv4Network(f"{OPERATOR.ip}/32"),)
        assert lab.bridges[site].ingress[1:] == cloud.bridges[site].ingress[1:]
    assert lab.database == cloud.database


def test_render_aws_bridge_allows_operator_ssh_and_its_subnets_out_and_drops_the_rest() -> None:
    stack, layout = _lab()
    text = render(guards(stack, layout)["vpn1"])
    assert 'ip saddr { 198.51.100.254/32 } tcp dport { 22 } return comment "ssh-operator"' in text
    assert 'ip saddr { 192.168.20.0/24, 192.168.21.0/24 } return comment "path-0"' in text
    assert "203.0.113" not in text and "192.168.1.0/24" not in text and "192.168.31.0/24" not in text
    assert 'iifname { "eth0", "eth1" } jump ingress' in text
    assert text.count("    drop\n") == 2  # the end of ingress and of egress
    assert 'ip daddr 0.0.0.0/0 return comment "egress 0.0.0.0/0"' in text


def test_render_azure_bridge_is_the_nsg_then_azures_default_for_the_vnet_tag() -> None:
    stack, layout = _lab()
    lines = render(guards(stack, layout)["vpn2"]).splitlines()
    at = {name: next(i for i, ln in enumerate(lines) if f'comment "{name}"' in ln) for name in ("path-3", "deny-out", "deny-in", "the cloud's default")}
    assert at["path-3"] < at["deny-out"] < at["deny-in"] < at["the cloud's default"]
    assert lines[at["deny-out"]].strip().startswith("ip saddr { 192.168.30.0/24, 192.168.31.0/24 } ip daddr { 192.168.1.0/24,")
    assert " drop comment " in lines[at["deny-in"]]


def test_bridge_vm_filter_is_the_cloud_inits_text_in_a_table_of_its_own() -> None:
    stack, _ = _lab()
    text = bridge_ruleset(stack)
    assert "table inet hybrid_paths {" in text and "hybrid_firewall" not in text


def test_render_database_has_no_egress_rule() -> None:
    stack, layout = _lab()
    text = render(guards(stack, layout)["db"])
    assert "tcp dport { 3306 } return" in text
    assert "ip daddr" not in text
    assert 'oifname { "eth0" } jump egress' in text


def test_without_removes_exactly_one_rule_and_refuses_an_unknown_name() -> None:
    stack, layout = _lab()
    g: Guard = guards(stack, layout)["vpn1"]
    cut = without(g, "ssh-operator")
    assert [r.name for r in cut.firewall.ingress] == [r.name for r in g.firewall.ingress][1:]
    with pytest.raises(ValueError, match="rule: ssh-9 is not a rule of"):
        without(g, "ssh-9")


def test_expectations_show_every_rule_class_both_ways() -> None:
    stack, layout = _lab()
    es = expectations(stack, layout, PORTS)
    names = {e.name: e.accepted for e in es}
    for site in ("Hybrid-VPC", "Hybrid-VNet"):
        assert names[f"firewall: {site} bridge: SSH from the operator {OPERATOR.ip} accepted"]
        assert not names[
            f"firewall: {site} bridge: SSH from another internet address {STRANGER.ip} refused"
        ]
        assert not names[
            f"firewall: {site} bridge: nothing else from the internet (SoftEther 5555 refused)"
        ]
        assert names[f"firewall: home -> {site}: SSH accepted (a path)"]
        assert names[f"firewall: {site} -> home: SSH accepted (a path)"]
    assert not names["firewall: Hybrid-VPC -> Hybrid-VNet: SSH refused (no path)"]
    # The counter-examples of the App Service subnet: neither home nor a bridge's SSH.
    app = "Hybrid-VNet/Hybrid_Subnet_Dammy"
    assert not names[f"firewall: {app} -> home: SSH refused (no path)"]
    assert not names[f"firewall: {app} -> the bridges' SSH (192.168.20.100, 192.168.30.100): refused"]
    assert not any(n.startswith("firewall: Hybrid-VNet -> " + app) for n in names)  # within a site
    assert names["firewall: database: MySQL 3306 from Hybrid-VNet 192.168.31.0/24 accepted"]
    assert not names[
        "firewall: database: MySQL 3306 from the other sites refused (home, Hybrid-VPC)"
    ]
    assert not names["firewall: database: starts no connection"]
    assert all(e.probes for e in es)
    assert len(names) == len(es)


def test_layout_stranger_is_another_internet_address() -> None:
    _, layout = _lab()
    assert layout.stranger_ns != layout.operator_ns
    assert STRANGER.network == OPERATOR.network and STRANGER.ip != OPERATOR.ip
    assert any(lk.a_ns == layout.stranger_ns and lk.a_addr == STRANGER for lk in layout.links)


def test_expectations_reach_the_apps_private_endpoint_from_home_and_the_vpc() -> None:
    stack, layout = _lab()
    assert layout.endpoint is not None
    es = {e.name: e for e in expectations(stack, layout, PORTS)}
    ep = f"firewall: the other sites -> the app's private endpoint {layout.endpoint.address}:"
    web = es[f"{ep} HTTP 80 accepted (a path)"]
    assert web.accepted
    site = {h.address: h.site for h in layout.hosts}
    assert {site[p.source] for p in web.probes} == {"home", "Hybrid-VPC"}
    assert not es[f"{ep} SSH 22 refused (no path)"].accepted  # the VPC's path is the web only
