"""Budgets: cost alerts in AWS and Azure, so a forgotten resource is noticed (blog part 3)."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
from pulumi_aws import budgets as aws_budgets
from pulumi_azure_native import consumption

from topology import Budgets as BudgetsConfig

# Each threshold alerts twice: once spent, and once the month's forecast crosses it.
_AWS_KINDS = ("ACTUAL", "FORECASTED")
_AZURE_KINDS = ("Actual", "Forecasted")


@dataclass(frozen=True)
class BudgetsArgs:
    """`azure_resource_groups`: site name -> resource group id of every Azure site."""

    config: BudgetsConfig
    azure_resource_groups: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)


class Budgets(pulumi.ComponentResource):
    """One AWS budget per `budgets.aws` entry and one Azure budget per entry and scope."""

    def __init__(
        self, name: str, args: BudgetsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybrid:billing:Budgets", name, None, opts)
        cfg = args.config
        child = pulumi.ResourceOptions(parent=self)
        emails = list(cfg.emails)
        self.aws: list[aws_budgets.Budget] = []
        self.azure: list[consumption.Budget] = []
        if not cfg.enabled:
            self.register_outputs({})
            return

        for b in cfg.aws:
            self.aws.append(
                aws_budgets.Budget(
                    f"{name}-aws-{b.name}",
                    budget_type="COST",
                    time_unit="MONTHLY",
                    # The API's own spelling ("7.0"), so a refresh shows no difference.
                    limit_amount=str(b.amount_usd),
                    limit_unit="USD",
                    notifications=[
                        aws_budgets.BudgetNotificationArgs(
                            comparison_operator="GREATER_THAN",
                            notification_type=kind,
                            threshold=t,
                            threshold_type="PERCENTAGE",
                            subscriber_email_addresses=emails,
                        )
                        for t in b.thresholds
                        for kind in _AWS_KINDS
                    ],
                    opts=child,
                )
            )

        if cfg.azure is not None:
            azure = cfg.azure
            groups = args.azure_resource_groups
            if not groups:
                raise ValueError("budgets.azure: this stack has no Azure site to budget")
            if azure.scope == "subscription":
                # The subscription that holds the stack's resource groups: the one that bills
                # them (no extra lookup, and the same answer as the provider's client config).
                scopes: Mapping[str, pulumi.Input[str]] = {
                    "": pulumi.Output.from_input(next(iter(groups.values()))).apply(_subscription)
                }
            else:
                scopes = {f"-{site}": rg for site, rg in groups.items()}
            # Azure accepts only the 1st of a month as a start (checked in topology/validate.py),
            # and refuses a past month on create: without a configured date, the budget starts
            # this month and later runs ignore the (then past) date instead of replacing it.
            # The month is UTC's: a local date west of UTC is last month on a month's last evening.
            first = azure.start_date or datetime.datetime.now(datetime.UTC).date().replace(day=1)
            start = f"{first.isoformat()}T00:00:00Z"
            budget_opts = (
                child
                if azure.start_date
                else pulumi.ResourceOptions.merge(
                    child, pulumi.ResourceOptions(ignore_changes=["timePeriod"])
                )
            )
            for suffix, scope in scopes.items():
                for b in azure.budgets:
                    self.azure.append(
                        consumption.Budget(
                            f"{name}-azure{suffix}-{b.name}",
                            scope=scope,
                            # In the billing account's currency, stated as budgets.azure.currency
                            # and checked against the stack's estimate (`hybrid check`).
                            amount=b.amount,
                            category="Cost",
                            time_grain="Monthly",
                            time_period=consumption.BudgetTimePeriodArgs(start_date=start),
                            notifications={
                                f"{kind}_GreaterThan_{t:g}_Percent".replace(".", "_"): (
                                    consumption.NotificationArgs(
                                        enabled=True,
                                        operator="GreaterThan",
                                        threshold=t,
                                        threshold_type=kind,
                                        contact_emails=emails,
                                    )
                                )
                                for t in b.thresholds
                                for kind in _AZURE_KINDS
                            },
                            opts=budget_opts,
                        )
                    )
        self.register_outputs({})


def _subscription(resource_group_id: str) -> str:
    """`/subscriptions/<id>/resourceGroups/<name>` -> `/subscriptions/<id>`."""
    return "/".join(resource_group_id.split("/")[:3])
