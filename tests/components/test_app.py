"""WordPressApp under mocks: plan, container, Regional VNet Integration, settings, teardown order."""

from __future__ import annotations

import re
from ipaddress import IPv4Network

import pytest

from components import program
from components.offline import ProgramRun, Record, is_secret, plain, run_program
from policies.paas import plain_secret_settings
from topology import Stack, TopologyError

PLAN = "azure-native:web:AppServicePlan"
SITE = "azure-native:web:WebApp"
SUBNET = "azure-native:network:Subnet"
ACCOUNT = "azure-native:storage:StorageAccount"
SHARE = "azure-native:storage:FileShare"
MOUNT = "azure-native:web:WebAppAzureStorageAccounts"
PASSWORD = "random:index/randomPassword:RandomPassword"
# What wp-config-docker.php reads from the environment; without them the image's wp-config.php
# gets new random keys and salts whenever the container starts, logging every user out.
WP_KEYS = tuple(
    f"{kind}_{part}" for part in ("KEY", "SALT") for kind in ("AUTH", "SECURE_AUTH", "LOGGED_IN", "NONCE")
)


def _site(run: ProgramRun) -> Record:
    return run.one(SITE, "wordpress-site")


def _settings(run: ProgramRun) -> dict[str, object]:
    return {s["name"]: s["value"] for s in _site(run).input("siteConfig")["appSettings"]}


@pytest.fixture(scope="module")
def options() -> ProgramRun:
    """The reference stack with the app's options away from their defaults."""

    def build(stack: Stack) -> dict:
        assert stack.app is not None and stack.database is not None
        app = stack.app.model_copy(update={"sku": "P0v3", "image": "wordpress:6.8.3-php8.4-apache"})
        db = stack.database.model_copy(update={"port": 3307})
        return program.build(stack.model_copy(update={"app": app, "database": db}))

    return run_program("dev", build=build)


def test_wordpress_app_is_one_component_owning_plan_site_content_and_keys(dev: ProgramRun) -> None:
    component = dev.one("hybrid:azure:WordPressApp", "wordpress")
    assert {(r.type, r.name) for r in dev.children(component)} == {
        (PLAN, "wordpress-plan"),
        (SITE, "wordpress-site"),
        (ACCOUNT, "wordpress-storage"),
        (SHARE, "wordpress-content"),
        (MOUNT, "wordpress-content-mount"),
        *((PASSWORD, f"wordpress-{k.lower().replace('_', '-')}") for k in WP_KEYS),
    }


def test_wordpress_app_plan_is_linux_on_the_cheapest_tier_with_vnet_integration(
    dev: ProgramRun,
) -> None:
    plan = dev.one(PLAN, "wordpress-plan")
    assert plan.input("kind") == "linux"
    assert plan.input("reserved") is True
    assert plan.input("sku") == {"name": "B1"}
    rg = dev.one("azure-native:resources:ResourceGroup", "Hybrid-VNet-rg")
    assert plan.input("resourceGroupName") == rg.outputs["name"]
    assert _site(dev).input("serverFarmId") == plan.id


def test_wordpress_app_runs_the_pinned_wordpress_image_over_https(dev: ProgramRun) -> None:
    site = _site(dev)
    config = site.input("siteConfig")
    assert config["linuxFxVersion"] == "DOCKER|wordpress:6.8.3-php8.3-apache"
    assert site.input("httpsOnly") is True
    assert config["ftpsState"] == "Disabled"


def test_wordpress_app_integrates_into_the_delegated_subnet(dev: ProgramRun) -> None:
    subnet = dev.one(SUBNET, "Hybrid-VNet-Hybrid_Subnet_Dammy")
    [delegation] = subnet.input("delegations")
    assert delegation["serviceName"] == "Microsoft.Web/serverFarms"
    assert _site(dev).input("virtualNetworkSubnetId") == subnet.id


def test_wordpress_app_routes_all_application_traffic_into_the_vnet(dev: ProgramRun) -> None:
    # WEBSITE_VNET_ROUTE_ALL=1 of the blog, in today's property.
    assert _site(dev).input("outboundVnetRouting") == {"applicationTraffic": True}


def test_wordpress_app_reaches_the_database_only_over_the_private_path(dev: ProgramRun) -> None:
    """The app's outbound range is routed to the bridge and allowed by the database's SG."""
    subnet = dev.one(SUBNET, "Hybrid-VNet-Hybrid_Subnet_Dammy")
    source = IPv4Network(subnet.input("addressPrefix"))
    table = dev.one("azure-native:network:RouteTable", "Hybrid-VNet-rt")
    assert subnet.input("routeTable") == {"id": table.id}
    bridge = str(dev.stack.network.site("Hybrid-VNet").bridge.private_address)
    routed = {r["addressPrefix"] for r in table.input("routes") if r["nextHopIpAddress"] == bridge}
    rds_subnets = {str(s.cidr) for s in dev.stack.network.site("Hybrid-VPC").subnets}
    assert rds_subnets <= routed  # both: a Multi-AZ failover lands in the other subnet
    [rule] = dev.one("aws:ec2/securityGroup:SecurityGroup", "wordpress-db-sg").input("ingress")
    assert any(source.subnet_of(IPv4Network(c)) for c in rule["cidrBlocks"])


def test_wordpress_app_database_settings_come_from_the_rds_component(dev: ProgramRun) -> None:
    rds = dev.one("aws:rds/instance:Instance", "wordpress-db-instance")
    password = dev.one("random:index/randomPassword:RandomPassword", "wordpress-db-password")
    assert {k: v for k, v in _settings(dev).items() if k.startswith("WORDPRESS_DB_")} == {
        "WORDPRESS_DB_HOST": f"{rds.outputs['address']}:3306",
        "WORDPRESS_DB_NAME": "wordpress",
        "WORDPRESS_DB_USER": "wpadmin",
        "WORDPRESS_DB_PASSWORD": password.outputs["result"],
    }


def test_wordpress_app_keys_and_salts_are_generated_secrets_kept_in_the_stack(dev: ProgramRun) -> None:
    # Generated once and stored in the state: every restart and every new instance of the
    # container reads the same keys, so sessions survive (audit #9).
    settings = _settings(dev)
    component = dev.one("hybrid:azure:WordPressApp", "wordpress")
    values = set()
    for key in WP_KEYS:
        generator = dev.one(PASSWORD, f"wordpress-{key.lower().replace('_', '-')}")
        assert generator.parent == component.urn
        assert generator.input("length") >= 64
        assert settings[f"WORDPRESS_{key}"] == generator.outputs["result"]
        values.add(generator.outputs["result"])
    assert len(values) == len(WP_KEYS)
    # The SDK marks the whole siteConfig secret, so each of them is encrypted in the state.
    assert is_secret(_site(dev).inputs["siteConfig"])
    assert plain_secret_settings(SITE, _site(dev).inputs) == []


def test_wordpress_app_content_lives_on_an_azure_files_share(dev: ProgramRun) -> None:
    account, share, mount = dev.one(ACCOUNT, "wordpress-storage"), dev.one(SHARE, "wordpress-content"), dev.one(MOUNT, "wordpress-content-mount")
    rg = dev.one("azure-native:resources:ResourceGroup", "Hybrid-VNet-rg")
    name = account.input("accountName")
    assert re.fullmatch(r"[a-z0-9]{3,24}", name), name
    assert (account.input("kind"), account.input("sku")) == ("StorageV2", {"name": "Standard_LRS"})
    assert account.input("allowBlobPublicAccess") is False
    assert account.input("minimumTlsVersion") == "TLS1_2"
    assert account.input("resourceGroupName") == rg.outputs["name"]
    assert share.input("accountName") == account.outputs["name"]
    assert share.input("enabledProtocols") == "SMB"
    assert share.input("shareQuota") >= 1
    assert mount.input("name") == _site(dev).outputs["name"]
    (volume,) = mount.input("properties").values()
    assert volume == {
        "type": "AzureFiles",
        "accountName": account.outputs["name"],
        "shareName": share.outputs["name"],
        "mountPath": "/var/www/html/wp-content",
        "accessKey": volume["accessKey"],
    }
    assert volume["accessKey"]


def test_wordpress_app_storage_key_is_secret(dev: ProgramRun) -> None:
    mount = dev.one(MOUNT, "wordpress-content-mount")
    properties = mount.inputs["properties"]
    (volume,) = plain(properties).values()
    key = volume["accessKey"]
    assert is_secret(properties) or is_secret(next(iter(properties.values()))["accessKey"])
    assert all(key not in str(e.value) for e in dev.exports.values())


def test_wordpress_app_storage_account_name_is_stable_across_runs(dev: ProgramRun) -> None:
    # A global DNS name, derived from the resource group's id (which holds the subscription):
    # the same on every run, so an `up` never replaces the account with the content.
    name = dev.one(ACCOUNT, "wordpress-storage").input("accountName")
    assert name == run_program("dev").one(ACCOUNT, "wordpress-storage").input("accountName")


def test_wordpress_app_password_setting_is_secret(dev: ProgramRun) -> None:
    # The SDK marks the whole siteConfig secret when a value inside it is.
    site = _site(dev)
    assert is_secret(site.inputs["siteConfig"])
    password = dev.one("random:index/randomPassword:RandomPassword", "wordpress-db-password")
    rest = {k: v for k, v in site.inputs.items() if k != "siteConfig"}
    assert password.outputs["result"] not in str(rest)


def test_wordpress_app_exports_the_site_url(dev: ProgramRun) -> None:
    url = dev.exports["siteUrl"]
    assert not url.secret
    host = _site(dev).outputs["defaultHostName"]
    assert host.endswith(".azurewebsites.net")
    assert url.value == f"https://{host}"


def test_wordpress_app_options_override_sku_image_and_db_port(options: ProgramRun) -> None:
    assert options.one(PLAN, "wordpress-plan").input("sku") == {"name": "P0v3"}
    config = plain(_site(options).inputs["siteConfig"])
    assert config["linuxFxVersion"] == "DOCKER|wordpress:6.8.3-php8.4-apache"
    host = _settings(options)["WORDPRESS_DB_HOST"]
    assert isinstance(host, str) and host.endswith(":3307")
    assert options.one("aws:rds/instance:Instance", "wordpress-db-instance").input("port") == 3307


def _delete_order(run: ProgramRun) -> list[str]:
    """URNs in the order `pulumi destroy` deletes them: dependents before dependencies."""
    deps = {r.urn: {*r.dependencies, *([r.parent] if r.parent else [])} for r in run.records}
    order: list[str] = []

    def visit(urn: str) -> None:
        if urn in order:
            return
        for dependent in (u for u, d in deps.items() if urn in d):
            visit(dependent)
        order.append(urn)

    for urn in deps:
        visit(urn)
    return order


def test_wordpress_app_teardown_removes_the_integration_before_the_subnet(dev: ProgramRun) -> None:
    subnet = dev.one(SUBNET, "Hybrid-VNet-Hybrid_Subnet_Dammy")
    site, plan = _site(dev), dev.one(PLAN, "wordpress-plan")
    # The service association link belongs to the plan and is made by the site's integration.
    assert subnet.urn in site.dependencies
    assert subnet.urn in plan.dependencies
    order = _delete_order(dev)
    assert order.index(site.urn) < order.index(plan.urn) < order.index(subnet.urn)


def test_wordpress_app_without_a_database_is_refused() -> None:
    def build(stack: Stack) -> dict:
        return program.build(stack.model_copy(update={"database": None}))

    with pytest.raises(TopologyError, match="app: WordPress needs hybrid-cloud:database"):
        run_program("dev", build=build)
