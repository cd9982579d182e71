"""Benchmark: converge the three reference SoftEther nodes over SSH in network namespaces.

Prints, per node: apply time from empty, re-apply time on the converged node, SSH
connections and exec channels, vpncmd admin sessions and commands per apply; then the wall
time of the three applied in parallel on fresh nodes. Needs root (namespaces). Not a test.

    python bench/softether_apply.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lab.node import Node, Testbed
from softether.derive import NodeSpecs, derive, secret_names
from softether.session import Result, Session
from softether.spec import BridgeSpec, ServerSpec
from topology import load_stack, plan_routes

NODES = (
    ("home", "server", "198.51.100.1/24"),
    ("aws", "bridge", "198.51.100.2/24"),
    ("azure", "bridge", "198.51.100.3/24"),
)


@dataclass
class Row:
    node: str
    seconds: float
    ssh_connects: int
    ssh_channels: int
    vpncmd_sessions: int
    vpncmd_commands: int
    changed: bool


def bring_up(bed: Testbed) -> tuple[dict[str, Node], NodeSpecs]:
    nodes = {
        name: bed.add(name, kind, addr, lan_device="eth1" if kind == "server" else None)  # type: ignore[arg-type]
        for name, kind, addr in NODES
    }
    net = load_stack("dev").network
    secrets = {n: f"bench-{bed.run}-{i}" for i, n in enumerate(secret_names(net))}
    specs = derive(
        net,
        plan_routes(net),
        secrets,
        server_address=nodes["home"].host,
        restart_command=nodes["aws"].restart_command,
    )
    return nodes, specs


def spec_of(specs: NodeSpecs, name: str) -> ServerSpec | BridgeSpec:
    site = {"aws": "Hybrid-VPC", "azure": "Hybrid-VNet"}
    if name == "home":
        return specs.server
    spec = specs.bridges[site[name]]
    return spec


def apply(bed: Testbed, node: Node, spec: ServerSpec | BridgeSpec) -> Row:
    if isinstance(spec, BridgeSpec):
        spec = spec.model_copy(update={"restart_command": node.restart_command})
    t = bed.transport(node)
    start = time.monotonic()
    r: Result = Session(t, spec).converge()
    seconds = time.monotonic() - start
    t.close()
    return Row(
        node.name, seconds, t.connects, t.channels, r.vpncmd_sessions, r.vpncmd_commands, r.changed
    )


def show(title: str, rows: list[Row]) -> None:
    print(f"\n{title}")
    print(
        f"  {'node':<6} {'seconds':>8} {'ssh conn':>8} {'channels':>8} {'vpncmd':>7} {'commands':>8} changed"
    )
    for r in rows:
        print(
            f"  {r.node:<6} {r.seconds:>8.2f} {r.ssh_connects:>8} {r.ssh_channels:>8} "
            f"{r.vpncmd_sessions:>7} {r.vpncmd_commands:>8} {r.changed}"
        )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="hc-bench-") as tmp:
        with Testbed(Path(tmp) / "seq") as bed:
            nodes, specs = bring_up(bed)
            first = [apply(bed, nodes[n], spec_of(specs, n)) for n, _, _ in NODES]
            again = [apply(bed, nodes[n], spec_of(specs, n)) for n, _, _ in NODES]
        show("apply from empty, one node after the other", first)
        show("re-apply on the converged nodes", again)

        with Testbed(Path(tmp) / "par") as bed:
            nodes, specs = bring_up(bed)
            start = time.monotonic()
            with ThreadPoolExecutor(max_workers=3) as pool:
                rows = list(
                    pool.map(lambda n: apply(bed, nodes[n[0]], spec_of(specs, n[0])), NODES)
                )
            wall = time.monotonic() - start
            start = time.monotonic()
            with ThreadPoolExecutor(max_workers=3) as pool:
                again = list(
                    pool.map(lambda n: apply(bed, nodes[n[0]], spec_of(specs, n[0])), NODES)
                )
            wall_again = time.monotonic() - start
        show(f"three nodes in parallel from empty: wall {wall:.2f} s", rows)
        show(f"three nodes in parallel, re-apply: wall {wall_again:.2f} s", again)


if __name__ == "__main__":
    main()
