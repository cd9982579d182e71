"""`hybrid diagram`: the stack's network as a Graphviz picture (SVG or PNG).

`to_dot(stack)` is pure: one cluster per site (home, each cloud site) with its subnets and
CIDRs, the bridges with their private and transit addresses, each bridge's cascade to the home
server's transit hub, the virtual L3 switch with its interfaces and routes, each site's route
table, and the PaaS (RDS over its subnets, App Service in its delegated subnet, its private endpoint
in the endpoint's subnet). Rendering is
Graphviz's `dot` (Debian package `graphviz`).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from topology import Stack, plan_routes
from topology.clouds import rules

from .args import add_stack, stack_of

FORMATS = {".svg": "svg", ".png": "png"}
HOME_COLOR = "#e8f1e4"


def _q(text: str) -> str:
    """A DOT string literal; newlines become centred line breaks."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _node(node_id: str, label: str, **attrs: str) -> str:
    extra = "".join(f" {k}={_q(v)}" for k, v in attrs.items())
    return f"    {node_id} [label={_q(label)}{extra}];"


def _edge(a: str, b: str, label: str = "", **attrs: str) -> str:
    extra = "".join(f" {k}={_q(v)}" for k, v in {"label": label, **attrs}.items() if v)
    return f"  {a} -> {b} [{extra.strip()}];"


def to_dot(stack: Stack) -> str:
    net = stack.network
    plan = plan_routes(net)
    server, sw = net.home.vpn_server, plan.l3_switch
    out = [
        "digraph hybrid {",
        '  graph [rankdir=TB, fontname="Helvetica", fontsize=11, nodesep=0.3, ranksep=0.9];',
        '  node [shape=box, style="rounded,filled", fillcolor=white, fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=9];',
        "  subgraph cluster_home {",
        f"    label={_q(f'{net.home.name} (home LAN)')}; style=filled; fillcolor={_q(HOME_COLOR)};",
    ]
    out += [
        _node(f"home_net_{i}", f"LAN\n{cidr}", shape="folder")
        for i, cidr in enumerate(net.home.cidrs)
    ]
    host = f"\nhost {server.host_address}" if server.host_address else ""
    out.append(
        _node(
            "server",
            f"SoftEther VPN Server{host}\nlistens {server.public_host}:{server.port}\nhub {server.lan_hub}: local bridge {server.bridge_device}",
        )
    )
    interfaces = "\n".join(f"{i.hub}: {i.address}" for i in sw.interfaces)
    routes = "\n".join(f"{r.destination} -> {r.gateway}" for r in sw.routes)
    out.append(_node("l3sw", f"virtual L3 switch {sw.name}\n{interfaces}\nroutes:\n{routes}"))
    out.append(
        _node(
            "hub",
            f"virtual hub {net.transit.hub}\ntransit {net.transit.cidr}",
            shape="ellipse",
            fillcolor="#fff7b0",
        )
    )
    out.append("  }")
    lan = next(i for i, c in enumerate(net.home.cidrs) if server.lan_address in c)
    out += [
        _edge("server", f"home_net_{lan}", f"{server.bridge_device} (no address)"),
        _edge("l3sw", f"home_net_{lan}", str(server.lan_address), dir="none"),
        _edge("l3sw", "hub", str(server.transit_address), dir="none"),
    ]

    for s_i, site in enumerate(net.sites):
        region = f", {site.region}" if site.region else ""
        out += [
            f"  subgraph cluster_site_{s_i} {{",
            f"    label={_q(f'{site.name} ({site.cloud}{region})  ' + ', '.join(map(str, site.cidrs)))}; style=filled; fillcolor={_q(rules(site.cloud).diagram_color)};",
        ]
        for n_i, sub in enumerate(site.subnets):
            zone = f"\n{sub.zone}" if sub.zone else ""
            out.append(_node(f"s{s_i}_net{n_i}", f"{sub.name}\n{sub.cidr}{zone}", shape="folder"))
        b = site.bridge
        size = f" ({b.size})" if b.size else ""
        # One box per bridge VM; a pair's say which is which and the virtual address it moves.
        bridges = [(f"s{s_i}_bridge" + (f"_{vm.role}" if vm.role == "b" else ""), vm) for vm in site.bridge_vms]
        for node_id, vm in bridges:
            tap = plan.bridge(vm.node)
            role = f" {vm.role}" if vm.role else ""
            vip = f"\nactive: {b.transit_address} (moves)" if vm.role else ""
            out.append(
                _node(
                    node_id,
                    f"SoftEther VPN Bridge{role}{size}\n{vm.private_address}\n{tap.tap_device} {tap.tap_address}{vip}",
                )
            )
        table = plan.route_table(site.name)
        hop = rules(table.cloud).next_hop_short
        moves = f" (failover: {table.standby_address})" if table.standby_address else ""
        dests = "\n".join(f"{d} -> {hop} {table.bridge_address}{moves}" for d in table.destinations)
        out.append(
            _node(
                f"s{s_i}_rt",
                f"route table ({', '.join(table.subnets)})\n{dests}",
                shape="note",
                fillcolor="#f6f6f6",
            )
        )
        out.append("  }")
        for node_id, vm in bridges:
            out.append(
                _edge(node_id, f"s{s_i}_net{site.subnets.index(site.subnet(vm.subnet))}", "", dir="none")
            )
            # Drawn hub -> bridge (arrow reversed) so the hub ranks above the sites.
            out.append(
                _edge(
                    "hub",
                    node_id,
                    f"cascade {vm.cascade_user}\nto {server.public_host}:{server.port}",
                    dir="back",
                    color="#c0392b",
                    penwidth="2",
                )
            )
        out += [
            _edge(f"s{s_i}_rt", f"s{s_i}_net{n_i}", "", style="dotted", arrowhead="none")
            for n_i in range(len(site.subnets))
        ]

    if stack.database is not None:
        db = stack.database
        s_i = [s.name for s in net.sites].index(db.site)
        site = net.sites[s_i]
        az = "Multi-AZ" if db.multi_az else "Single-AZ"
        out.append(f"  subgraph cluster_site_{s_i} {{")
        out.append(
            _node(
                "rds",
                f"RDS MySQL {db.engine_version}\n{db.instance_class} {az}\nport {db.port}, private",
                shape="cylinder",
                fillcolor="#fbe3c8",
            )
        )
        out.append("  }")
        out += [
            _edge(f"s{s_i}_net{n_i}", "rds", "subnet group", style="dashed", dir="none")
            for n_i in range(len(site.subnets))
        ]
    if stack.app is not None:
        app = stack.app
        s_i = [s.name for s in net.sites].index(app.site)
        site = net.sites[s_i]
        n_i = site.subnets.index(site.subnet(app.subnet))
        out.append(f"  subgraph cluster_site_{s_i} {{")
        door = (
            "private: public network access off"
            if app.access == "private"
            else f"public: {net.operator_cidr} only"
        )
        out.append(
            _node(
                "app",
                f"App Service {app.sku}\n{app.image}\nVNet integration, route all\n{door}",
                shape="component",
                fillcolor="#d6e6fb",
            )
        )
        endpoint = stack.app_endpoint
        if endpoint is not None:
            out.append(
                _node(
                    "app_endpoint",
                    f"private endpoint {endpoint.address}\nprivatelink.azurewebsites.net\nHTTP(S) from the other sites",
                    shape="cds",
                    fillcolor="#d6e6fb",
                )
            )
        out.append("  }")
        out.append(_edge(f"s{s_i}_net{n_i}", "app", "delegated", style="dashed", dir="none"))
        if endpoint is not None:
            e_i = site.subnets.index(site.subnet(endpoint.subnet))
            out += [
                _edge(f"s{s_i}_net{e_i}", "app_endpoint", "", style="dashed", dir="none"),
                _edge("app_endpoint", "app", "private link", style="dashed", color="#2c7be5"),
            ]
        if stack.database is not None:
            out.append(
                _edge(
                    "app",
                    "rds",
                    f"MySQL {stack.database.port}\nthrough the tunnels",
                    style="dashed",
                    color="#2c7be5",
                    constraint="false",
                )
            )
    out.append("}")
    return "\n".join(out) + "\n"


class DiagramError(ValueError):
    """A one-line problem a user can fix (output name, missing Graphviz)."""


def render(dot: str, output: Path) -> None:
    fmt = FORMATS.get(output.suffix.lower())
    if fmt is None:
        raise DiagramError(f"-o {output}: the file name must end in {' or '.join(FORMATS)}")
    exe = shutil.which("dot")
    if exe is None:
        raise DiagramError(
            "dot: not found; install Graphviz (Debian package graphviz, listed in packages.apt)"
        )
    done = subprocess.run(
        [exe, f"-T{fmt}", "-o", str(output)], input=dot, text=True, capture_output=True, timeout=60
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise DiagramError(f"dot -T{fmt} -o {output}: exit {done.returncode}: {last}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("diagram", help="draw the stack's network (Graphviz) to an SVG or PNG file")
    add_stack(p)
    p.add_argument("-o", "--output", required=True, type=Path, help="FILE.svg or FILE.png")
    p.set_defaults(func=diagram)


def diagram(args: argparse.Namespace) -> int:
    try:
        render(to_dot(stack_of(args)), args.output)
    except DiagramError as e:
        print(e, file=sys.stderr)
        return 2
    print(f"wrote {args.output}")
    return 0
