"""Budgets: cost alerts in AWS and Azure, so a forgotten resource is noticed (blog part 3), and
the AWS bridges' CPU credit alarm.

The budgets are the backstop of a destroy that fails, so a destroy must not remove them while
anything still bills: `Budgets` is created before the network and every billable resource
depends on its AWS and subscription-scope Azure budgets (`depend_on_budgets`), so Pulumi
deletes those budgets last, and a destroy that stops half-way leaves them. Budgets scoped to a
resource group need the group first: they are `deleted_with` it (the group goes last, after
everything in it), so Pulumi never deletes them on its own while the group exists.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
from pulumi_aws import budgets as aws_budgets
from pulumi_aws import cloudwatch, sns
from pulumi_azure_native import authorization, consumption

from topology import Budgets as BudgetsConfig

# Each threshold alerts twice: once spent, and once the month's forecast crosses it.
_AWS_KINDS = ("ACTUAL", "FORECASTED")
_AZURE_KINDS = ("Actual", "Forecasted")

# Every resource type that bills by itself (tests/test_cost.py prices each one): these are
# made to depend on the budgets, so that a destroy deletes the budgets after them.
BILLED = frozenset(
    {
        "aws:ec2/instance:Instance",
        "aws:ec2/eip:Eip",
        "aws:rds/instance:Instance",
        "aws:cloudwatch/metricAlarm:MetricAlarm",
        "azure-native:compute:VirtualMachine",
        "azure-native:network:PublicIPAddress",
        "azure-native:web:AppServicePlan",
        "azure-native:storage:FileShare",
        "azure-native:network:PrivateEndpoint",
        "azure-native:privatedns:PrivateZone",
    }
)


@dataclass(frozen=True)
class BudgetsArgs:
    config: BudgetsConfig


class Budgets(pulumi.ComponentResource):
    """One AWS budget per `budgets.aws` entry and one Azure budget per entry and scope; the
    resource-group scope's come with `for_groups` once the groups exist. `currency` is what
    the Azure billing account reports, once a budget exists (None before, or without any)."""

    aws: list[aws_budgets.Budget]
    azure: list[consumption.Budget]

    def __init__(
        self, name: str, args: BudgetsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybrid:billing:Budgets", name, None, opts)
        self._name, self._config = name, args.config
        cfg = args.config
        child = pulumi.ResourceOptions(parent=self)
        self.aws, self.azure = [], []
        if cfg.enabled:
            self.aws = [
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
                            subscriber_email_addresses=list(cfg.emails),
                        )
                        for t in b.thresholds
                        for kind in _AWS_KINDS
                    ],
                    opts=child,
                )
                for b in cfg.aws
            ]
        if cfg.enabled and cfg.azure is not None and cfg.azure.scope == "subscription":
            # The subscription the provider deploys into, the one that bills the stack's groups.
            client = authorization.get_client_config_output(opts=pulumi.InvokeOutputOptions(parent=self))
            scope = client.subscription_id.apply(lambda sub: f"/subscriptions/{sub}")
            self.azure += self._azure_budgets("", scope, child)
        self.register_outputs({})

    @property
    def first(self) -> list[pulumi.Resource]:
        """The budgets that exist before the network: what billable resources depend on."""
        return [*self.aws, *self.azure]

    def for_groups(self, groups: Mapping[str, pulumi.CustomResource]) -> None:
        """With resource-group scope: one set of Azure budgets per Azure site's group."""
        azure = self._config.azure
        if not self._config.enabled or azure is None or azure.scope != "resourceGroup":
            return
        if not groups:
            raise ValueError("budgets.azure: this stack has no Azure site to budget")
        for site, rg in groups.items():
            opts = pulumi.ResourceOptions(parent=self, deleted_with=rg)
            self.azure += self._azure_budgets(f"-{site}", rg.id, opts)

    def _azure_budgets(
        self, suffix: str, scope: pulumi.Input[str], opts: pulumi.ResourceOptions
    ) -> list[consumption.Budget]:
        azure = self._config.azure
        assert azure is not None
        # Azure accepts only the 1st of a month as a start (checked in topology), and refuses
        # a past month on create: without a configured date, the budget starts this month and
        # later runs ignore the (then past) date instead of replacing it. The month is UTC's: a
        # local date west of UTC is last month on a month's last evening.
        first = azure.start_date or datetime.datetime.now(datetime.UTC).date().replace(day=1)
        if azure.start_date is None:
            opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(ignore_changes=["timePeriod"]))
        return [
            consumption.Budget(
                f"{self._name}-azure{suffix}-{b.name}",
                scope=scope,
                # In the billing account's currency, stated as budgets.azure.currency, checked
                # against the stack's estimate (`hybrid check`) and against `currency`.
                amount=b.amount,
                category="Cost",
                time_grain="Monthly",
                time_period=consumption.BudgetTimePeriodArgs(start_date=f"{first.isoformat()}T00:00:00Z"),
                notifications={
                    f"{kind}_GreaterThan_{t:g}_Percent".replace(".", "_"): consumption.NotificationArgs(
                        enabled=True,
                        operator="GreaterThan",
                        threshold=t,
                        threshold_type=kind,
                        contact_emails=list(self._config.emails),
                    )
                    for t in b.thresholds
                    for kind in _AZURE_KINDS
                },
                opts=opts,
            )
            for b in azure.budgets
        ]

    def currency_check(self) -> pulumi.Output[dict[str, str | None]] | None:
        """The Azure budgets' stated currency next to the one the billing account reports
        (`currentSpend.unit`, known once a budget exists), and the problem when they differ,
        also logged as a warning of the `pulumi up`. None without Azure budgets."""
        azure = self._config.azure
        if azure is None or not self.azure:
            return None
        stated = azure.currency

        def judge(spends: Sequence[object]) -> dict[str, str | None]:
            units = {str(u) for s in spends if (u := _unit(s))}
            billed = ", ".join(sorted(units)) or None
            problem = None
            if billed is not None and units != {stated}:
                problem = (
                    f"budgets.azure.currency: {stated}, but the billing account reports {billed}:"
                    f" the budgets' amounts are read as {billed}; restate them and the currency"
                )
                pulumi.log.warn(problem, self)
            return {"stated": stated, "billed": billed, "problem": problem}

        return pulumi.Output.all(*(b.current_spend for b in self.azure)).apply(judge)


def _unit(spend: object) -> str | None:
    """`currentSpend.unit` as the SDK hands it (a typed output, or a plain dict)."""
    if isinstance(spend, Mapping):
        return spend.get("unit")  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
    return getattr(spend, "unit", None)


def depend_on_budgets(budgets: Budgets) -> None:
    """From now on, every billable resource depends on the budgets that already exist, so a
    destroy deletes them after everything that bills."""
    first = budgets.first
    if not first:
        return

    def transform(args: pulumi.ResourceTransformationArgs) -> pulumi.ResourceTransformationResult | None:
        if args.type_ not in BILLED:
            return None
        more = pulumi.ResourceOptions(depends_on=first)
        return pulumi.ResourceTransformationResult(args.props, pulumi.ResourceOptions.merge(args.opts, more))

    pulumi.runtime.register_stack_transformation(transform)


@dataclass(frozen=True)
class CreditAlarmArgs:
    """`instances`: site name -> (instance id, region or None) of every unlimited-credit bridge."""

    instances: Mapping[str, tuple[pulumi.Input[str], str | None]]
    emails: Sequence[str]
    threshold: float  # surplus credits (vCPU-minutes), topology.cost.credit_alarm_threshold


class CreditAlarm(pulumi.ComponentResource):
    """Bounds the AWS bridges' unlimited CPU credits: an alarm per bridge on its surplus credit
    balance (what AWS bills on top of the hour), mailing the budgets' addresses through an SNS
    topic (each address confirms the subscription once, from AWS's mail)."""

    def __init__(
        self, name: str, args: CreditAlarmArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybrid:billing:CreditAlarm", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.alarms: list[cloudwatch.MetricAlarm] = []
        regions = sorted({region or "" for _, region in args.instances.values()})
        topics: dict[str, sns.Topic] = {}
        for region in regions:
            suffix = f"-{region}" if region else ""
            topic = sns.Topic(f"{name}-topic{suffix}", region=region or None, opts=child)
            topics[region] = topic
            for i, email in enumerate(args.emails):
                sns.TopicSubscription(
                    f"{name}-mail{suffix}-{i}",
                    topic=topic.arn,
                    protocol="email",
                    endpoint=email,
                    region=region or None,
                    opts=child,
                )
        for site, (instance_id, region) in args.instances.items():
            self.alarms.append(
                cloudwatch.MetricAlarm(
                    f"{name}-{site}",
                    alarm_description=(
                        f"The {site} bridge spends surplus CPU credits beyond one first-boot install:"
                        " billed per vCPU-hour on top of the instance (hybrid cost: worst case)"
                    ),
                    namespace="AWS/EC2",
                    metric_name="CPUSurplusCreditBalance",
                    dimensions={"InstanceId": instance_id},
                    statistic="Maximum",
                    period=300,
                    evaluation_periods=1,
                    comparison_operator="GreaterThanThreshold",
                    threshold=args.threshold,
                    treat_missing_data="notBreaching",
                    alarm_actions=[topics[region or ""].arn],
                    region=region,
                    opts=child,
                )
            )
        self.register_outputs({})
