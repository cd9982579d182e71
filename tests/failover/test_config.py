"""The controller's configuration: valid input parses; each bad field is one line naming it."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest

from softether.failover.config import (
    AwsDriverConfig,
    AzureDriverConfig,
    ConfigError,
    LabDriverConfig,
    load,
    parse,
)

from .helpers import SAMPLE, sample


def test_config_parses_the_interface_sample():
    cfg = parse(SAMPLE)
    assert (cfg.me, cfg.peer, cfg.preferred) == ("a", "b", "a")
    assert cfg.probes == (IPv4Address("192.168.1.249"), IPv4Address("192.168.30.100"))
    assert isinstance(cfg.driver, AwsDriverConfig)
    assert cfg.driver.prefixes[0] == IPv4Network("192.168.1.0/24")
    assert cfg.state_file == Path("/run/hybrid-failover/state.json")


def test_config_parses_the_lab_and_azure_drivers():
    lab = parse(sample(driver={"kind": "lab", "netns": "hc-x-rtr1", "prefixes": ["192.168.1.0/24"], "via": "192.168.20.12"}))
    assert isinstance(lab.driver, LabDriverConfig) and lab.driver.via == IPv4Address("192.168.20.12")
    azure = parse(sample(driver={
        "kind": "azure", "subscription_id": "00000000-0000-0000-0000-000000000001",
        "resource_group": "hybrid-rg", "route_table": "hybrid-rt", "routes": ["to-home-0"],
        "next_hop_ip": "192.168.30.100", "endpoint": "http://127.0.0.1:8080",
    }))
    assert isinstance(azure.driver, AzureDriverConfig) and azure.driver.endpoint == "http://127.0.0.1:8080"


def _driver(**changes: Any) -> dict[str, Any]:
    return sample(driver={**SAMPLE["driver"], **changes})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (sample(me="c"), "me: 'c' is not one of a, b"),
        (sample(peer="a"), "peer: 'a' is this bridge's own name (me is 'a')"),
        (sample(own_address="192.168.10.12"), "own_address: '192.168.10.12' is not an IPv4 address with its prefix length (a.b.c.d/n)"),
        (sample(peer_address="192.168.11.13"), "peer_address: '192.168.11.13' is not another address of own_address's network 192.168.10.0/24"),
        (sample(vip="192.168.11.2/24"), "vip: '192.168.11.2/24' is not in own_address's network 192.168.10.0/24"),
        (sample(vip="192.168.10.13/24"), "vip: '192.168.10.13/24' is one of the bridges' own addresses"),
        (sample(vip_mac="03:48:43:00:00:02"), "vip_mac: '03:48:43:00:00:02' is not a unicast MAC address (02:48:43:00:00:02)"),
        (sample(probes=[]), "probes: [] is not a non-empty list"),
        (sample(probes=["192.168.1.249", "192.168.10.1"]), "probes[1]: '192.168.10.1' is on the transit network 192.168.10.0/24 (a probe must cross the tunnel)"),
        (sample(probes=["home"]), "probes[0]: 'home' is not an IPv4 address"),
        (sample(interval_s=0), "interval_s: 0 is not a number of seconds in [0.05, 60.0]"),
        (sample(fail_after=0), "fail_after: 0 is not a whole number >= 1"),
        (sample(recover_after=True), "recover_after: True is not a whole number >= 1"),
        (sample(preferred="c"), "preferred: 'c' is not one of a, b or null"),
        (sample(tap="a-very-long-interface-name"), "tap: 'a-very-long-interface-name' is not a network interface name (at most 15 characters)"),
        (sample(colour="red"), "colour: 'red' is not a known field"),
        (sample(driver={"kind": "gcp"}), "driver.kind: 'gcp' is not one of aws, azure, lab"),
        (_driver(route_table_ids=["rt-1"]), "driver.route_table_ids[0]: 'rt-1' is not an AWS route table id (rtb-...)"),
        (_driver(prefixes=["192.168.1.1/24"]), "driver.prefixes[0]: '192.168.1.1/24' is not an IPv4 prefix with no host bits (a.b.c.d/n)"),
        (_driver(network_interface_id="i-123"), "driver.network_interface_id: 'i-123' is not an AWS network interface id (eni-...)"),
        (_driver(endpoint="ftp://x"), "driver.endpoint: 'ftp://x' is not an http(s) URL or null"),
        ({k: v for k, v in SAMPLE.items() if k != "site"}, "site: missing"),
    ],
)
def test_config_rejects_a_bad_field_naming_it(data: dict[str, Any], message: str):
    with pytest.raises(ConfigError) as exc:
        parse(data)
    assert str(exc.value) == message


def test_config_load_names_the_file(tmp_path: Path):
    path = tmp_path / "failover.json"
    path.write_text(json.dumps(sample(fail_after=-1)))
    with pytest.raises(ConfigError, match=rf"^{path}: fail_after: -1 is not a whole number >= 1$"):
        load(path)
    path.write_text("{")
    with pytest.raises(ConfigError, match=rf"^{path}: not JSON"):
        load(path)
    path.write_text(json.dumps(SAMPLE))
    assert load(path).site == "Hybrid-VPC"


def test_config_main_refuses_a_bad_file_in_one_line(tmp_path: Path):
    import subprocess
    import sys

    path = tmp_path / "failover.json"
    path.write_text(json.dumps(sample(vip_mac="zz")))
    res = subprocess.run([sys.executable, "-m", "softether.failover", str(path)], capture_output=True, text=True, timeout=30, check=False)
    assert res.returncode == 2
    assert res.stderr == f"error: {path}: vip_mac: 'zz' is not a unicast MAC address (02:48:43:00:00:02)\n"
