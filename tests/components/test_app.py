"""WordPressApp under mocks: plan, container, Regional VNet Integration, settings, teardown order."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import time
from ipaddress import IPv4Network
from pathlib import Path

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
PASSWORD = "random:index/randomPassword:RandomPassword"
ENDPOINT = "azure-native:network:PrivateEndpoint"
ZONE = "azure-native:privatedns:PrivateZone"
LINK = "azure-native:privatedns:VirtualNetworkLink"
ZONE_GROUP = "azure-native:network:PrivateDnsZoneGroup"
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
        (PASSWORD, "wordpress-admin-password"),
        (ENDPOINT, "wordpress-endpoint"),
        (ZONE, "wordpress-dns"),
        (LINK, "wordpress-dns-link"),
        (ZONE_GROUP, "wordpress-dns-group"),
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
    account, share = dev.one(ACCOUNT, "wordpress-storage"), dev.one(SHARE, "wordpress-content")
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
    (volume,) = _site(dev).input("siteConfig")["azureStorageAccounts"].values()
    assert volume == {
        "type": "AzureFiles",
        "accountName": account.outputs["name"],
        "shareName": share.outputs["name"],
        "mountPath": "/var/www/html/wp-content",
        "accessKey": volume["accessKey"],
    }
    assert volume["accessKey"]


def test_wordpress_app_storage_key_is_secret(dev: ProgramRun) -> None:
    config = _site(dev).inputs["siteConfig"]
    (volume,) = plain(config)["azureStorageAccounts"].values()
    key = volume["accessKey"]
    assert is_secret(config)
    assert all(key not in str(e.value) for e in dev.exports.values())


def test_wordpress_app_content_mount_has_one_owner(dev: ProgramRun) -> None:
    # Audit 2 #14: the mount was a WebAppAzureStorageAccounts beside the site's own
    # siteConfig.azureStorageAccounts; two resources owned one setting.
    assert dev.of_type("azure-native:web:WebAppAzureStorageAccounts") == []
    assert list(_site(dev).input("siteConfig")["azureStorageAccounts"]) == ["wpcontent"]


def test_wordpress_app_storage_account_admits_the_integration_subnet_only(dev: ProgramRun) -> None:
    account = dev.one(ACCOUNT, "wordpress-storage")
    subnet = dev.one(SUBNET, "Hybrid-VNet-Hybrid_Subnet_Dammy")
    assert account.input("networkRuleSet") == {
        "defaultAction": "Deny",
        "bypass": "None",
        "virtualNetworkRules": [{"virtualNetworkResourceId": subnet.id, "action": "Allow"}],
    }
    # The subnet reaches the account through its service endpoint (App Service mounts a
    # firewalled account that way); the other subnets have none.
    assert subnet.input("serviceEndpoints") == [{"service": "Microsoft.Storage"}]
    assert dev.one(SUBNET, "Hybrid-VNet-Hybrid_Subnet").input("serviceEndpoints") is None


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


# --- app.access ------------------------------------------------------------------------------


def _with_access(access: str) -> ProgramRun:
    def build(stack: Stack) -> dict:
        assert stack.app is not None
        return program.build(stack.model_copy(update={"app": stack.app.model_copy(update={"access": access})}))

    return run_program("dev", build=build)


@pytest.fixture(scope="module")
def public() -> ProgramRun:
    return _with_access("public")


def test_wordpress_app_private_by_default_answers_only_at_its_private_endpoint(dev: ProgramRun) -> None:
    assert dev.stack.app is not None and dev.stack.app.access == "private"
    site = _site(dev)
    assert site.input("publicNetworkAccess") == "Disabled"
    endpoint = dev.one(ENDPOINT, "wordpress-endpoint")
    holder = dev.one(SUBNET, "Hybrid-VNet-Hybrid_Subnet")  # not the delegated subnet
    assert endpoint.input("subnet") == {"id": holder.id}
    assert endpoint.input("privateLinkServiceConnections") == [
        {"name": "wordpress-site", "privateLinkServiceId": site.id, "groupIds": ["sites"]}
    ]
    # A fixed address: the paths and the bridges' filters name it.
    assert endpoint.input("ipConfigurations") == [
        {"name": "sites", "groupId": "sites", "memberName": "sites", "privateIPAddress": "192.168.30.254"}
    ]
    # The NSG and the UDRs apply to the endpoint too: replies go back through the bridge.
    assert holder.input("privateEndpointNetworkPolicies") == "Enabled"
    assert dev.one(SUBNET, "Hybrid-VNet-Hybrid_Subnet_Dammy").input("privateEndpointNetworkPolicies") != "Enabled"
    assert "ipSecurityRestrictions" not in site.input("siteConfig")


def test_wordpress_app_private_zone_is_linked_to_the_vnet_and_holds_the_endpoint(dev: ProgramRun) -> None:
    zone, link = dev.one(ZONE, "wordpress-dns"), dev.one(LINK, "wordpress-dns-link")
    group = dev.one(ZONE_GROUP, "wordpress-dns-group")
    vnet = dev.one("azure-native:network:VirtualNetwork", "Hybrid-VNet-vnet")
    assert (zone.input("privateZoneName"), zone.input("location")) == ("privatelink.azurewebsites.net", "Global")
    assert link.input("privateZoneName") == zone.outputs["name"]
    assert link.input("virtualNetwork") == {"id": vnet.id}
    assert link.input("registrationEnabled") is False
    assert group.input("privateEndpointName") == dev.one(ENDPOINT, "wordpress-endpoint").outputs["name"]
    assert group.input("privateDnsZoneConfigs") == [{"name": "azurewebsites", "privateDnsZoneId": zone.id}]


def test_wordpress_app_private_exports_what_a_home_resolver_needs(dev: ProgramRun) -> None:
    out = dev.exports["app"]
    assert not out.secret
    host = _site(dev).outputs["defaultHostName"]
    app = host.split(".")[0]
    assert out.value == {
        "access": "private",
        "privateAddress": "192.168.30.254",
        "names": [host, f"{app}.scm.azurewebsites.net"],
        "hostsLine": f"192.168.30.254 {host} {app}.scm.azurewebsites.net",
    }


def test_wordpress_app_public_admits_the_operator_only(public: ProgramRun) -> None:
    site = _site(public)
    assert site.input("publicNetworkAccess") == "Enabled"
    config = site.input("siteConfig")
    assert config["ipSecurityRestrictions"] == [
        {
            "name": "operator",
            "ipAddress": "203.0.113.0/24",
            "action": "Allow",
            "priority": 100,
            "description": "operatorCidr (app.access: public)",
        }
    ]
    assert config["ipSecurityRestrictionsDefaultAction"] == "Deny"
    assert (config["scmIpSecurityRestrictionsUseMain"], config["scmIpSecurityRestrictionsDefaultAction"]) == (True, "Deny")
    assert public.of_type(ENDPOINT) == [] and public.of_type(ZONE) == []
    assert public.exports["app"].value == {"access": "public", "allowedFrom": "203.0.113.0/24"}


# --- installed at deploy time ----------------------------------------------------------------


def test_wordpress_app_installs_itself_at_start_with_the_generated_admin(dev: ProgramRun) -> None:
    from components.app import INSTALL_PHP, STARTUP_COMMAND

    config = _site(dev).input("siteConfig")
    assert config["appCommandLine"] == STARTUP_COMMAND == (
        "/bin/bash -c 'for attempt in $(seq 60); do"
        ' php -r "$HYBRID_WORDPRESS_INSTALL" 2>&1 | grep -q "hybrid-cloud: WordPress is installed" && break;'
        " sleep 10; done & exec docker-entrypoint.sh apache2-foreground'"
    )
    settings = _settings(dev)
    password = dev.one(PASSWORD, "wordpress-admin-password")
    assert password.input("length") >= 32
    assert {k: settings[k] for k in ("HYBRID_WORDPRESS_INSTALL", "WORDPRESS_TITLE", "WORDPRESS_ADMIN_USER", "WORDPRESS_ADMIN_EMAIL", "WORDPRESS_ADMIN_PASSWORD")} == {
        "HYBRID_WORDPRESS_INSTALL": INSTALL_PHP,
        "WORDPRESS_TITLE": "hybrid-cloud",
        "WORDPRESS_ADMIN_USER": "hybrid-admin",
        "WORDPRESS_ADMIN_EMAIL": "billing-alerts@example.com",  # the budgets' first address
        "WORDPRESS_ADMIN_PASSWORD": password.outputs["result"],
    }
    # WordPress's own installer, with the settings' values; an installed site is left alone.
    assert "require '/var/www/html/wp-load.php';" in INSTALL_PHP
    assert (
        "if (!is_blog_installed()) { wp_install(getenv('WORDPRESS_TITLE'), getenv('WORDPRESS_ADMIN_USER'),"
        " getenv('WORDPRESS_ADMIN_EMAIL'), true, '', getenv('WORDPRESS_ADMIN_PASSWORD'));"
    ) in INSTALL_PHP


def test_wordpress_app_admin_password_is_a_secret_and_never_in_plain_config(dev: ProgramRun) -> None:
    site = _site(dev)
    password = dev.one(PASSWORD, "wordpress-admin-password").outputs["result"]
    [pair] = [p for p in plain(site.inputs["siteConfig"])["appSettings"] if p["name"] == "WORDPRESS_ADMIN_PASSWORD"]
    assert pair["value"] == password
    assert is_secret(site.inputs["siteConfig"])
    assert plain_secret_settings(SITE, site.inputs) == []
    assert password not in _site(dev).input("siteConfig")["appCommandLine"]
    assert password not in str({k: v for k, v in site.inputs.items() if k != "siteConfig"})
    admin = dev.exports["wordpressAdmin"]
    assert admin.secret and admin.value == {"user": "hybrid-admin", "password": password}
    assert all(password not in str(e.value) for k, e in dev.exports.items() if not e.secret)


def test_wordpress_app_installer_is_valid_php(tmp_path: Path) -> None:
    from components.app import INSTALL_PHP

    php = shutil.which("php")
    if php is None:
        pytest.skip("php is not installed (Debian package php-cli)")
    source = tmp_path / "install.php"
    source.write_text("<?php " + INSTALL_PHP)
    done = subprocess.run([php, "-l", str(source)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr


def _run_startup(tmp_path: Path, succeed_at: int) -> tuple[list[str], list[str]]:
    """The startup command run by bash with stand-ins for php (prints the marker from the
    `succeed_at`-th call; 0: never), sleep (no wait) and the image's entrypoint; returns what
    php got with -r at each call and the entrypoint's arguments."""
    from components.app import INSTALL_PHP, INSTALLED, STARTUP_COMMAND

    stubs = tmp_path / "bin"
    stubs.mkdir()
    log = tmp_path / "php.log"
    (stubs / "php").write_text(
        "#!/bin/bash\n"
        f'[ "$1" = -r ] && printf "%s\\n" "$2" >> {log}\n'
        f"n=$(wc -l < {log})\n"
        f'[ {succeed_at} -gt 0 ] && [ "$n" -ge {succeed_at} ] && echo "{INSTALLED}" || echo "Error establishing a database connection"\n'
    )
    (stubs / "sleep").write_text("#!/bin/sh\n")
    (stubs / "docker-entrypoint.sh").write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/entry.args\n')
    for f in stubs.iterdir():
        f.chmod(0o755)
    argv = shlex.split(STARTUP_COMMAND)
    assert argv[:2] == ["/bin/bash", "-c"]
    env = {"PATH": f"{stubs}:/usr/bin:/bin", "HYBRID_WORDPRESS_INSTALL": INSTALL_PHP}
    # Returns once the background loop has closed the output pipes too, i.e. has ended.
    subprocess.run(argv, env=env, timeout=60, check=True, stdin=subprocess.DEVNULL, capture_output=True)
    return log.read_text().splitlines(), (tmp_path / "entry.args").read_text().split()


def test_wordpress_app_startup_runs_the_installer_until_it_succeeds_and_starts_the_image(tmp_path: Path) -> None:
    from components.app import INSTALL_PHP

    calls, entry = _run_startup(tmp_path, succeed_at=3)
    assert calls == [INSTALL_PHP] * 3  # the whole PHP code as one argument, until it says so
    assert entry == ["apache2-foreground"]  # the image's own start: files, wp-config.php, Apache


def test_wordpress_app_startup_installer_is_bounded(tmp_path: Path) -> None:
    from components.app import INSTALL_ATTEMPTS

    calls, entry = _run_startup(tmp_path, succeed_at=0)
    assert len(calls) == INSTALL_ATTEMPTS
    assert entry == ["apache2-foreground"]


# The installer against a real WordPress and database: Debian's WordPress (the lab's) and
# MariaDB on a Unix socket of its own (no network), when both are installed.
DEBIAN_WORDPRESS = Path("/usr/share/wordpress")
INSTALL_ENV = {
    "WEBSITE_HOSTNAME": "wordpress-site.azurewebsites.net",
    "WORDPRESS_TITLE": "hybrid-cloud",
    "WORDPRESS_ADMIN_USER": "hybrid-admin",
    "WORDPRESS_ADMIN_EMAIL": "wordpress-admin@example.invalid",
    "WORDPRESS_ADMIN_PASSWORD": "Pw0123456789abcdefghijklmnopqrstu",
}


@pytest.fixture
def wordpress_root(tmp_path: Path):
    """A WordPress tree whose wp-config.php points at a fresh MariaDB on a socket in
    `tmp_path`; yields (the tree, a function running SQL); the server stops afterwards."""
    tools = [shutil.which(t) for t in ("php", "mariadbd", "mariadb-install-db", "mariadb")]
    if None in tools or not (DEBIAN_WORDPRESS / "wp-load.php").exists():
        pytest.skip("needs php-cli, php-mysql, mariadb-server and Debian's wordpress (packages.apt)")
    data, sock, root = tmp_path / "db", tmp_path / "db.sock", tmp_path / "wordpress"
    subprocess.run(
        ["mariadb-install-db", "--no-defaults", "--user=root", f"--datadir={data}", "--skip-test-db",
         "--auth-root-authentication-method=normal"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    server = subprocess.Popen(
        ["mariadbd", "--no-defaults", "--user=root", f"--datadir={data}", f"--socket={sock}",
         "--skip-networking", f"--pid-file={tmp_path / 'db.pid'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:

        def sql(statement: str) -> str:
            return subprocess.run(
                ["mariadb", "--no-defaults", "-S", str(sock), "-uroot", "-N", "-e", statement],
                check=True, capture_output=True, text=True, timeout=30,
            ).stdout  # fmt: skip

        for _ in range(100):  # up to 20 s
            if sock.exists():
                break
            time.sleep(0.2)
        sql("CREATE DATABASE wp")
        # The PHP files at the top are copies (wp-load.php finds wp-config.php beside itself);
        # the directories are Debian's own.
        root.mkdir()
        for f in DEBIAN_WORDPRESS.glob("*.php"):
            shutil.copy(f, root)
        for d in ("wp-admin", "wp-includes", "wp-content"):
            (root / d).symlink_to(DEBIAN_WORDPRESS / d)
        (root / "wp-config.php").write_text(
            "<?php define('DB_NAME', 'wp'); define('DB_USER', 'root'); define('DB_PASSWORD', '');"
            f" define('DB_HOST', 'localhost:{sock}'); define('DB_CHARSET', 'utf8mb4'); define('DB_COLLATE', '');"
            " $table_prefix = 'wp_'; if (!defined('ABSPATH')) define('ABSPATH', __DIR__ . '/');"
            " require_once ABSPATH . 'wp-settings.php';"
        )
        yield root, sql
    finally:
        server.terminate()
        server.wait(timeout=30)


def _install(root: Path) -> str:
    from components.app import INSTALL_PHP

    assert "'/var/www/html/wp-load.php'" in INSTALL_PHP  # the official image's tree
    code = INSTALL_PHP.replace("/var/www/html/wp-load.php", str(root / "wp-load.php"))
    env = {"PATH": "/usr/bin:/bin", **INSTALL_ENV}
    return subprocess.run(["php", "-r", code], env=env, capture_output=True, text=True, timeout=120).stdout


def test_wordpress_app_installer_installs_a_real_wordpress_with_the_admin_and_is_idempotent(wordpress_root) -> None:
    from components.app import INSTALLED

    root, sql = wordpress_root
    assert INSTALLED in _install(root)
    assert sql("SELECT user_login, user_email FROM wp.wp_users").split() == ["hybrid-admin", "wordpress-admin@example.invalid"]
    options = dict(line.split("\t") for line in sql(
        "SELECT option_name, option_value FROM wp.wp_options WHERE option_name IN ('siteurl', 'home', 'blogname')"
    ).splitlines())  # fmt: skip
    assert options == {
        "siteurl": "https://wordpress-site.azurewebsites.net",
        "home": "https://wordpress-site.azurewebsites.net",
        "blogname": "hybrid-cloud",
    }
    # The password is the setting's: WordPress's own check accepts it, and no other.
    check = (
        f"require '{root / 'wp-load.php'}';"
        " $u = get_user_by('login', 'hybrid-admin');"
        " echo wp_check_password(getenv('WORDPRESS_ADMIN_PASSWORD'), $u->user_pass, $u->ID) ? 'yes' : 'no';"
        " echo wp_check_password('wrong', $u->user_pass, $u->ID) ? 'yes' : 'no';"
    )
    env = {"PATH": "/usr/bin:/bin", **INSTALL_ENV}
    assert subprocess.run(["php", "-r", check], env=env, capture_output=True, text=True, timeout=60).stdout.endswith("yesno")
    # Again (a restart of the container): the site is left as it is.
    stored = sql("SELECT user_pass FROM wp.wp_users")
    assert INSTALLED in _install(root)
    assert sql("SELECT user_pass FROM wp.wp_users") == stored
    assert sql("SELECT COUNT(*) FROM wp.wp_users").strip() == "1"


def test_wordpress_app_installer_says_nothing_while_the_database_is_away(wordpress_root) -> None:
    from components.app import INSTALLED

    root, sql = wordpress_root
    sql("DROP DATABASE wp")  # as the database before RDS answers: the loop retries
    assert INSTALLED not in _install(root)
