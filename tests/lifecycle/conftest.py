"""A lab per test: a home VPN server (real SoftEther, real sshd), an AWS bridge that is a booted
machine (lab/vm.py: Debian 12, systemd, cloud-init from the program's own user data), an
operator namespace running the SDK's dynamic-provider host, and the stack's inputs as the
program makes them. Everything is torn down by the finalizer, also on failure.

What comes from the program (run under Pulumi's mocks with the lab's config, one run per stack
generation): the bridge VM's user data (its host key, the operator key it authorizes, the
install script), and each node's SSH target (user, key, deadlines); the lab only puts its own
addresses in. The SoftEther specs are derived with the lab's addresses, the home server's
real certificate and passwords of the generation, as the program derives them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Interface
from pathlib import Path
from typing import Any

import pytest

from components.offline import ProgramRun, plain, run_program
from lab.node import Node, Testbed
from lab.proc import sh
from lab.vm import VmNode, on_testbed
from softether.derive import derive, retiring, secret_kind, secret_names
from softether.dynamic import node_props
from softether.spec import spec_to_dict
from topology import load_stack, plan_routes

from .harness import ProviderHost, provider_host

HOME, BRIDGE = "home-softether", "Hybrid-VPC-bridge-softether"
SITE = "Hybrid-VPC"
NODE = "pulumi-python:dynamic/softether:SoftEtherNode"
INSTANCE = "aws:ec2/instance:Instance"
OPERATOR_ADDRESS = "198.51.100.9/24"
BRIDGE_ADDRESS = "198.51.100.2/24"
# The stack secrets that outlive a destroy (pulumi config set --secret).
ADMIN = "homeAdminFromStackSecret42"


@dataclass
class Lab:
    testbed: Testbed
    home: Node
    host: ProviderHost
    aws: VmNode | None = None
    booting: list[threading.Timer] = field(default_factory=list)

    def program(
        self, generation: str, *, pinned: bool = True, rotation: dict[str, int] | None = None
    ) -> ProgramRun:
        """The program of stack generation `generation` under the mocks, with the lab's config:
        the home server's host key pinned (or not yet), the admin password and the operator's
        key (the lab's client key) as stack secrets; `rotation`: `hybrid-cloud:rotation`."""
        config = {"hybrid-cloud:homeHostKey": self.home.host_key} if pinned else {}
        if rotation:
            config["hybrid-cloud:rotation"] = json.dumps(rotation)
        secrets = {"hybrid-cloud:homeAdminPassword": ADMIN, "hybrid-cloud:operatorKey": self.testbed.client_key}
        return run_program("dev", config=config, secrets=secrets, generation=generation)

    def secrets(self, generation: str, rotation: dict[str, int] | None = None) -> dict[str, str]:
        """The stack's passwords: generated ones of `generation`, the home admin password from
        the stack secret (`homeAdminPassword`); `rotation`: a kind with a counter gets new
        ones, as the program's keepers make pulumi-random generate them."""
        net = load_stack("dev").network
        values = {
            n: f"lc-{self.testbed.run}-{generation}-{i}" + (f"r{r}" if (r := (rotation or {}).get(secret_kind(net, n))) else "")
            for i, n in enumerate(secret_names(net))
        }
        return values | {f"admin/{net.home.name}": ADMIN}

    def _target(self, run: ProgramRun, node: str, host: str) -> dict[str, Any]:
        """The node's SSH target as the program registers it, at the lab's address."""
        return plain(run.one(NODE, node).inputs["target"]) | {"host": host, "port": 22}

    def specs(
        self,
        secrets: dict[str, str],
        server_cert: str | None,
        home_ready: bool,
        sites: tuple[str, ...] | None = None,
        certificate_rotation: int = 0,
    ) -> Any:
        """`sites`: the cloud sites the stack keeps (default: all of the reference's)."""
        net = load_stack("dev").network
        if sites is not None:
            net = net.model_copy(update={"sites": tuple(s for s in net.sites if s.name in sites)})
        specs = derive(
            net,
            plan_routes(net),
            secrets,
            server_address=self.home.host,
            server_cert=server_cert,
            home_ready=home_ready,
            certificate_rotation=certificate_rotation,
        )
        # As the program does: the bridge retires the host key of its user data.
        return retiring(specs, {SITE: self.aws.first_contact_key} if self.aws else {})

    def home_props(self, secrets: dict[str, str], run: ProgramRun, sites: tuple[str, ...] | None = None) -> dict[str, Any]:
        spec = self.specs(secrets, None, True, sites, run.stack.rotation.certificate).server
        return node_props(spec_to_dict(spec, reveal=True), self._target(run, HOME, self.home.host))

    def bridge_props(self, secrets: dict[str, str], run: ProgramRun, machine: str = "vm-1") -> dict[str, Any]:
        """The bridge's inputs as the program derives them: the home server's certificate
        and the traffic check only once the home node exists in the stack."""
        home = self.host.state.get(HOME)
        cert = self.host.outputs(HOME)["certificate"] if home else None
        spec = self.specs(secrets, cert, home is not None).bridges[SITE]
        host = str(IPv4Interface(BRIDGE_ADDRESS).ip)
        return node_props(spec_to_dict(spec, reveal=True), self._target(run, BRIDGE, host), machine)

    def boot_bridge(self, run: ProgramRun, name: str, instance: str, after_s: float = 0.0) -> None:
        """A new bridge VM (`instance`) booting from the program's user data, `after_s` from
        now (its address refuses connections until then, and while it boots)."""
        user_data = plain(run.one(INSTANCE, f"{SITE}-bridge-vm").inputs["userData"])
        if self.aws is not None:
            self.delete_bridge_vm()
        # The address answers (refuses) from now on, as a new VM's public IP does.
        self.aws = on_testbed(self.testbed, name, BRIDGE_ADDRESS, user_data, instance)
        t = threading.Timer(after_s, self.aws.start, ("",))
        t.start()
        self.booting.append(t)

    def delete_bridge_vm(self) -> None:
        """The bridge VM deleted (its machine and namespace gone)."""
        old = self.aws
        assert old is not None
        old.stop()
        del self.testbed.nodes[old.name]
        self.aws = None
        # The lab's machines still hold the old VM's MAC for the address (a cloud's do not).
        for node in (self.testbed.nodes["op"], self.home):
            sh("ip", "-n", node.netns, "neigh", "flush", "all")

    def wait_booted(self) -> VmNode:
        for t in self.booting:
            t.join(60)
        self.booting.clear()
        assert self.aws is not None
        return self.aws


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with Testbed(tmp_path / "lab") as bed:
        home = bed.add("home", "server", "198.51.100.1/24", lan_device="eth1")
        # The operator's machine: runs the provider host, reaches the nodes' sshd over the
        # lab's internet (a namespace with an address and nothing else).
        op = Node("op", "bridge", f"hc-{bed.run}-op", tmp_path / "lab" / "op", IPv4Interface(OPERATOR_ADDRESS))
        bed.attach(op)
        with provider_host(op.netns, tmp_path) as host:
            lab = Lab(bed, home, host)
            try:
                yield lab
            finally:
                for t in lab.booting:
                    t.cancel()
                    t.join(60)
