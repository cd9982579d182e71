"""`HomeLan`: the home site. The program cannot create the home VPN server (a container on
the user's LAN) nor change the home router; it configures SoftEther on the server over SSH
and says exactly what must be done by hand."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from topology import RoutingPlan, Topology


@dataclass(frozen=True)
class ManualSteps:
    """What the user does by hand at home, derived from the topology and the routing plan."""

    port_forward: str
    routes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"routerPortForward": self.port_forward, "homeRoutes": list(self.routes)}


def manual_steps(net: Topology, plan: RoutingPlan) -> ManualSteps:
    server = net.home.vpn_server
    target = server.host_address or server.ssh.host
    return ManualSteps(
        port_forward=(
            f"home router: forward TCP {server.port} from the internet ({server.public_host})"
            f" to {target}:{server.port}"
        ),
        routes=tuple(
            f"{r.destination} via {r.via}  (home router, or every home host but the VPN server)"
            for r in plan.home_routes
        ),
    )


@dataclass(frozen=True)
class HomeLanArgs:
    network: Topology
    routes: RoutingPlan


class HomeLan(pulumi.ComponentResource):
    """The home site: the manual steps, and (`node`) the VPN server's SoftEther configuration."""

    steps: ManualSteps

    def __init__(self, name: str, args: HomeLanArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("hybrid:home:HomeLan", name, None, opts)
        self.steps = manual_steps(args.network, args.routes)
        self.register_outputs(self.steps.to_json())
