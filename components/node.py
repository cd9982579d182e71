"""The SoftEther configuration of each node, handed to `softether.dynamic.SoftEtherNode`.

The specs come from `softether.derive` (topology + routing plan + the generated passwords),
computed once per program; each node gets its own spec and an SSH target with a pinned host
key. Both travel as Pulumi secrets.
"""

from __future__ import annotations

from typing import Any

import pulumi

from softether.derive import NodeSpecs, derive, retiring
from softether.spec import SshTarget, spec_to_dict
from topology import RoutingPlan, Topology

from .secrets import HybridSecrets

# A new bridge VM builds SoftEther from source before sshd opens (cloud-init), so the first
# SSH connection waits for the whole bootstrap. Measured by bench/bridge_bootstrap.py (a fresh
# Debian 12 root pinned to ONE core of a shared, loaded 2-core machine; 2026-12-02): apt-get
# update + the install script (packages, clone, submodules, build, install) took 179 s, about
# 3 CPU-minutes. The slowest size, Azure's B1ls (1 burstable vCPU, 512 MB plus the script's
# 1 GB swap file), starts with 30 CPU credits (30 vCPU-minutes at full speed): the bootstrap
# runs at full speed, not at the 5 % baseline. Margin: 4x for a slower vCPU and for swapping
# while compiling, plus 2 minutes for boot and cloud-init's stages before runcmd. Booted in
# the lab (bench/bridge_boot.py: systemd, cloud-init, the build packages already there) on one
# core without swap, the build took 82 s at 512 MiB and 128 s at 384 MiB to sshd, peak 381 MiB:
# inside the 179 s and far inside the deadline.
BRIDGE_BOOTSTRAP_MEASURED_S = 179.0
BRIDGE_CONNECT_DEADLINE_S = 4 * BRIDGE_BOOTSTRAP_MEASURED_S + 120.0  # 836 s
HOME_CONNECT_DEADLINE_S = 120.0


def node_specs(
    net: Topology,
    plan: RoutingPlan,
    secrets: HybridSecrets,
    server_cert: pulumi.Input[str | None] = None,
    *,
    home_ready: bool = True,
) -> pulumi.Output[NodeSpecs]:
    """`server_cert`: the home server's certificate (PEM), pinned in every bridge's cascade;
    `home_ready`: see `softether.derive.derive`. Each bridge retires the host key of its user
    data (`softether.derive.retiring`): it served the first contact only. The server's
    certificate follows the stack's rotation counter (`secrets.rotation.certificate`)."""
    first_contact = {s: k.public_key_openssh for s, k in secrets.host_keys.items()}
    rotation = secrets.rotation.certificate
    return pulumi.Output.all(secrets.values(), server_cert, first_contact).apply(
        lambda v: retiring(
            derive(
                net, plan, v[0], server_cert=v[1], home_ready=home_ready, certificate_rotation=rotation
            ),
            v[2],
        )
    )


def spec_of(specs: pulumi.Output[NodeSpecs], site: str | None) -> pulumi.Output[dict[str, Any]]:
    """The revealed spec dict of the home server (`site` None) or of a site's bridge."""
    return pulumi.Output.secret(
        specs.apply(
            lambda s: spec_to_dict(s.server if site is None else s.bridges[site], reveal=True)
        )
    )


def ssh_target(
    host: pulumi.Input[str],
    host_key: pulumi.Input[str],
    private_key: pulumi.Input[str],
    *,
    port: int = 22,
    user: str = "root",
    deadline_s: float,
    refused_deadline_s: float = SshTarget.model_fields["refused_deadline_s"].default,
) -> pulumi.Output[dict[str, Any]]:
    """An `softether.spec.SshTarget` dict: key auth, the host key pinned."""
    return pulumi.Output.secret(
        pulumi.Output.all(host, host_key, private_key).apply(
            lambda v: {
                "host": v[0],
                "port": port,
                "user": user,
                "host_key": v[1].strip(),
                "private_key": v[2],
                "connect_deadline_s": deadline_s,
                "refused_deadline_s": refused_deadline_s,
            }
        )
    )
