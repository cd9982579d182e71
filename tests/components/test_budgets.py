"""Budgets under mocks: the blog's part-3 alerts in AWS and Azure, scopes, switched off."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest

from components import program
from components.offline import ProgramRun, run_program
from topology import Stack, TopologyError, load_stack

AWS = "aws:budgets/budget:Budget"
AZURE = "azure-native:consumption:Budget"
EMAILS = ["billing-alerts@example.com"]
FOUR_SITE = Path(__file__).parents[1] / "stacks" / "Pulumi.four-site.yaml"


def _with_budgets(scope: str = "subscription", enabled: bool = True, start: object = "keep"):
    def build(stack: Stack) -> dict:
        assert stack.budgets is not None and stack.budgets.azure is not None
        update = {"scope": scope} | ({} if start == "keep" else {"start_date": start})
        azure = stack.budgets.azure.model_copy(update=update)
        budgets = stack.budgets.model_copy(update={"azure": azure, "enabled": enabled})
        return program.build(stack.model_copy(update={"budgets": budgets}))

    return build


@pytest.fixture(scope="module")
def per_group() -> ProgramRun:
    """The four-site stack (two Azure sites) with Azure budgets per resource group."""
    return run_program(FOUR_SITE, build=_with_budgets(scope="resourceGroup"))


@pytest.fixture(scope="module")
def fixed_start() -> ProgramRun:
    return run_program("dev", build=_with_budgets(start=datetime.date(2026, 12, 1)))


@pytest.fixture(scope="module")
def switched_off() -> ProgramRun:
    return run_program("dev", build=_with_budgets(enabled=False))


def test_budgets_reference_has_the_blogs_two_budgets_in_each_cloud(dev: ProgramRun) -> None:
    component = dev.one("hybrid:billing:Budgets", "budgets")
    assert {(r.type, r.name) for r in dev.children(component)} == {
        (AWS, "budgets-aws-used-nothing"),
        (AWS, "budgets-aws-self-restraint"),
        (AZURE, "budgets-azure-used-nothing"),
        (AZURE, "budgets-azure-self-restraint"),
    }


@pytest.mark.parametrize(
    ("name", "amount", "thresholds"),
    [("used-nothing", "7.0", (50, 100)), ("self-restraint", "27.0", (80, 100))],
)
def test_budgets_aws_alerts_on_actual_and_forecasted_spend_in_usd(
    dev: ProgramRun, name: str, amount: str, thresholds: tuple[int, ...]
) -> None:
    budget = dev.one(AWS, f"budgets-aws-{name}")
    assert (budget.input("limitAmount"), budget.input("limitUnit")) == (amount, "USD")
    assert (budget.input("budgetType"), budget.input("timeUnit")) == ("COST", "MONTHLY")
    notifications = budget.input("notifications")
    assert {(n["notificationType"], n["threshold"]) for n in notifications} == {
        (kind, t) for t in thresholds for kind in ("ACTUAL", "FORECASTED")
    }
    assert len(notifications) == 2 * len(thresholds)
    for n in notifications:
        assert (n["comparisonOperator"], n["thresholdType"]) == ("GREATER_THAN", "PERCENTAGE")
        assert n["subscriberEmailAddresses"] == EMAILS


@pytest.mark.parametrize(
    ("name", "amount", "thresholds"),
    [("used-nothing", 1000, (50, 100)), ("self-restraint", 4000, (80, 100))],
)
def test_budgets_azure_alerts_per_threshold_from_the_configured_month(
    fixed_start: ProgramRun, name: str, amount: int, thresholds: tuple[int, ...]
) -> None:
    budget = fixed_start.one(AZURE, f"budgets-azure-{name}")
    assert budget.input("amount") == amount
    assert (budget.input("category"), budget.input("timeGrain")) == ("Cost", "Monthly")
    assert budget.input("timePeriod") == {"startDate": "2026-12-01T00:00:00Z"}
    assert budget.ignore_changes == ()
    notifications = budget.input("notifications").values()
    assert {(n["thresholdType"], n["threshold"]) for n in notifications} == {
        (kind, t) for t in thresholds for kind in ("Actual", "Forecasted")
    }
    assert len(notifications) == 2 * len(thresholds)
    for n in notifications:
        assert (n["enabled"], n["operator"], n["contactEmails"]) == (True, "GreaterThan", EMAILS)


def test_budgets_azure_subscription_scope_is_the_subscription_of_the_resources(
    dev: ProgramRun,
) -> None:
    rg = dev.one("azure-native:resources:ResourceGroup", "Hybrid-VNet-rg")
    subscription = "/".join(rg.id.split("/")[:3])
    assert subscription.startswith("/subscriptions/") and subscription.count("/") == 2
    assert {b.input("scope") for b in dev.of_type(AZURE)} == {subscription}


def test_budgets_azure_resource_group_scope_budgets_each_azure_site(per_group: ProgramRun) -> None:
    groups = {
        site: per_group.one("azure-native:resources:ResourceGroup", f"{site}-rg").id
        for site in ("Hybrid-VNet", "Hybrid-VNet2")
    }
    assert {(b.name, b.input("scope")) for b in per_group.of_type(AZURE)} == {
        (f"budgets-azure-{site}-{name}", rg)
        for site, rg in groups.items()
        for name in ("used-nothing", "self-restraint")
    }
    assert len(per_group.of_type(AWS)) == 2


def test_budgets_switched_off_creates_no_budget(switched_off: ProgramRun) -> None:
    assert switched_off.of_type(AWS) == []
    assert switched_off.of_type(AZURE) == []
    # The rest of the stack is unchanged.
    assert switched_off.of_type("aws:rds/instance:Instance")


def test_budgets_azure_without_start_date_starts_this_month_and_keeps_it(dev: ProgramRun) -> None:
    # The reference stack sets no startDate: a fixed one becomes a past month, which Azure
    # refuses on create (audit #6), and the 8-hour stack is created again and again.
    first = datetime.datetime.now(datetime.UTC).date().replace(day=1).isoformat()
    assert len(dev.of_type(AZURE)) == 2
    for budget in dev.of_type(AZURE):
        assert budget.input("timePeriod") == {"startDate": f"{first}T00:00:00Z"}
        assert budget.ignore_changes == ("timePeriod",)


def test_budgets_reference_stack_has_no_fixed_start_date() -> None:
    azure = load_stack("dev").budgets
    assert azure is not None and azure.azure is not None
    assert azure.azure.start_date is None


class _Clock(datetime.datetime):
    """2026-11-30 20:00 in New York, which is already 2026-12-01 01:00 UTC."""

    INSTANT = datetime.datetime(2026, 12, 1, 1, 0, tzinfo=datetime.UTC)
    LOCAL = datetime.timezone(datetime.timedelta(hours=-5))

    @classmethod
    def now(cls, tz: datetime.tzinfo | None = None) -> datetime.datetime:  # type: ignore[override]
        # Without a zone: the machine's local wall clock, as `datetime.now()` gives it.
        return cls.INSTANT.astimezone(tz) if tz else cls.INSTANT.astimezone(cls.LOCAL).replace(tzinfo=None)


class _Date(datetime.date):
    @classmethod
    def today(cls) -> datetime.date:
        return _Clock.now().date()


def test_budgets_default_start_is_the_month_in_utc(monkeypatch: pytest.MonkeyPatch) -> None:
    # West of UTC on the last evening of a month, the local date is still last month: a past
    # start, which Azure refuses (audit #14). Azure's months are UTC months.
    from components import budgets

    clock = type("clock", (), {"datetime": _Clock, "date": _Date, "UTC": datetime.UTC, "timezone": datetime.timezone})
    monkeypatch.setattr(budgets, "datetime", clock)
    run = run_program("dev", build=_with_budgets(start=None))
    assert {b.input("timePeriod")["startDate"] for b in run.of_type(AZURE)} == {"2026-12-01T00:00:00Z"}


def test_budgets_program_refuses_azure_amounts_far_above_the_estimate() -> None:
    # Under `pulumi up` too, before any resource: the blog's yen amounts on a USD account.
    budgets = load_stack("dev").budgets
    assert budgets is not None and budgets.azure is not None
    config = budgets.model_dump(by_alias=True, mode="json")
    config["azure"]["currency"] = "USD"
    with pytest.raises(TopologyError) as e:
        run_program("dev", config={"hybrid-cloud:budgets": json.dumps(config)})
    assert [p.split(":")[0] for p in e.value.problems] == [
        "budgets.azure.budgets[0].amount",
        "budgets.azure.budgets[1].amount",
    ]


# --- the budgets outlive a destroy that stops half-way (audit 2 #6) -------------------------

BUDGET_TYPES = (AWS, AZURE)


def _depends(run: ProgramRun) -> dict[str, set[str]]:
    """Each recorded resource's transitive dependencies (URNs), as the engine orders a destroy."""
    direct = {r.urn: set(r.dependencies) for r in run.records}
    closed: dict[str, set[str]] = {}

    def walk(urn: str) -> set[str]:
        if urn not in closed:
            closed[urn] = set()
            for dep in direct.get(urn, ()):
                closed[urn] |= {dep, *walk(dep)}
        return closed[urn]

    return {urn: walk(urn) for urn in direct}


def test_budgets_are_deleted_after_everything_that_bills(dev: ProgramRun) -> None:
    # Pulumi deletes a resource only after everything that depends on it. A destroy that fails
    # at any billable resource cannot reach what that resource depends on: every budget.
    from tests.test_cost import BILLABLE

    billed_types = set(BILLABLE)
    budgets = {r.urn for r in dev.records if r.type in BUDGET_TYPES}
    billed = [r for r in dev.records if r.type in billed_types]
    assert len(budgets) == 4
    depends = _depends(dev)
    assert {r.name: budgets - depends[r.urn] for r in billed} == {r.name: set() for r in billed}
    assert {r.type for r in billed} == billed_types


def test_budgets_per_resource_group_go_with_their_group() -> None:
    from tests.components.conftest import Options, recording

    options: Options = {}
    run = run_program(FOUR_SITE, build=lambda s: recording(options)(_scoped(s, "resourceGroup")))
    for site in ("Hybrid-VNet", "Hybrid-VNet2"):
        for name in ("used-nothing", "self-restraint"):
            group = options[(AZURE, f"budgets-azure-{site}-{name}")].deleted_with
            assert group is not None
            assert (group.pulumi_resource_type, group.pulumi_resource_name) == (
                "azure-native:resources:ResourceGroup",
                f"{site}-rg",
            )
    # The AWS budgets still come first and outlive everything that bills.
    from tests.test_cost import BILLABLE

    aws = {r.urn for r in run.of_type(AWS)}
    depends = _depends(run)
    assert all(aws <= depends[r.urn] for r in run.records if r.type in BILLABLE)


def _scoped(stack: Stack, scope: str) -> Stack:
    assert stack.budgets is not None and stack.budgets.azure is not None
    azure = stack.budgets.azure.model_copy(update={"scope": scope})
    return stack.model_copy(update={"budgets": stack.budgets.model_copy(update={"azure": azure})})


# --- the bridges' CPU credit ceiling is bounded by an alarm (audit 2 #10) -------------------


def test_budgets_credit_alarm_watches_each_unlimited_bridge_and_mails_the_budget_emails(
    dev: ProgramRun,
) -> None:
    instance = dev.one("aws:ec2/instance:Instance", "Hybrid-VPC-bridge-vm")
    assert instance.input("creditSpecification") == {"cpuCredits": "unlimited"}
    alarm = dev.one("aws:cloudwatch/metricAlarm:MetricAlarm", "bridge-credits-Hybrid-VPC")
    assert (alarm.input("namespace"), alarm.input("metricName")) == ("AWS/EC2", "CPUSurplusCreditBalance")
    assert alarm.input("dimensions") == {"InstanceId": instance.id}
    assert (alarm.input("comparisonOperator"), alarm.input("threshold")) == ("GreaterThanThreshold", 60)
    topic = dev.one("aws:sns/topic:Topic", "bridge-credits-topic")
    assert alarm.input("alarmActions") == [topic.outputs["arn"]]
    mails = dev.of_type("aws:sns/topicSubscription:TopicSubscription")
    assert [(m.input("protocol"), m.input("endpoint"), m.input("topic")) for m in mails] == [
        ("email", e, topic.outputs["arn"]) for e in EMAILS
    ]
    # Only the AWS bridge bills surplus credits.
    assert len(dev.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")) == 1


def test_budgets_switched_off_has_no_credit_alarm(switched_off: ProgramRun) -> None:
    assert switched_off.of_type("aws:cloudwatch/metricAlarm:MetricAlarm") == []


# --- the Azure budgets' currency against the billing account's (audit 2 #11) ----------------


@pytest.mark.parametrize(("billed", "problem"), [("JPY", None), ("USD", "the billing account reports USD")])
def test_budgets_azure_currency_is_checked_against_the_billing_account(
    monkeypatch: pytest.MonkeyPatch, billed: str, problem: str | None
) -> None:
    from components import offline

    # What Azure returns for a created budget: its current spend, in the account's currency.
    spend = {"currentSpend": {"amount": 0.0, "unit": billed}}
    monkeypatch.setitem(offline.COMPUTED, AZURE, lambda a: spend)
    run = run_program("dev")
    check = run.exports["budgetCurrency"].value
    assert (check["stated"], check["billed"]) == ("JPY", billed)
    if problem is None:
        assert check["problem"] is None
    else:
        assert check["problem"].startswith("budgets.azure.currency: JPY, but")
        assert problem in check["problem"]


def test_budgets_azure_currency_unknown_before_a_budget_exists(dev: ProgramRun) -> None:
    assert dev.exports["budgetCurrency"].value == {"stated": "JPY", "billed": None, "problem": None}
