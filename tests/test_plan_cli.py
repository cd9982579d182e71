"""`hybrid plan`: the program under mocks from the command line, policies decide the exit code."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace

import pytest
import yaml

import components.firewall
from cli.main import main
from components.firewall import Firewall, bridge_sg
from tests.components.conftest import DEV
from topology import CloudSite, Stack


def test_plan_cli_dev_prints_the_tree_and_passes_every_policy(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--stack", "dev"]) == 0
    out = capsys.readouterr().out
    assert "hybrid:aws:Ec2Bridge Hybrid-VPC-bridge\n" in out
    # Children are indented under their parent, with their key inputs.
    assert re.search(r"\n  aws:ec2/networkInterface:NetworkInterface Hybrid-VPC-bridge-eni\n(      .*\n)*      privateIps=\[\"192.168.20.100\"\]\n", out)
    assert "      sourceDestCheck=false\n" in out
    assert "      userData=\"[secret]\"\n" in out
    assert "PRIVATE KEY" not in out
    assert "policy ssh-only-from-operator: ok\n" in out
    # Top-level components in a stable (sorted) order, whatever the registration order was.
    roots = [line.split(" ")[:2] for line in out.split("\n\n")[0].splitlines() if not line.startswith(" ")]
    assert roots == sorted(roots) and ["hybrid:home:HomeLan", "home"] in roots
    assert re.search(r"^plan dev: \d+ resources \(\d+ custom, \d+ components\), \d+ policies, 0 violations$", out, re.M)


def _ssh_to_the_world(fw: Firewall) -> Firewall:
    ssh = fw.ingress[0]
    opened = replace(ssh, sources=(ssh.sources[0].supernet(new_prefix=0),))
    return replace(fw, ingress=(opened, *fw.ingress[1:]))


def _softether_to_the_operator(fw: Firewall) -> Firewall:
    ssh = fw.ingress[0]
    return replace(fw, ingress=(*fw.ingress, replace(ssh, name="softether", ports=(5555,))))


@pytest.mark.parametrize(
    ("change", "failed", "violations"),
    [
        (
            _ssh_to_the_world,
            [
                "policy no-open-admin-ports: FAIL\n  Hybrid-VPC-bridge-sg: port 22 is open to 0.0.0.0/0",
                "policy ssh-only-from-operator: FAIL",
            ],
            2,
        ),
        (
            _softether_to_the_operator,
            [
                "policy softether-not-from-internet: FAIL\n  Hybrid-VPC-bridge-sg: SoftEther's port 5555"
                " is open to 203.0.113.0/24, outside the hybrid ranges"
            ],
            1,
        ),
    ],
)
def test_plan_cli_exits_1_when_a_policy_is_violated(
    change: Callable[[Firewall], Firewall],
    failed: list[str],
    violations: int,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def changed(stack: Stack, site: CloudSite) -> Firewall:
        return change(bridge_sg(stack, site))

    monkeypatch.setattr(components.firewall, "bridge_sg", changed)
    assert main(["plan", "--stack", "dev", "--quiet"]) == 1
    out = capsys.readouterr().out
    assert all(line in out for line in failed), out
    assert f"{violations} violations" in out.splitlines()[-1]


def test_plan_cli_refuses_a_stack_whose_paths_open_the_app_subnet_to_home(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = yaml.safe_load(DEV.read_text())
    doc["config"]["hybrid-cloud:network"]["paths"] = [{"from": "Hybrid-VNet/Hybrid_Subnet_Dammy", "to": "home"}]
    path = tmp_path / "Pulumi.open.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert main(["plan", str(path), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert (
        "policy no-app-to-home: FAIL\n"
        "  Hybrid-VNet-nsg: admits the App Service subnet (192.168.31.0/24) to a home range" in out
    )
    # And each bridge's forwarding filter carries the path (issue 21 item 8: the flows too).
    for vm in ("Hybrid-VPC-bridge-vm", "Hybrid-VNet-bridge-vm"):
        assert (
            f"  {vm}: the bridge's forwarding filter (/etc/nftables.conf) accepts the App Service"
            " subnet (192.168.31.0/24) to a home range (192.168.1.0/24)"
        ) in out
    assert "3 violations" in out.splitlines()[-1]


def test_plan_cli_bad_stack_is_one_line_per_problem(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "Pulumi.bad.yaml"
    bad.write_text("config:\n  hybrid-cloud:network:\n    operatorCidr: 203.0.113.0/24\n")
    assert main(["plan", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{bad}: network.transit: missing")
    assert "Traceback" not in err


def test_plan_cli_writes_the_policy_pack_config(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    path = tmp_path / "policy.json"
    assert main(["plan", "--stack", "dev", "--quiet", "--policy-config", str(path)]) == 0
    pack = json.loads(path.read_text())
    assert set(pack) == {"ssh-only-from-operator", "no-app-to-home", "softether-not-from-internet", "no-public-site"}
    assert pack["no-public-site"]["appAccess"] == "private"
    config = pack["ssh-only-from-operator"]
    assert config["operatorCidr"] == "203.0.113.0/24"
    assert "192.168.21.0/24" in config["hybridRanges"]
    assert (config["appRanges"], config["homeRanges"]) == (["192.168.31.0/24"], ["192.168.1.0/24"])
    assert "hybrid:aws:Ec2Bridge" not in capsys.readouterr().out  # --quiet: no tree


def test_plan_loads_no_ssh_stack_and_leaves_the_collector_as_it_found_it() -> None:
    """`hybrid plan` in a fresh interpreter: the program and the CLI's parser never import
    paramiko (only status, preflight and the provider's operations need SSH), and the
    evaluation's pause of the cyclic collector ends with the run (bench/plan_eval.py)."""
    import subprocess
    import sys

    code = (
        "import gc, sys\n"
        "from cli.main import main\n"
        "assert main(['plan', '--stack', 'dev', '--quiet']) == 0\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'paramiko'), gc.isenabled())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.splitlines()[-1] == "[] True"
