"""`hybrid cost`: the price table, the estimate's arithmetic, regions, the managed comparison."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli.main import main
from topology import parse_stack, project_config, read_stack_file, stack_file
from topology.cost import Estimate, PriceError, Prices, estimate, load_prices

FOUR_SITE = Path(__file__).parent / "stacks" / "Pulumi.four-site.yaml"


def priced(path: Path, **overrides: Any) -> Estimate:
    """The estimate of a stack file, with `overrides` applied to its whole `config:` map."""
    config = read_stack_file(path) | overrides
    return estimate(parse_stack(project_config(config)), config, load_prices())


def dev(**overrides: Any) -> Estimate:
    return priced(stack_file("dev"), **overrides)


def test_cost_price_table_is_dated_and_every_price_has_a_public_source():
    prices = load_prices()
    assert dt.date.fromisoformat(prices.as_of)
    for key, entry in prices.table.items():
        assert entry["source"].startswith("https://"), key
        cloud_regions = {"aws": {"us-east-1", "ap-northeast-1"}, "azure": {"eastus", "japaneast"}}
        assert cloud_regions[key.split("_")[0]] <= set(entry["regions"]), key


def test_cost_totals_add_up():
    est = dev()
    every = [*est.links, *est.shared]
    assert est.softether_total == pytest.approx(
        sum(line.quantity * line.unit_price for line in every)
    )
    assert est.managed_total == pytest.approx(sum(ln.monthly for ln in [*est.managed, *est.shared]))
    assert est.saving == pytest.approx(1 - Estimate.total(est.links) / Estimate.total(est.managed))


def test_cost_dev_prices_each_billable_resource_once():
    est = dev()
    items = [f"{ln.site}: {ln.item}" for ln in est.links + est.shared]
    assert items == [
        "Hybrid-VPC: bridge VM t4g.nano (ap-northeast-1)",
        "Hybrid-VPC: bridge public IPv4 (ap-northeast-1)",
        "Hybrid-VPC: bridge root volume 8 GiB (ap-northeast-1)",
        "Hybrid-VPC: bridge surplus CPU credits, upstream install at first boot (ap-northeast-1)",
        "Hybrid-VPC: bridge CPU credit alarm (ap-northeast-1)",
        "Hybrid-VNet: bridge VM Standard_B1ls (japaneast)",
        "Hybrid-VNet: bridge public IP (japaneast)",
        "Hybrid-VNet: bridge OS disk S4 (japaneast)",
        "Hybrid-VPC: data transfer out (ap-northeast-1)",
        "Hybrid-VNet: data transfer out (japaneast)",
        "Hybrid-VPC: RDS MySQL db.t4g.micro Single-AZ (ap-northeast-1)",
        "Hybrid-VPC: RDS storage 20 GB (ap-northeast-1)",
        "Hybrid-VNet: App Service plan B1 (japaneast)",
        "Hybrid-VNet: wp-content share 1 GiB (japaneast)",
        "Hybrid-VNet: App Service private endpoint 192.168.30.254 (japaneast)",
        "Hybrid-VNet: private DNS zone privatelink.azurewebsites.net (japaneast)",
    ]
    vm = est.links[0]
    assert (vm.quantity, vm.unit, vm.unit_price) == (
        730,
        "h",
        load_prices().table["aws_instance"]["regions"]["ap-northeast-1"]["t4g.nano"],
    )


def test_cost_states_the_worst_case_of_unlimited_cpu_credits(capsys: pytest.CaptureFixture[str]):
    # audit 2 #10: a t4g.nano at 100 % CPU all month bills (2 vCPUs - 5 % baseline each) x 730 h
    # of surplus credits, in no total; the credit alarm bounds it.
    (ceiling,) = dev().ceilings
    burst = load_prices().burstable["t4g.nano"]
    assert burst == {"vcpus": 2, "baseline": 0.05}
    assert (ceiling.site, ceiling.key, ceiling.unit) == ("Hybrid-VPC", "aws_cpu_credits", "vCPU-h")
    assert ceiling.quantity == pytest.approx(2 * 0.95 * 730)
    assert ceiling.monthly == pytest.approx(55.48)
    assert main(["cost", "--stack", "dev"]) == 0
    out = capsys.readouterr().out
    assert "worst case, Hybrid-VPC: bridge t4g.nano at 100 % CPU all month, surplus credits" in out
    assert "= 55.48 USD/month on top" in out
    assert "bounded by the bridges' CPU credit alarm: it mails billing-alerts@example.com" in out


def test_cost_managed_alternative_prices_the_same_links():
    est = dev()
    assert [f"{ln.site}: {ln.item}" for ln in est.managed] == [
        "Hybrid-VPC: Site-to-Site VPN connection (ap-northeast-1)",
        "Hybrid-VPC: virtual private gateway (ap-northeast-1)",
        "Hybrid-VNet: VPN Gateway VpnGw1 (japaneast)",
        "Hybrid-VNet: VPN Gateway public IP (japaneast)",
    ]
    assert Estimate.total(est.managed) > Estimate.total(est.links)
    assert 0 < est.saving < 1


def test_cost_per_cloud_totals_split_the_softether_total():
    est = dev()
    clouds = est.by_cloud()
    assert set(clouds) == {"aws", "azure"}
    assert sum(clouds.values()) == pytest.approx(est.softether_total)
    rds = next(ln for ln in est.shared if ln.key == "aws_rds_mysql")
    assert clouds["aws"] > rds.monthly


def test_cost_cli_compares_the_aws_part_with_the_aws_budgets(capsys: pytest.CaptureFixture[str]):
    assert main(["cost", "--stack", "dev"]) == 0
    aws = dev().by_cloud()["aws"]
    crossed = sum(aws > amount for amount in (7, 27))
    line = "AWS budgets (USD/month): used-nothing 7, self-restraint 27; a full month up crosses"
    assert f"{line} {crossed} of 2" in capsys.readouterr().out


def test_cost_region_changes_the_price():
    tokyo, virginia = dev(), dev(**{"aws:region": "us-east-1", "azure-native:location": "eastus"})
    assert virginia.softether_total < tokyo.softether_total
    assert (
        virginia.links[0].unit_price
        == load_prices().table["aws_instance"]["regions"]["us-east-1"]["t4g.nano"]
    )
    # Only the AWS lines move when only the AWS region does.
    mixed = dev(**{"aws:region": "us-east-1"})
    assert [ln.unit_price for ln in mixed.links if ln.site == "Hybrid-VNet"] == [
        ln.unit_price for ln in tokyo.links if ln.site == "Hybrid-VNet"
    ]
    assert [ln.unit_price for ln in mixed.links if ln.site == "Hybrid-VPC"] == [
        ln.unit_price for ln in virginia.links if ln.site == "Hybrid-VPC"
    ]


def test_cost_four_site_stack_costs_more_than_dev():
    four, two = priced(FOUR_SITE), dev()
    assert four.softether_total > two.softether_total
    assert Estimate.total(four.managed) > Estimate.total(two.managed)
    # The fourth site has no bridge size: the default size is priced.
    assert "Hybrid-VNet2: bridge VM Standard_B1ls (japaneast)" in [
        f"{ln.site}: {ln.item}" for ln in four.links
    ]


def test_cost_multi_az_database_bills_two_instances():
    config = read_stack_file(stack_file("dev"))
    cfg = project_config(config)
    single = estimate(parse_stack(cfg), config, load_prices())
    multi = estimate(
        parse_stack(cfg | {"database": cfg["database"] | {"multiAz": True}}), config, load_prices()
    )
    rds = [
        (a.monthly, b.monthly)
        for a, b in zip(single.shared, multi.shared, strict=True)
        if "RDS" in a.item
    ]
    assert len(rds) == 2
    assert all(math.isclose(m, 2 * s) for s, m in rds)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"aws:region": "mars-1"},
            "aws:region: 'mars-1' has no aws_instance price in prices.yaml (priced: ap-northeast-1, us-east-1)",
        ),
        (
            {"azure-native:location": "moon"},
            "azure-native:location: 'moon' has no azure_vm price in prices.yaml (priced: eastus, japaneast)",
        ),
        ({"aws:region": None}, "aws:region: missing (site Hybrid-VPC has no region of its own)"),
    ],
)
def test_cost_unpriced_region_names_the_field(overrides: dict[str, Any], message: str):
    with pytest.raises(PriceError) as e:
        dev(**overrides)
    assert str(e.value) == message


def test_cost_cli_unpriced_size_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    # An EC2 instance type (hybrid check accepts it) that the price table does not list.
    doc = yaml.safe_load(stack_file("dev").read_text())
    doc["config"]["hybrid-cloud:network"]["sites"][0]["bridge"]["size"] = "c7g.large"
    path = tmp_path / "Pulumi.big.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert main(["cost", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(
        f"{path}: network.sites[0].bridge.size: 'c7g.large' has no aws_instance price in ap-northeast-1"
    )


def test_cost_cli_prints_total_and_managed_comparison(capsys: pytest.CaptureFixture[str]):
    assert main(["cost", "--stack", "dev"]) == 0
    out = capsys.readouterr().out
    est = dev()
    assert (
        f"total: {est.softether_total:.2f} USD/month with SoftEther, {est.managed_total:.2f} with the managed VPN"
        in out
    )
    assert f"({est.saving:.0%})" in out
    assert "Managed alternative for the same links" in out
    assert f"list prices as of {load_prices().as_of}" in out


def test_cost_cli_json_matches_the_estimate(capsys: pytest.CaptureFixture[str]):
    assert main(["cost", "--stack", "dev", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["softether_total"] == round(dev().softether_total, 2)
    assert {ln["site"] for ln in doc["managed_links"]} == {"Hybrid-VPC", "Hybrid-VNet"}


def test_cost_prices_reject_an_unknown_size_in_a_known_region():
    prices: Prices = load_prices()
    with pytest.raises(
        PriceError, match=r"^app.sku: 'P9' has no azure_app_service price in eastus"
    ):
        prices.price("azure_app_service", ("azure-native:location", "eastus"), ("app.sku", "P9"))


# What `hybrid cost` prices for each billable resource type the program creates.
BILLABLE = {
    "aws:ec2/instance:Instance": "aws_instance",
    "aws:ec2/eip:Eip": "aws_public_ipv4",
    "aws:rds/instance:Instance": "aws_rds_mysql",
    "aws:cloudwatch/metricAlarm:MetricAlarm": "aws_cloudwatch_alarm",
    "azure-native:compute:VirtualMachine": "azure_vm",
    "azure-native:network:PublicIPAddress": "azure_public_ip",
    "azure-native:web:AppServicePlan": "azure_app_service",
    "azure-native:storage:FileShare": "azure_files",
    "azure-native:network:PrivateEndpoint": "azure_private_endpoint",
    "azure-native:privatedns:PrivateZone": "azure_private_dns_zone",
}
# Resource types with no charge of their own: the network plumbing, budgets, the web app (billed
# through its plan), the storage account (billed through the share), the private zone's VNet link and the endpoint's zone group (billed with the zone and the endpoint), NICs (the EC2 root volume and the Azure OS disk come with the VM and are
# priced from the price table's assumptions), and what never leaves Pulumi's state
# (generated passwords and keys, the SoftEther configuration applied over SSH).
FREE = {
    "aws:budgets/budget:Budget",
    "aws:ec2/internetGateway:InternetGateway",
    "aws:ec2/networkInterface:NetworkInterface",
    "aws:ec2/route:Route",
    "aws:ec2/routeTable:RouteTable",
    "aws:ec2/routeTableAssociation:RouteTableAssociation",
    "aws:ec2/securityGroup:SecurityGroup",
    "aws:ec2/subnet:Subnet",
    "aws:ec2/vpc:Vpc",
    "aws:ec2/vpcIpv4CidrBlockAssociation:VpcIpv4CidrBlockAssociation",
    "aws:rds/subnetGroup:SubnetGroup",
    "aws:sns/topic:Topic",
    "aws:sns/topicSubscription:TopicSubscription",
    "azure-native:consumption:Budget",
    "azure-native:network:NetworkInterface",
    "azure-native:network:NetworkSecurityGroup",
    "azure-native:network:RouteTable",
    "azure-native:network:Subnet",
    "azure-native:network:VirtualNetwork",
    "azure-native:resources:ResourceGroup",
    "azure-native:web:WebApp",
    "azure-native:privatedns:VirtualNetworkLink",
    "azure-native:network:PrivateDnsZoneGroup",
    "azure-native:storage:StorageAccount",
    "random:index/randomPassword:RandomPassword",
    "tls:index/privateKey:PrivateKey",
    "pulumi-python:dynamic/softether:SoftEtherNode",
}


def test_cost_billable_types_are_the_ones_that_depend_on_the_budgets():
    # components/budgets.py makes these depend on the budgets, so a destroy deletes them first.
    from components.budgets import BILLED

    assert set(BILLABLE) == BILLED


@pytest.mark.parametrize("path", [stack_file("dev"), FOUR_SITE], ids=["dev", "four-site"])
def test_cost_prices_every_billable_resource_the_program_records(path: Path):
    from components.offline import run_program

    recorded = Counter(r.type for r in run_program(path).records if r.custom)
    unclassified = set(recorded) - set(BILLABLE) - FREE
    assert not unclassified, "a new resource type: price it in topology/cost.py, or list it in FREE"
    est = priced(path)
    priced_keys = Counter(line.key for line in (*est.links, *est.shared))
    assert {t: priced_keys[key] for t, key in BILLABLE.items()} == {
        t: recorded[t] for t in BILLABLE
    }



def test_cost_aws_bridge_credit_mode_is_unlimited_and_its_build_is_priced(capsys: pytest.CaptureFixture[str]):
    # t4g bursts in unlimited mode (AWS's default, set explicitly by components/bridge.py):
    # the first-boot build's surplus credits are billed per vCPU-hour (audit #12).
    est, prices = dev(), load_prices()
    (credits,) = [ln for ln in est.links if ln.key == "aws_cpu_credits"]
    minutes = prices.assumptions["aws_bridge_build_vcpu_minutes"]["upstream"]
    assert (credits.site, credits.unit, credits.quantity) == ("Hybrid-VPC", "vCPU-h", minutes / 60)
    assert credits.unit_price == prices.table["aws_cpu_credits"]["regions"]["ap-northeast-1"]
    assert main(["cost", "--stack", "dev"]) == 0
    out = capsys.readouterr().out
    assert "CPU credits: unlimited" in out
    debian = priced(stack_file("dev"), **{"hybrid-cloud:network": _network(softether={"source": "debian"})})
    (cheap,) = [ln for ln in debian.links if ln.key == "aws_cpu_credits"]
    assert cheap.quantity < credits.quantity


def _network(**changes: Any) -> dict[str, Any]:
    net = yaml.safe_load(stack_file("dev").read_text())["config"]["hybrid-cloud:network"]
    return net | changes


def _budget_stack(tmp_path: Path, currency: str, amounts: tuple[float, float] = (1000, 4000)) -> Path:
    doc = yaml.safe_load(stack_file("dev").read_text())
    azure = doc["config"]["hybrid-cloud:budgets"]["azure"]
    azure["currency"] = currency
    for budget, amount in zip(azure["budgets"], amounts, strict=True):
        budget["amount"] = amount
    path = tmp_path / "Pulumi.budget.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize("command", ["check", "cost"])
def test_cost_azure_budget_far_above_the_estimate_is_refused(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    # The blog's 1,000 and 4,000 are yen; on a USD billing account they would alert at
    # $4,000, 150 times this stack's Azure bill (audit #11).
    path = _budget_stack(tmp_path, "USD")
    assert main([command, str(path)]) == 2
    err = capsys.readouterr().err.splitlines()
    azure = dev().by_cloud()["azure"]
    assert err == [
        f"{path}: budgets.azure.budgets[{i}].amount: {amount} USD is more than 10 times this"
        f" stack's Azure estimate ({azure:.2f} USD/month); is budgets.azure.currency right?"
        for i, amount in ((0, 1000), (1, 4000))
    ]


def test_cost_azure_budget_in_the_stated_currency_is_accepted(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["check", "--stack", "dev"]) == 0
    assert main(["check", str(_budget_stack(tmp_path, "USD", (7, 27)))]) == 0
    assert main(["cost", "--stack", "dev"]) == 0
    rate = load_prices().per_usd["JPY"]
    assert (
        f"Azure budgets (JPY/month): used-nothing 1000, self-restraint 4000; this stack's Azure"
        f" estimate is {dev().by_cloud()['azure'] * rate:.0f} JPY/month" in capsys.readouterr().out
    )


def test_cost_azure_budget_currency_without_a_rate_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = _budget_stack(tmp_path, "XAU")
    assert main(["check", str(path)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"{path}: budgets.azure.currency: XAU has no exchange rate in prices.yaml (known: ")


def test_cost_private_site_prices_its_endpoint_and_zone_and_a_public_one_neither():
    prices = load_prices()
    private = {ln.key: ln for ln in dev().shared}
    endpoint, zone = private["azure_private_endpoint"], private["azure_private_dns_zone"]
    assert (endpoint.quantity, endpoint.unit, endpoint.unit_price) == (
        730,
        "h",
        prices.table["azure_private_endpoint"]["regions"]["japaneast"],
    )
    assert (zone.quantity, zone.unit) == (1, "month")
    assert endpoint.source == "https://azure.microsoft.com/en-us/pricing/details/private-link/"
    assert zone.source == "https://azure.microsoft.com/en-us/pricing/details/dns/"
    app = read_stack_file(stack_file("dev"))["hybrid-cloud:app"]
    public = dev(**{"hybrid-cloud:app": app | {"access": "public"}})
    assert {"azure_private_endpoint", "azure_private_dns_zone"}.isdisjoint(ln.key for ln in public.shared)
    assert dev().softether_total - public.softether_total == pytest.approx(endpoint.monthly + zone.monthly)
