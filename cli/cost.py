"""`hybrid cost`: prints `topology.cost.estimate` for a stack, next to the managed VPN it replaces."""

from __future__ import annotations

import argparse
import json

from topology import Stack, TopologyError, load_stack_config, stack_file
from topology.cost import (
    Estimate,
    PriceError,
    budget_problems,
    credit_alarm_emails,
    credit_alarm_threshold,
    estimate,
    load_prices,
)

from .args import add_stack, stack_ref


def render(est: Estimate, source: str, stack: Stack) -> list[str]:
    p = est.prices
    out = [
        f"{source}: monthly estimate, {p.currency}, {p.hours_per_month:g} h/month, list prices as of {p.as_of}"
    ]
    rows = [
        ("SoftEther links (this stack)", est.links),
        ("The same either way (PaaS, data transfer)", est.shared),
        ("Managed alternative for the same links", est.managed),
    ]
    every = [ln for _, group in rows for ln in group]
    w_site = max(len(ln.site) for ln in every)
    w_item = max(len(ln.item) for ln in every)
    for title, group in rows:
        out.append(title)
        out += [
            f"  {ln.site:<{w_site}}  {ln.item:<{w_item}}  {ln.quantity:>6g} {ln.unit:<8} x {ln.unit_price:.4f}  {ln.monthly:>8.2f}"
            for ln in group
        ]
        out.append(f"  {'subtotal':<{w_site + w_item + 2}}  {'':>24}  {est.total(group):>8.2f}")
    links, managed = est.total(est.links), est.total(est.managed)
    out.append(
        f"total: {est.softether_total:.2f} {p.currency}/month with SoftEther, {est.managed_total:.2f} with the managed VPN"
    )
    out.append(
        f"links: SoftEther {links:.2f} vs managed {managed:.2f} {p.currency}/month: saves {managed - links:.2f} ({est.saving:.0%})"
    )
    clouds = est.by_cloud()
    per_cloud = ", ".join(f"{c} {t:.2f}" for c, t in clouds.items())
    out.append(f"per cloud with SoftEther ({p.currency}/month): {per_cloud}")
    if stack.budgets is not None and stack.budgets.aws and p.currency == "USD":
        aws = clouds.get("aws", 0.0)
        crossed = [b.name for b in stack.budgets.aws if aws > b.amount_usd]
        listed = ", ".join(f"{b.name} {b.amount_usd:g}" for b in stack.budgets.aws)
        out.append(
            f"AWS budgets (USD/month): {listed}; a full month up crosses {len(crossed)} of {len(stack.budgets.aws)}"
        )
    if stack.budgets is not None and stack.budgets.azure is not None:
        azure = stack.budgets.azure
        listed = ", ".join(f"{b.name} {b.amount:g}" for b in azure.budgets)
        rate = p.per_usd.get(azure.currency)
        if rate is not None:
            out.append(
                f"Azure budgets ({azure.currency}/month): {listed}; this stack's Azure estimate is"
                f" {clouds.get('azure', 0.0) * rate:.0f} {azure.currency}/month (approximate rate)"
            )
    modes = {s.cpu_credits for s in stack.network.sites if s.cpu_credits}
    if modes:
        out.append(
            f"AWS bridge CPU credits: {', '.join(sorted(modes))}; the surplus of one first-boot install"
            " per `pulumi up` is priced above (repaid by earned credits on a bridge left up for a day)"
        )
    for ln in est.ceilings:
        out.append(
            f"worst case, {ln.site}: {ln.item}: {ln.quantity:g} {ln.unit} x {ln.unit_price:.4f}"
            f" = {ln.monthly:.2f} {p.currency}/month on top"
        )
    if est.ceilings:
        emails = credit_alarm_emails(stack)
        out.append(
            f"  bounded by the bridges' CPU credit alarm: it mails {', '.join(emails)} once a bridge's"
            f" surplus passes {credit_alarm_threshold(stack, p):g} credits (vCPU-minutes)"
            if emails
            else "  not bounded: without budgets (and their emails) there is no CPU credit alarm"
        )
    if stack.ttl_hours is not None:
        session = est.softether_total / p.hours_per_month * stack.ttl_hours
        out.append(
            f"one session of ttlHours={stack.ttl_hours:g} h (then destroy): {session:.2f} {p.currency}"
        )
    a = p.assumptions
    out.append(
        f"assumed: {a['egress_gb_per_site']} GB/month out of each cloud site (no free tier), AWS bridge volume {a['aws_bridge_volume_gb']} GiB, Azure bridge disk {a['azure_bridge_disk_tier']}"
    )
    out.append("sources:")
    out += [f"  {url}" for url in sorted({ln.source for ln in every} | ({p.burstable_source} if est.ceilings else set()))]
    return out


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cost", help="monthly cost estimate, next to the managed VPN alternative")
    add_stack(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cost)


def cost(args: argparse.Namespace) -> int:
    path = stack_file(stack_ref(args))
    stack, config = load_stack_config(str(path))
    try:
        est = estimate(stack, config, load_prices())
    except PriceError as e:
        raise TopologyError(str(path), [str(e)]) from None
    found = budget_problems(stack, est)
    if found:
        raise TopologyError(str(path), found)
    if args.json:
        print(json.dumps(est.to_json(), indent=2))
    else:
        print("\n".join(render(est, stack_ref(args), stack)))
    return 0
