"""What every cloud's SoftEther bridge VM shares: its args, its cloud-init and its SoftEther node.

The bridges themselves live with their cloud's network (`aws.Ec2Bridge`, `azure.AzureVmBridge`).
Each is a Debian 12 VM with one network interface at the site's fixed bridge address, a
public address (for its outbound cascade and the operator's SSH), forwarding enabled
(src/dst check off / IP forwarding on), SSH only from the operator's range, and cloud-init
that pins the program's host key and installs SoftEther. The SoftEther configuration is
converged afterwards by the bridge's `softether.dynamic.SoftEtherNode`, once sshd opens
(cloud-init opens it only after SoftEther is installed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi

from softether.derive import failover_config
from softether.dynamic import SoftEtherNode
from topology import CloudSite, Topology
from topology.clouds import bridge_image
from topology.model import BridgeVm

from .cloudinit import HostKey, bridge_cloud_config
from .firewall import Firewall
from .node import BRIDGE_CONNECT_DEADLINE_S, ssh_target

# Debian's cloud images enable no root login by key unless cloud-init is told so; the
# SoftEther converge logs in as root (it writes units and routes).
SSH_USER = "root"


@dataclass(frozen=True)
class BridgeArgs:
    """What every bridge needs. Keys are pulumi-tls outputs; `spec` is the node's SoftEther
    spec from `softether.derive` (secret); `after`: what the converge waits for (the home
    server, which the cascade dials); `firewall`: the cloud's filter in front of the bridge
    (its SG / its site's NSG) and `ruleset`: the VM's own (components/firewall.py); `vm`:
    which bridge VM of the site (a pair has two, each its own SoftEther node)."""

    network: Topology
    site: CloudSite
    vm: BridgeVm
    firewall: Firewall
    ruleset: str
    host_key_private: pulumi.Input[str]
    host_key_public: pulumi.Input[str]
    operator_public_key: pulumi.Input[str]
    operator_private_key: pulumi.Input[str]
    spec: pulumi.Input[dict[str, Any]]
    after: tuple[pulumi.Resource, ...] = ()


def converge(
    name: str,
    args: BridgeArgs,
    parent: pulumi.Resource,
    public_ip: pulumi.Output[str],
    vm: pulumi.Resource,
    machine: pulumi.Output[str],
) -> SoftEtherNode:
    """The bridge's SoftEther node, over SSH to its public address with the pinned host key;
    `machine` (the VM's identity) tells a rebuilt VM at the same address from the old one."""
    # cloud-init keeps sshd closed until SoftEther is installed: a refused port is the
    # expected state for the whole first boot, so it is retried as long as anything.
    target = ssh_target(
        public_ip,
        args.host_key_public,
        args.operator_private_key,
        user=SSH_USER,
        deadline_s=BRIDGE_CONNECT_DEADLINE_S,
        refused_deadline_s=BRIDGE_CONNECT_DEADLINE_S,
    )
    return SoftEtherNode(
        f"{name}-softether",
        args.spec,
        target,
        machine,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[vm, *args.after]),
    )


def user_data(args: BridgeArgs, driver: pulumi.Input[dict[str, Any]] | None = None) -> pulumi.Output[str]:
    """The bridge's cloud-config; secret, because it carries the host's private key.
    `driver`: a pair's bridge, the failover controller's cloud driver config (the ids of the
    routes it moves, softether.derive.failover_config)."""
    image = bridge_image(args.site.cloud, args.site.bridge_size)
    doc = pulumi.Output.all(
        args.host_key_private, args.host_key_public, args.operator_public_key, driver
    ).apply(
        lambda v: bridge_cloud_config(
            args.network.softether,
            HostKey(v[0], v[1]),
            [v[2]],
            image,
            args.ruleset,
            None if v[3] is None else json.dumps(failover_config(args.network, args.vm, v[3]), indent=2),
        )
    )
    return pulumi.Output.secret(doc)
