"""`hybrid check` and `hybrid routes`: validate a stack, print its routing plan."""

from __future__ import annotations

import argparse
import json

from topology import (
    TopologyError,
    parse_stack,
    plan_routes,
    project_config,
    provider_regions,
    read_stack_file,
    stack_file,
)
from topology.cost import check_budgets
from topology.load import HOME_ADMIN_PASSWORD, PROJECT, admin_password_problems

from .args import add_stack, stack_of, stack_ref


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="validate a stack file")
    add_stack(p)
    p.set_defaults(func=check)
    p = sub.add_parser("routes", help="print the routing plan of a stack")
    add_stack(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=routes)


def check(args: argparse.Namespace) -> int:
    path = stack_file(stack_ref(args))
    config = read_stack_file(path)
    stack = parse_stack(project_config(config), str(path), provider_regions(config))
    # The Azure budgets' amounts against the stack's own estimate.
    found, budgets_note = check_budgets(stack, config)
    found += secret_problems(config)
    if found:
        raise TopologyError(str(path), found)
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


def secret_problems(config: dict[str, object]) -> list[str]:
    """The home server's admin password, where the stack file shows it: a plain value (what
    `pulumi config set` without --secret writes) is refused, and checked like the program
    checks it (components/secrets.py); an encrypted one (`secure:`) cannot be read here."""
    value = config.get(f"{PROJECT}:{HOME_ADMIN_PASSWORD}")
    if value is None or isinstance(value, dict):
        return []
    return [
        f"{HOME_ADMIN_PASSWORD}: must be a secret: set it with pulumi config set --secret",
        *admin_password_problems(str(value)),
    ]


def routes(args: argparse.Namespace) -> int:
    plan = plan_routes(stack_of(args).network)
    if args.json:
        print(json.dumps(plan.to_json(), indent=2))
    else:
        print("\n".join(plan.lines()))
    return 0
