"""`hybrid check` and `hybrid routes`: validate a stack, print its routing plan."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from topology import Stack, TopologyError, load_stack_config, plan_routes, stack_file
from topology.cost import check_budgets

from .args import add_stack, stack_of, stack_ref


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="validate a stack file")
    add_stack(p)
    p.set_defaults(func=check)
    p = sub.add_parser("routes", help="print the routing plan of a stack")
    add_stack(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=routes)


def check_file(path: Path) -> tuple[Stack, str | None]:
    """Every rule of docs/rules.md on one stack file: the stack, and why the budgets' amounts
    were not compared with the estimate (None when they were); TopologyError otherwise."""
    stack, config = load_stack_config(str(path))
    # The Azure budgets' amounts against the stack's own estimate.
    found, budgets_note = check_budgets(stack, config)
    if found:
        raise TopologyError(str(path), found)
    return stack, budgets_note


def check(args: argparse.Namespace) -> int:
    stack, budgets_note = check_file(stack_file(stack_ref(args)))
    net = stack.network
    sites = ", ".join(f"{s.name} ({s.cloud}, {len(s.subnets)} subnets)" for s in net.sites)
    extras = [k for k in ("database", "app", "budgets") if getattr(stack, k) is not None]
    print(f"{stack_ref(args)}: ok")
    print(f"  home {net.home.name}: {', '.join(map(str, net.home.cidrs))}")
    print(f"  transit {net.transit.hub}: {net.transit.cidr}")
    print(f"  sites: {sites}")
    print(f"  routes: {len(plan_routes(net).rows())}; paas: {', '.join(extras) or 'none'}")
    if budgets_note:
        print(f"  {budgets_note}")
    return 0


def routes(args: argparse.Namespace) -> int:
    plan = plan_routes(stack_of(args).network)
    if args.json:
        print(json.dumps(plan.to_json(), indent=2))
    else:
        print("\n".join(plan.lines()))
    return 0
