"""`HomeLan`: the home site. The program cannot create the home VPN server (a container on
the user's LAN) nor change the home router; it configures SoftEther on the server over SSH
and says exactly what must be done by hand."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from softether.dynamic import SoftEtherNode
from topology import RoutingPlan, Topology
from topology.load import HOME_HOST_KEY, PROJECT

from .node import HOME_CONNECT_DEADLINE_S, ssh_target
from .secrets import (
    HOME_ADMIN_CONFIG,
    KEY_FILE,
    OPERATOR_KEY_CONFIG,
    SET_HOME_ADMIN,
    SET_OPERATOR_KEY,
)

HOST_KEY_CONFIG = HOME_HOST_KEY


@dataclass(frozen=True)
class ManualSteps:
    """What the user does by hand at home, derived from the topology and the routing plan."""

    port_forward: str
    routes: tuple[str, ...]
    server_access: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "routerPortForward": self.port_forward,
            "homeRoutes": list(self.routes),
            "vpnServerAccess": list(self.server_access),
        }


def pin_command(net: Topology) -> str:
    ssh = net.home.vpn_server.ssh
    return (
        f"pulumi config set {PROJECT}:{HOST_KEY_CONFIG}"
        f' "$(ssh-keyscan -p {ssh.port} -t ed25519 {ssh.host} | cut -d\' \' -f2-)"'
    )


@dataclass(frozen=True)
class HomeConfig:
    """Which of the stack's settings for the home server are there (each outlives `pulumi
    destroy`, as the server does): `homeHostKey`, `homeAdminPassword`, `operatorKey`."""

    host_key: bool
    admin_password: bool
    operator_key: bool

    @property
    def complete(self) -> bool:
        return self.host_key and self.admin_password and self.operator_key


def authorize_step(net: Topology) -> str:
    ssh = net.home.vpn_server.ssh
    return (
        f"authorize the operator key ({KEY_FILE}.pub, stack output operatorPublicKey) for"
        f" {ssh.user} on {ssh.host}: append it to ~{ssh.user}/.ssh/authorized_keys"
    )


def manual_steps(net: Topology, plan: RoutingPlan, known: HomeConfig) -> ManualSteps:
    server = net.home.vpn_server
    ssh = server.ssh
    target = server.host_address or ssh.host
    access = [authorize_step(net)]
    if not known.operator_key:
        access.append(
            f"give the stack the operator's SSH key (it outlives pulumi destroy, as the server's"
            f" authorization of it does): {SET_OPERATOR_KEY}, then pulumi up again"
        )
    if not known.host_key:
        # The program never accepts an unknown host key: the user pins it once.
        access.append(
            f"pin the server's host key: {pin_command(net)}"
            " (check it against the server's own /etc/ssh/ssh_host_ed25519_key.pub), then"
            " pulumi up again: SoftEther on the home server is configured once it is set"
        )
    if not known.admin_password:
        access.append(
            f"give the stack the server's SoftEther admin password (it outlives pulumi"
            f" destroy): {SET_HOME_ADMIN}, then pulumi up again"
        )
    return ManualSteps(
        port_forward=(
            f"home router: forward TCP {server.port} from the internet ({server.public_host})"
            f" to {target}:{server.port}"
        ),
        routes=tuple(
            f"{r.destination} via {r.via}  (home router, or every home host but the VPN server)"
            for r in plan.home_routes
        ),
        server_access=tuple(access),
    )


@dataclass(frozen=True)
class HomeLanArgs:
    """`spec`: the server's SoftEther spec from `softether.derive` (secret); `host_key`: the
    server's pinned SSH host key (`ssh-ed25519 AAAA...`, config `homeHostKey`), None if
    not pinned yet."""

    network: Topology
    routes: RoutingPlan
    spec: pulumi.Input[dict[str, Any]]
    operator_private_key: pulumi.Input[str]
    host_key: str | None
    admin_password_known: bool = True  # the stack secret homeAdminPassword is set
    operator_key_known: bool = True  # the stack secret operatorKey is set


class HomeLan(pulumi.ComponentResource):
    """The home site: the manual steps, and `softether`, the VPN server's SoftEther
    configuration over SSH (None until the server's host key is pinned and its admin
    password is in the stack); `pending`: what the user must do before the next up
    finishes the home side, each with its command (empty once `softether` exists)."""

    steps: ManualSteps
    pending: list[str]
    softether: SoftEtherNode | None

    def __init__(self, name: str, args: HomeLanArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("hybrid:home:HomeLan", name, None, opts)
        ssh = args.network.home.vpn_server.ssh
        known = HomeConfig(args.host_key is not None, args.admin_password_known, args.operator_key_known)
        self.steps = manual_steps(args.network, args.routes, known)
        self.pending = pending(args.network, known)
        self.softether = None
        if args.host_key is not None and known.complete:
            target = ssh_target(
                ssh.host,
                args.host_key,
                args.operator_private_key,
                port=ssh.port,
                user=ssh.user,
                deadline_s=HOME_CONNECT_DEADLINE_S,
            )
            self.softether = SoftEtherNode(
                f"{name}-softether", args.spec, target, opts=pulumi.ResourceOptions(parent=self)
            )
        self.register_outputs(self.steps.to_json())


def pending(net: Topology, known: HomeConfig) -> list[str]:
    """What is left before the home VPN server is configured, and the commands to finish it."""
    if known.complete:
        return []
    todo = []
    if not known.operator_key:
        todo.append(f"give the stack the operator's SSH key ({OPERATOR_KEY_CONFIG}): {SET_OPERATOR_KEY}")
    todo.append(authorize_step(net))
    if not known.host_key:
        todo.append(f"pin the home server's host key ({HOST_KEY_CONFIG}): {pin_command(net)}")
    if not known.admin_password:
        todo.append(f"set the home server's admin password ({HOME_ADMIN_CONFIG}): {SET_HOME_ADMIN}")
    sites = ", ".join(s.name for s in net.sites)
    return [
        "home VPN server: not configured by this stack yet; to finish: " + "; ".join(todo)
        + "; then pulumi up",
        f"bridges ({sites}): cascades created; their traffic check is deferred until the home"
        " server is configured (the next pulumi up verifies it)",
    ]
