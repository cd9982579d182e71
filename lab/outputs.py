"""`hybrid lab outputs`: the lab's outputs in the shape of a Pulumi stack's (softether/outputs.py).

The nodes are reached at their addresses on the lab's internet from the operator's
namespace (`lab.operatorNamespace`), with the lab's operator key (`lab.operatorKeyFile`);
the specs are the ones `lab up` converges. The address to ping in each cloud site is its
bridge's, as the program's (`components.program.status_hosts`): the paths between the sites
let the VPN nodes ping each other, not a bridge reach every other site's hosts. At home a
LAN host stands in for the VPN server, which has no address on the lab's LAN.
"""

from __future__ import annotations

from typing import Any

from softether.health import Report, check
from softether.outputs import LAB, STATUS, Outputs, node_output, status_output
from softether.spec import spec_to_dict
from topology import plan_routes

from .lab import Lab, specs
from .state import stack_name


def lab_outputs(lab: Lab) -> dict[str, Any]:
    net = lab.stack.network
    nodes = specs(lab)
    by_site = {net.home.name: nodes.server, **nodes.bridges}
    private = {vm.node: vm.private_address for vm in net.bridge_vms}
    home = next(h.address for h in lab.layout.hosts if h.site == net.home.name)
    hosts: dict[str, Any] = {net.home.name: home, **private}
    return {
        "routes": plan_routes(net).to_json(),
        STATUS: status_output(
            stack_name(lab.ref),
            net.home.vpn_server.transit_address,
            hosts,
            {
                site: node_output(
                    node.kind,
                    node.host,
                    node.ssh_port,
                    "root",
                    node.host_key,
                    spec_to_dict(by_site[site], reveal=True),
                    private.get(site),
                )
                for site, node in lab.nodes.items()
            },
        ),
        LAB: {
            "operatorNamespace": lab.layout.operator_ns,
            "operatorKeyFile": str(lab.client_key_file),
        },
    }


def lab_report(lab: Lab) -> Report:
    """`hybrid status` of the lab, from its outputs, as the operator in `inet` sees it."""
    from .node import netns_socket

    outputs = Outputs.model_validate(lab_outputs(lab))
    ns = lab.layout.operator_ns
    key = lab.client_key[0]
    return check(outputs, key, lambda host, port, timeout: netns_socket(ns, host, port, timeout))
