"""Stack exports: the public facts a user needs, and never a password or a private key."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from components import program
from components.offline import ProgramRun, run_program
from topology import Stack

# Provider outputs that are secret material.
SECRET_OUTPUTS = {
    "random:index/randomPassword:RandomPassword": ("result",),
    "tls:index/privateKey:PrivateKey": ("privateKeyOpenssh", "privateKeyPem"),
}


def _secret_values(run: ProgramRun) -> set[str]:
    return {
        r.outputs[key]
        for type_, keys in SECRET_OUTPUTS.items()
        for r in run.of_type(type_)
        for key in keys
    }


# `hybrid status` reads the nodes' specs (their SoftEther passwords) from this one export;
# `wordpressAdmin` is WordPress's admin account (`pulumi stack output --show-secrets`).
SECRET_EXPORTS = {"status", "wordpressAdmin"}


def leaked(run: ProgramRun) -> Iterator[str]:
    """Export names whose value holds any private-key block; or a generated password, unless
    it is one of SECRET_EXPORTS and a Pulumi secret; or that is a secret without need."""
    secrets = _secret_values(run)
    assert secrets, "the program generates passwords and keys"
    for name, export in run.exports.items():
        text = json.dumps(export.value)
        wrongly_secret = export.secret != (name in SECRET_EXPORTS)
        in_clear = not export.secret and any(s in text for s in secrets)
        if "PRIVATE KEY" in text or wrongly_secret or in_clear:
            yield name


@pytest.mark.parametrize("run_name", ["dev", "four_site"])
def test_exports_hold_no_password_or_private_key(run_name: str, request: pytest.FixtureRequest) -> None:
    run: ProgramRun = request.getfixturevalue(run_name)
    assert list(leaked(run)) == []


def test_exports_leak_check_catches_an_exported_password() -> None:
    def build(stack: Stack) -> dict[str, Any]:
        net = program.build_network(stack)
        password = next(iter(net.secrets.passwords.values())).result
        return program.network_exports(stack.network, net) | {"oops": password, "key": net.secrets.operator_private_key}

    run = run_program("dev", build=build)
    assert sorted(leaked(run)) == ["key", "oops"]


def test_exports_give_addresses_ssh_commands_and_checks(dev: ProgramRun) -> None:
    bridges = dev.exports["bridges"].value
    assert {s: (b["cloud"], b["privateAddress"], b["transitAddress"]) for s, b in bridges.items()} == {
        "Hybrid-VPC": ("aws", "192.168.20.100", "192.168.10.2"),
        "Hybrid-VNet": ("azure", "192.168.30.100", "192.168.10.3"),
    }
    for b in bridges.values():
        assert b["ssh"] == f"ssh -i ~/.ssh/hybrid-cloud root@{b['publicIp']}"
    checks = dev.exports["checks"].value
    assert checks["home"] == ["ping -c 3 192.168.20.100  # Hybrid-VPC", "ping -c 3 192.168.30.100  # Hybrid-VNet"]
    assert checks["Hybrid-VNet"] == ["ping -c 3 192.168.1.249  # home", "ping -c 3 192.168.20.100  # Hybrid-VPC"]
    assert dev.exports["operatorPublicKey"].value.startswith("ssh-ed25519 ")
    assert dev.exports["routes"].value[0]["where"] == "aws:Hybrid-VPC route-table"


def test_exports_check_every_pair_of_sites(four_site: ProgramRun) -> None:
    checks = four_site.exports["checks"].value
    assert len(checks) == 4 and all(len(targets) == 3 for targets in checks.values())


def test_exports_status_names_every_node_with_its_pinned_key_and_spec(dev: ProgramRun) -> None:
    from softether.outputs import Outputs

    status = Outputs.model_validate({"status": dev.exports["status"].value}).status
    assert set(status.nodes) == {"home", "Hybrid-VPC", "Hybrid-VNet"}
    assert str(status.switch) == "192.168.10.1"
    assert {k: str(a) for k, a in status.hosts.items()} == {
        "home": "192.168.1.250",
        "Hybrid-VPC": "192.168.20.100",
        "Hybrid-VNet": "192.168.30.100",
    }
    vpc = status.nodes["Hybrid-VPC"]
    assert vpc.role == "bridge" and vpc.ssh.host_key and vpc.ssh.host_key.startswith("ssh-ed25519 ")
    assert str(vpc.private_address) == "192.168.20.100"
    assert vpc.spec["kind"] == "bridge" and "*" not in vpc.spec["admin_password"]
    assert status.nodes["home"].spec["kind"] == "server"
