"""The mocks harness itself: records, parents, secrets, config errors."""

from __future__ import annotations

import pulumi
import pytest

from components import program
from components.offline import (
    HybridMocks,
    ProgramRun,
    RecordingMonitor,
    is_secret,
    plain,
    run_program,
)
from topology import TopologyError


def test_harness_records_parent_of_each_child(dev: ProgramRun) -> None:
    vpc = dev.one("hybrid:aws:HybridVpc", "Hybrid-VPC")
    assert vpc.parent == ""
    names = {r.name for r in dev.children(vpc)}
    assert {"Hybrid-VPC-vpc", "Hybrid-VPC-igw", "Hybrid-VPC-rt"} <= names


def test_harness_plain_unwraps_nested_secrets() -> None:
    wire = {"a": [{"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "value": "s"}]}
    assert is_secret(wire["a"][0])
    assert plain(wire) == {"a": ["s"]}


def test_harness_bad_config_fails_before_any_resource(tmp_path) -> None:
    bad = tmp_path / "Pulumi.bad.yaml"
    bad.write_text(
        "config:\n  hybrid-cloud:network:\n    operatorCidr: 0.0.0.0/0\n"
    )
    with pytest.raises(TopologyError) as e:
        run_program(bad)
    assert any(p.startswith("network.transit: missing") for p in e.value.problems)


def test_program_run_stops_a_bad_stack_with_its_problems_and_no_resource() -> None:
    monitor = RecordingMonitor(HybridMocks())
    pulumi.runtime.set_mocks(monitor.mocks, project="hybrid-cloud", stack="bad", preview=False, monitor=monitor)
    pulumi.runtime.set_all_config({"hybrid-cloud:network": '{"operatorCidr": "0.0.0.0/0"}'})
    with pytest.raises(pulumi.RunError) as e:
        program.run()
    assert str(e.value).splitlines() == ["stack bad: network.transit: missing", "network.home: missing", "network.sites: missing"]
    assert monitor.records == []


def test_program_checks_subnet_zones_against_the_providers_region() -> None:
    # The program reads `aws:region` itself: a VPC moved to another region keeps its zones.
    with pytest.raises(TopologyError) as e:
        run_program("dev", config={"aws:region": "us-east-1"})
    assert e.value.problems == [
        f"network.sites[0].subnets[{i}].zone: ap-northeast-1{z} is not a zone of us-east-1 (the region set by aws:region)"
        for i, z in enumerate("ac")
    ]


def test_harness_private_sdk_names_live_in_one_adapter() -> None:
    """Only components/sdk_private.py reaches into the SDK's private runtime."""
    import re
    from pathlib import Path

    root = Path(__file__).parents[2]
    private = re.compile(r"_sync_await|rpc\._special_|settings\.(ROOT|SETTINGS)|rpc_manager")
    found = [
        str(p.relative_to(root))
        for package in ("components", "cli", "policies", "softether", "topology", "lab", "tests")
        for p in sorted((root / package).rglob("*.py"))
        if p.name != "sdk_private.py" and p != Path(__file__) and private.search(p.read_text())
    ]
    assert found == []
