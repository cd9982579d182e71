"""A lab per test: a home VPN server and an AWS bridge (real SoftEther, real sshd) in network
namespaces, an operator namespace running the SDK's dynamic-provider host, and the stack's
inputs as the program derives them. Everything is torn down by the finalizer, also on failure.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Interface
from pathlib import Path
from typing import Any

import pytest

from lab.node import Node, Testbed
from lab.proc import sh
from softether.derive import derive, secret_names
from softether.dynamic import node_props
from softether.spec import spec_to_dict
from topology import load_stack, plan_routes

from .harness import ProviderHost, provider_host

HOME, BRIDGE = "home-softether", "Hybrid-VPC-bridge-softether"
SITE = "Hybrid-VPC"
OPERATOR_ADDRESS = "198.51.100.9/24"


@dataclass
class Lab:
    testbed: Testbed
    home: Node
    aws: Node
    host: ProviderHost

    def secrets(self, generation: str, home_admin: str) -> dict[str, str]:
        """The stack's passwords: generated ones of `generation`, the home admin password
        from the stack secret (`homeAdminPassword`)."""
        net = load_stack("dev").network
        values = {n: f"lc-{self.testbed.run}-{generation}-{i}" for i, n in enumerate(secret_names(net))}
        return values | {f"admin/{net.home.name}": home_admin}

    def _target(self, node: Node) -> dict[str, Any]:
        return {
            "host": node.host,
            "port": 22,
            "user": "root",
            "host_key": node.host_key,
            "private_key": self.testbed.client_key,
            "connect_deadline_s": 30.0,
        }

    def specs(
        self, secrets: dict[str, str], server_cert: str | None, home_ready: bool, sites: tuple[str, ...] | None = None
    ) -> Any:
        """`sites`: the cloud sites the stack keeps (default: all of the reference's)."""
        net = load_stack("dev").network
        if sites is not None:
            net = net.model_copy(update={"sites": tuple(s for s in net.sites if s.name in sites)})
        return derive(
            net,
            plan_routes(net),
            secrets,
            server_address=self.home.host,
            restart_command=self.aws.restart_command,
            server_cert=server_cert,
            home_ready=home_ready,
        )

    def home_props(self, secrets: dict[str, str], sites: tuple[str, ...] | None = None) -> dict[str, Any]:
        spec = self.specs(secrets, None, True, sites).server
        return node_props(spec_to_dict(spec, reveal=True), self._target(self.home))

    def bridge_props(self, secrets: dict[str, str], machine: str = "vm-1") -> dict[str, Any]:
        """The bridge's inputs as the program derives them: the home server's certificate
        and the traffic check only once the home node exists in the stack."""
        home = self.host.state.get(HOME)
        cert = self.host.outputs(HOME)["certificate"] if home else None
        spec = self.specs(secrets, cert, home is not None).bridges[SITE]
        return node_props(spec_to_dict(spec, reveal=True), self._target(self.aws), machine)

    def replace_bridge_vm(self, name: str) -> Node:
        """The bridge VM rebuilt: the old one gone, a new one (new host key, fresh SoftEther)
        at the same public address."""
        old = self.aws
        old.stop()
        del self.testbed.nodes[old.name]
        self.aws = self.testbed.add(name, "bridge", str(old.address))
        # The lab's machines still hold the old VM's MAC for the address (a cloud's do not).
        for node in (self.testbed.nodes["op"], self.home):
            sh("ip", "-n", node.netns, "neigh", "flush", "all")
        return self.aws


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with Testbed(tmp_path / "lab") as bed:
        home = bed.add("home", "server", "198.51.100.1/24", lan_device="eth1")
        aws = bed.add("aws", "bridge", "198.51.100.2/24")
        # The operator's machine: runs the provider host, reaches the nodes' sshd over the
        # lab's internet (a namespace with an address and nothing else).
        op = Node("op", "bridge", f"hc-{bed.run}-op", tmp_path / "lab" / "op", IPv4Interface(OPERATOR_ADDRESS))
        bed.attach(op)
        with provider_host(op.netns, tmp_path) as host:
            yield Lab(bed, home, aws, host)
