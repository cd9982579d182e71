"""A stack's monthly bill, next to the managed VPN it replaces (`hybrid cost` prints it).

Pure: `estimate(stack, config, prices)` turns a stack and the price table (`topology/prices.yaml`)
into priced lines. Three groups: the SoftEther links (a bridge VM, its public IP and disk per
cloud site), what costs the same either way (PaaS, data transfer), and the managed
alternative for the same links (AWS Site-to-Site VPN on a virtual private gateway per AWS site,
an Azure VPN Gateway with its public IP per Azure site).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, assert_never

import yaml

from .clouds import rules
from .model import CloudSite, Stack

PRICES = Path(__file__).with_name("prices.yaml")
# An Azure budget above this multiple of the stack's own Azure estimate is no backstop: most
# likely its amounts are in another currency than the billing account's (the blog's 1,000 and
# 4,000 are yen; on a USD account they alert at $4,000).
BUDGET_CEILING = 10

MANAGED_GATEWAY_SKU = "VpnGw1"
# The bridges' CPU credit alarm (components/budgets.py) fires when the surplus credit balance
# passes this multiple of one first-boot install's surplus: the install alone stays below it,
# a bridge spinning at 100 % passes it within the hour.
CREDIT_ALARM_FACTOR = 2


@dataclass(frozen=True)
class Line:
    """One priced resource; `key` is its entry in the price table."""

    key: str
    site: str
    item: str
    quantity: float
    unit: str
    unit_price: float
    source: str

    @property
    def monthly(self) -> float:
        return self.quantity * self.unit_price


@dataclass(frozen=True)
class Prices:
    """The price table: `price(key, region, size)` or a one-line error naming the stack field."""

    as_of: str
    currency: str
    hours_per_month: float
    assumptions: Mapping[str, Any]
    table: Mapping[str, Mapping[str, Any]]
    per_usd: Mapping[str, float]  # approximate exchange rates, for the budget check
    burstable: Mapping[str, Mapping[str, float]]  # size -> vcpus, baseline (per vCPU)
    burstable_source: str

    def price(
        self, key: str, region: tuple[str, str], size: tuple[str, str] | None = None
    ) -> tuple[float, Mapping[str, Any]]:
        """(unit price, the entry) of `key` in `region`; `region` and `size` are (field, value)."""
        entry = self.table[key]
        by_region = entry["regions"]
        field, name = region
        if name not in by_region:
            raise PriceError(
                f"{field}: {name!r} has no {key} price in {PRICES.name} (priced: {', '.join(sorted(by_region))})"
            )
        value = by_region[name]
        if size is None:
            return float(value), entry
        field, name = size
        if name not in value:
            raise PriceError(
                f"{field}: {name!r} has no {key} price in {region[1]} in {PRICES.name} (priced: {', '.join(sorted(value))})"
            )
        return float(value[name]), entry


class PriceError(ValueError):
    """A stack choice the price table cannot price: one line naming the field and value."""


def load_prices(path: Path = PRICES) -> Prices:
    doc = yaml.safe_load(path.read_text())
    return Prices(
        as_of=str(doc["as_of"]),
        currency=doc["currency"],
        hours_per_month=float(doc["hours_per_month"]),
        assumptions=doc["assumptions"],
        table=doc["prices"],
        per_usd={k: float(v) for k, v in doc["exchange"]["per_usd"].items()},
        burstable=doc["burstable"]["sizes"],
        burstable_source=doc["burstable"]["source"],
    )


@dataclass(frozen=True)
class Estimate:
    """`ceilings`: what can bill on top at worst (an unlimited-credit bridge at 100 % CPU all
    month), in no total."""

    links: tuple[Line, ...]
    shared: tuple[Line, ...]
    managed: tuple[Line, ...]
    prices: Prices
    ceilings: tuple[Line, ...] = ()

    @staticmethod
    def total(lines: tuple[Line, ...]) -> float:
        return sum(line.monthly for line in lines)

    @property
    def softether_total(self) -> float:
        return self.total(self.links) + self.total(self.shared)

    @property
    def managed_total(self) -> float:
        return self.total(self.managed) + self.total(self.shared)

    def by_cloud(self) -> dict[str, float]:
        """The SoftEther total per cloud ("aws", "azure"): what each cloud's budgets see."""
        out: dict[str, float] = {}
        for line in (*self.links, *self.shared):
            cloud = line.key.split("_")[0]
            out[cloud] = out.get(cloud, 0.0) + line.monthly
        return out

    @property
    def saving(self) -> float:
        """The share of the managed links' cost that SoftEther saves (0.9 = 90 % cheaper)."""
        managed = self.total(self.managed)
        return 1 - self.total(self.links) / managed if managed else 0.0

    def to_json(self) -> dict[str, Any]:
        def lines(group: tuple[Line, ...]) -> list[dict[str, Any]]:
            return [asdict(line) | {"monthly": round(line.monthly, 4)} for line in group]

        return {
            "as_of": self.prices.as_of,
            "currency": self.prices.currency,
            "hours_per_month": self.prices.hours_per_month,
            "assumptions": dict(self.prices.assumptions),
            "softether_links": lines(self.links),
            "shared": lines(self.shared),
            "managed_links": lines(self.managed),
            "ceilings": lines(self.ceilings),
            "softether_total": round(self.softether_total, 2),
            "managed_total": round(self.managed_total, 2),
            "by_cloud": {cloud: round(total, 2) for cloud, total in self.by_cloud().items()},
            "saving": round(self.saving, 4),
        }


def _region(stack: Stack, config: Mapping[str, Any], site: CloudSite) -> tuple[str, str]:
    """(the field that sets the site's region, the region)."""
    if site.region:
        index = stack.network.sites.index(site)
        return f"network.sites[{index}].region", site.region
    key = rules(site.cloud).region_key
    if not config.get(key):
        raise PriceError(f"{key}: missing (site {site.name} has no region of its own)")
    return key, str(config[key])


def estimate(stack: Stack, config: Mapping[str, Any], prices: Prices) -> Estimate:
    """Price `stack`; `config` is the stack file's whole `config:` map (for provider regions)."""
    hours = prices.hours_per_month
    a = prices.assumptions

    def line(
        site: str,
        key: str,
        label: str,
        quantity: float,
        region: tuple[str, str],
        size: tuple[str, str] | None = None,
    ) -> Line:
        unit_price, entry = prices.price(key, region, size)
        return Line(
            key,
            site,
            f"{label} ({region[1]})",
            quantity,
            entry["unit"],
            unit_price,
            entry["source"],
        )

    links: list[Line] = []
    shared: list[Line] = []
    managed: list[Line] = []
    ceilings: list[Line] = []
    for i, site in enumerate(stack.network.sites):
        region = _region(stack, config, site)
        size = site.bridge_size
        size_field = (f"network.sites[{i}].bridge.size", size)
        cloud = rules(site.cloud)
        # A bridge pair: two of everything a bridge has (each VM its disk, address, credits).
        n = len(site.bridge_vms)
        each = f" x{n}" if n > 1 else ""
        links += [
            line(site.name, cloud.price_vm, f"bridge VM {size}{each}", n * hours, region, size_field),
            line(site.name, cloud.price_public_ip, f"bridge {cloud.public_ip_label}{each}", n * hours, region),
        ]
        shared.append(
            line(site.name, cloud.price_egress, "data transfer out", a["egress_gb_per_site"], region)
        )
        match site.cloud:
            case "aws":
                links.append(
                    line(
                        site.name,
                        "aws_ebs",
                        f"bridge root volume {a['aws_bridge_volume_gb']} GiB{each}",
                        n * a["aws_bridge_volume_gb"],
                        region,
                    )
                )
                if site.cpu_credits == "unlimited":
                    source = stack.network.softether.source
                    links.append(
                        line(
                            site.name,
                            "aws_cpu_credits",
                            f"bridge surplus CPU credits, {source} install at first boot{each}",
                            n * a["aws_bridge_build_vcpu_minutes"][source] / 60,
                            region,
                        )
                    )
                    if size not in prices.burstable:
                        raise PriceError(
                            f"{size_field[0]}: {size!r} has no vCPUs and baseline in {PRICES.name}"
                            f" burstable (listed: {', '.join(sorted(prices.burstable))})"
                        )
                    cpu = prices.burstable[size]
                    ceilings.append(
                        line(
                            site.name,
                            "aws_cpu_credits",
                            f"bridge {size} at 100 % CPU all month, surplus credits{each}",
                            n * cpu["vcpus"] * (1 - cpu["baseline"]) * hours,
                            region,
                        )
                    )
                    if credit_alarm_emails(stack):
                        links.append(
                            line(site.name, "aws_cloudwatch_alarm", f"bridge CPU credit alarm{each}", n, region)
                        )
                managed += [
                    line(site.name, "aws_vpn_connection", "Site-to-Site VPN connection", hours, region),
                    line(site.name, "aws_vgw", "virtual private gateway", hours, region),
                ]
            case "azure":
                tier = a["azure_bridge_disk_tier"]
                links.append(
                    line(
                        site.name,
                        "azure_disk",
                        f"bridge OS disk {tier}{each}",
                        n,
                        region,
                        ("assumptions.azure_bridge_disk_tier", tier),
                    )
                )
                gateway = ("managed gateway SKU", MANAGED_GATEWAY_SKU)
                managed += [
                    line(
                        site.name,
                        "azure_vpn_gateway",
                        f"VPN Gateway {MANAGED_GATEWAY_SKU}",
                        hours,
                        region,
                        gateway,
                    ),
                    line(site.name, "azure_public_ip", "VPN Gateway public IP", hours, region),
                ]
            case _:
                assert_never(site.cloud)
    if stack.database is not None:
        db = stack.database
        region = _region(stack, config, stack.network.site(db.site))
        copies = 2 if db.multi_az else 1
        az = "Multi-AZ" if db.multi_az else "Single-AZ"
        shared += [
            line(
                db.site,
                "aws_rds_mysql",
                f"RDS MySQL {db.instance_class} {az}",
                hours * copies,
                region,
                ("database.instanceClass", db.instance_class),
            ),
            line(
                db.site,
                "aws_rds_storage",
                f"RDS storage {db.allocated_storage} GB",
                db.allocated_storage * copies,
                region,
            ),
        ]
    if stack.app is not None:
        region = _region(stack, config, stack.network.site(stack.app.site))
        shared += [
            line(
                stack.app.site,
                "azure_app_service",
                f"App Service plan {stack.app.sku}",
                hours,
                region,
                ("app.sku", stack.app.sku),
            ),
            line(
                stack.app.site,
                "azure_files",
                f"wp-content share {a['azure_files_gb']} GiB",
                a["azure_files_gb"],
                region,
            ),
        ]
        endpoint = stack.app_endpoint
        if endpoint is not None:
            shared += [
                line(stack.app.site, "azure_private_endpoint", f"App Service private endpoint {endpoint.address}", hours, region),
                line(stack.app.site, "azure_private_dns_zone", "private DNS zone privatelink.azurewebsites.net", 1, region),
            ]
    return Estimate(tuple(links), tuple(shared), tuple(managed), prices, tuple(ceilings))


def credit_alarm_emails(stack: Stack) -> tuple[str, ...]:
    """Who the bridges' CPU credit alarm mails: the budgets' addresses (none: no alarm)."""
    budgets = stack.budgets
    return budgets.emails if budgets is not None and budgets.enabled else ()


def credit_alarm_threshold(stack: Stack, prices: Prices) -> float:
    """The surplus credit balance (vCPU-minutes) above which the alarm fires."""
    return CREDIT_ALARM_FACTOR * prices.assumptions["aws_bridge_build_vcpu_minutes"][stack.network.softether.source]


def budget_problems(stack: Stack, est: Estimate) -> list[str]:
    """Azure budgets whose amounts cannot be in `budgets.azure.currency`: more than
    `BUDGET_CEILING` times the stack's own Azure estimate in that currency."""
    budgets = stack.budgets
    azure = budgets.azure if budgets is not None and budgets.enabled else None
    if azure is None:
        return []
    currency, rates = azure.currency, est.prices.per_usd
    if currency not in rates:
        return [
            f"budgets.azure.currency: {currency} has no exchange rate in {PRICES.name} (known: {', '.join(sorted(rates))})"
        ]
    monthly = est.by_cloud().get("azure", 0.0) * rates[currency]
    return [
        f"budgets.azure.budgets[{i}].amount: {b.amount:g} {currency} is more than {BUDGET_CEILING} times"
        f" this stack's Azure estimate ({monthly:.2f} {currency}/month); is budgets.azure.currency right?"
        for i, b in enumerate(azure.budgets)
        if b.amount > BUDGET_CEILING * monthly
    ]


def check_budgets(stack: Stack, config: Mapping[str, Any]) -> tuple[list[str], str | None]:
    """`budget_problems` of a stack with Azure budgets, from its whole `config:` map; when the
    stack cannot be priced, no problems and the reason it was not checked."""
    if stack.budgets is None or stack.budgets.azure is None:
        return [], None
    try:
        return budget_problems(stack, estimate(stack, config, load_prices())), None
    except PriceError as e:
        return [], f"budgets.azure: amounts not checked against the estimate ({e})"


