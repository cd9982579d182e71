"""WordPressApp: WordPress on Azure App Service, reaching the database over the hybrid network.

Regional VNet Integration puts the app's outbound traffic into a subnet delegated to
Microsoft.Web/serverFarms; that subnet's route table sends the other sites' ranges to the
SoftEther bridge, so the database connection never leaves the private path (blog part 2).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from ipaddress import IPv4Network

import pulumi
import pulumi_random as random
from pulumi_azure_native import network, privatedns, storage, web

from topology import App
from topology.model import AppEndpoint

# wp-config-docker.php of the official image reads these from the environment. Without them
# the entrypoint writes a wp-config.php with fresh random values into the container's own
# filesystem, so every restart or platform move logs every user out.
WORDPRESS_KEYS = tuple(
    f"{kind}_{part}" for part in ("KEY", "SALT") for kind in ("AUTH", "SECURE_AUTH", "LOGGED_IN", "NONCE")
)
KEY_LENGTH = 64  # the length of the values WordPress's own secret-key service hands out
# Uploads, plugins and themes: the part of /var/www/html that WordPress writes to at run time.
CONTENT_PATH = "/var/www/html/wp-content"
CONTENT_QUOTA_GIB = 5
CONTENT_MOUNT = "wpcontent"
ADMIN_PASSWORD_LENGTH = 32

# --- private access (app.access: private) ---------------------------------------------------
# App Service's private endpoint sub-resource, and the zone Azure resolves `<app>.azurewebsites.net`
# (and `<app>.scm.azurewebsites.net`) through once an app has one ("Use private endpoints for
# App Service apps": the public name becomes a CNAME to `<app>.privatelink.azurewebsites.net`).
SITES_GROUP = "sites"
PRIVATE_ZONE = "privatelink.azurewebsites.net"

# --- installed at deploy time ----------------------------------------------------------------
# The official image cannot install WordPress itself (its entrypoint only writes the files and
# wp-config.php; the first visitor of /wp-admin/install.php would pick the admin) and carries
# no WP-CLI (that is the separate `wordpress:cli` image). So the startup command (App Service's
# `appCommandLine`, which replaces the image's CMD and keeps its ENTRYPOINT) runs, beside the
# image's own start, a bounded loop of PHP that calls WordPress's installer function
# `wp_install()` (what `wp core install` calls) once the files and the database answer. The
# admin's name, mail and password come from app settings (the password a secret setting; the
# command line holds none of them). It is idempotent: an installed site is left as it is.
INSTALL_SETTING = "HYBRID_WORDPRESS_INSTALL"
INSTALLED = "hybrid-cloud: WordPress is installed"
INSTALL_ATTEMPTS, INSTALL_PAUSE_S = 60, 10  # the database over the tunnels: up to 10 minutes
# App Service sets WEBSITE_HOSTNAME (`<app>.azurewebsites.net`) in every app's environment.
INSTALL_PHP = (
    "define('WP_INSTALLING', true);"
    " $_SERVER['HTTP_HOST'] = getenv('WEBSITE_HOSTNAME');"
    # Pluggable: no mail with the new account (WP-CLI's --skip-email does the same).
    " function wp_new_blog_notification() {}"
    " require '/var/www/html/wp-load.php';"
    " require_once ABSPATH . 'wp-admin/includes/upgrade.php';"
    " if (!is_blog_installed()) {"
    " wp_install(getenv('WORDPRESS_TITLE'), getenv('WORDPRESS_ADMIN_USER'), getenv('WORDPRESS_ADMIN_EMAIL'),"
    " true, '', getenv('WORDPRESS_ADMIN_PASSWORD'));"
    " $url = 'https://' . getenv('WEBSITE_HOSTNAME');"
    " update_option('siteurl', $url); update_option('home', $url); }"
    f" echo '{INSTALLED}';"
)
STARTUP_COMMAND = (
    "/bin/bash -c '"
    f"for attempt in $(seq {INSTALL_ATTEMPTS}); do"
    f' php -r "${INSTALL_SETTING}" 2>&1 | grep -q "{INSTALLED}" && break;'
    f" sleep {INSTALL_PAUSE_S}; done &"
    " exec docker-entrypoint.sh apache2-foreground'"
)


@dataclass(frozen=True)
class WordPressAppArgs:
    """`subnet` is the delegated integration subnet; `db_*` come from the PrivateMysql outputs."""

    config: App
    resource_group_name: pulumi.Input[str]
    resource_group_id: pulumi.Input[str]
    location: pulumi.Input[str]
    subnet: network.Subnet
    db_host: pulumi.Input[str]
    db_port: int
    db_name: pulumi.Input[str]
    db_user: pulumi.Input[str]
    db_password: pulumi.Input[str]
    operator_cidr: IPv4Network  # app.access: public admits only it
    admin_email: str  # Stack.app_admin_email
    vnet_id: pulumi.Input[str] | None = None  # the private DNS zone's link
    endpoint: AppEndpoint | None = None  # Stack.app_endpoint (app.access: private)
    endpoint_subnet: network.Subnet | None = None


class WordPressApp(pulumi.ComponentResource):
    """A Linux App Service plan and the WordPress container web app integrated into `subnet`,
    installed at deploy time (`admin`: its admin's name and generated password, a secret);
    with `access: private` its private endpoint (`endpoint`) and the private DNS zone."""

    url: pulumi.Output[str]
    admin: pulumi.Output[dict[str, str]]
    access: pulumi.Output[dict[str, object]]

    def __init__(
        self, name: str, args: WordPressAppArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybrid:azure:WordPressApp", name, None, opts)
        cfg = args.config
        private = cfg.access == "private"
        # Teardown order: the subnet cannot be deleted while its service association link
        # (owned by the plan, created by the integration) exists. Both the app (through its
        # subnet id input) and the plan (explicitly) depend on the subnet, so Pulumi deletes the
        # app, then the plan, and only then the subnet.
        after_subnet = pulumi.ResourceOptions(parent=self, depends_on=[args.subnet])

        # Linux containers need `reserved`. B1 (Basic) is the cheapest tier with Regional VNet
        # Integration: Free and Shared have none.
        plan = web.AppServicePlan(
            f"{name}-plan",
            resource_group_name=args.resource_group_name,
            location=args.location,
            kind="linux",
            reserved=True,
            sku=web.SkuDescriptionArgs(name=cfg.sku),
            opts=after_subnet,
        )
        child = pulumi.ResourceOptions(parent=self)
        # Generated once, kept (encrypted) in the stack's state.
        keys = {
            k: random.RandomPassword(
                f"{name}-{k.lower().replace('_', '-')}", length=KEY_LENGTH, special=False, opts=child
            )
            for k in WORDPRESS_KEYS
        }
        admin_password = random.RandomPassword(
            f"{name}-admin-password", length=ADMIN_PASSWORD_LENGTH, special=False, opts=child
        )
        settings = {
            "WORDPRESS_DB_HOST": pulumi.Output.concat(args.db_host, f":{args.db_port}"),
            "WORDPRESS_DB_NAME": args.db_name,
            "WORDPRESS_DB_USER": args.db_user,
            "WORDPRESS_DB_PASSWORD": pulumi.Output.secret(args.db_password),
        } | {f"WORDPRESS_{k}": pulumi.Output.secret(p.result) for k, p in keys.items()} | {
            # What the startup command's installer reads (STARTUP_COMMAND).
            INSTALL_SETTING: INSTALL_PHP,
            "WORDPRESS_TITLE": cfg.title,
            "WORDPRESS_ADMIN_USER": cfg.admin_user,
            "WORDPRESS_ADMIN_EMAIL": args.admin_email,
            "WORDPRESS_ADMIN_PASSWORD": pulumi.Output.secret(admin_password.result),
        }
        account, share = self._content_share(name, args, child)
        # The container's filesystem is lost on every restart: wp-content lives on the share.
        # The mount is the site's own `siteConfig.azureStorageAccounts`, not a separate
        # WebAppAzureStorageAccounts: with both, two resources own one setting (audit 2 #14).
        key = storage.list_storage_account_keys_output(
            account_name=account.name, resource_group_name=args.resource_group_name
        ).keys[0].value
        mount = web.AzureStorageInfoValueArgs(
            type=web.AzureStorageType.AZURE_FILES,
            account_name=account.name,
            share_name=share.name,
            mount_path=CONTENT_PATH,
            access_key=pulumi.Output.secret(key),
        )
        # The integration is the web app's own `virtualNetworkSubnetId`, not a separate
        # WebAppSwiftVirtualNetworkConnection: with both, two resources own one setting and each
        # refresh shows drift; with the property, deleting the app is what removes the
        # integration, and the app is deleted before the subnet it depends on.
        site = web.WebApp(
            f"{name}-site",
            resource_group_name=args.resource_group_name,
            location=args.location,
            server_farm_id=plan.id,
            kind="app,linux,container",
            https_only=True,
            virtual_network_subnet_id=args.subnet.id,
            # Private: the site answers only at its private endpoint. Public: at its public
            # address, to the operator's range only (siteConfig's access restrictions).
            public_network_access="Disabled" if private else "Enabled",
            # Today's form of WEBSITE_VNET_ROUTE_ALL=1 (formerly siteConfig.vnetRouteAllEnabled):
            # all application traffic enters the VNet, so the UDRs and NSGs apply. Image pulls
            # stay on the public route: the integration subnet needs no internet egress.
            outbound_vnet_routing=web.OutboundVnetRoutingArgs(application_traffic=True),
            site_config=web.SiteConfigArgs(
                linux_fx_version=f"DOCKER|{cfg.image}",
                app_command_line=STARTUP_COMMAND,
                always_on=True,
                ftps_state="Disabled",
                min_tls_version="1.2",
                app_settings=[
                    web.NameValuePairArgs(name=k, value=v) for k, v in settings.items()
                ],
                azure_storage_accounts={CONTENT_MOUNT: mount},
                # Public: the operator's range, nothing else; the Kudu/SCM site the same.
                ip_security_restrictions=None if private else [_operator_only(args.operator_cidr)],
                ip_security_restrictions_default_action=None if private else web.DefaultAction.DENY,
                scm_ip_security_restrictions_use_main=None if private else True,
                scm_ip_security_restrictions_default_action=None if private else web.DefaultAction.DENY,
            ),
            # The provider echoes siteConfig back; keep its copy of the password encrypted too.
            opts=pulumi.ResourceOptions.merge(
                after_subnet, pulumi.ResourceOptions(additional_secret_outputs=["siteConfig"])
            ),
        )

        self.plan = plan
        self.site = site
        self.url = pulumi.Output.format("https://{0}", site.default_host_name)
        self.admin = pulumi.Output.secret(
            pulumi.Output.all(user=cfg.admin_user, password=admin_password.result)
        )
        self.endpoint: network.PrivateEndpoint | None = None
        if private:
            # Stack.app_endpoint of a validated stack (topology/validate_paas.py: app.endpoint-*).
            if args.endpoint is None or args.endpoint_subnet is None or args.vnet_id is None:
                raise ValueError("app.access: private needs the endpoint, its subnet and the VNet")
            self.endpoint = self._private_endpoint(name, args, site, args.endpoint, args.endpoint_subnet, args.vnet_id)
            address = str(args.endpoint.address)
            self.access = site.default_host_name.apply(lambda host: _hosts(host, address))
        else:
            self.access = pulumi.Output.from_input(
                {"access": "public", "allowedFrom": str(args.operator_cidr)}
            )
        self.register_outputs({"url": self.url, "access": self.access})

    def _private_endpoint(
        self,
        name: str,
        args: WordPressAppArgs,
        site: web.WebApp,
        endpoint: AppEndpoint,
        subnet: network.Subnet,
        vnet_id: pulumi.Input[str],
    ) -> network.PrivateEndpoint:
        """The site's private endpoint at its fixed address (the paths and the bridges'
        filters name it), and the private DNS zone that resolves the site's names to it inside
        the VNet (the bridges included)."""
        child = pulumi.ResourceOptions(parent=self)
        pe = network.PrivateEndpoint(
            f"{name}-endpoint",
            resource_group_name=args.resource_group_name,
            location=args.location,
            subnet={"id": subnet.id},
            private_link_service_connections=[
                {"name": f"{name}-site", "private_link_service_id": site.id, "group_ids": [SITES_GROUP]}
            ],
            ip_configurations=[
                {
                    "name": SITES_GROUP,
                    "group_id": SITES_GROUP,
                    "member_name": SITES_GROUP,
                    "private_ip_address": str(endpoint.address),
                }
            ],
            opts=child,
        )
        # Private DNS zones are global resources.
        zone = privatedns.PrivateZone(
            f"{name}-dns",
            resource_group_name=args.resource_group_name,
            location="Global",
            private_zone_name=PRIVATE_ZONE,
            opts=child,
        )
        privatedns.VirtualNetworkLink(
            f"{name}-dns-link",
            resource_group_name=args.resource_group_name,
            location="Global",
            private_zone_name=zone.name,
            virtual_network={"id": vnet_id},
            registration_enabled=False,
            opts=child,
        )
        # The zone group has Azure keep the endpoint's A records (`<app>`, `<app>.scm`) in it.
        network.PrivateDnsZoneGroup(
            f"{name}-dns-group",
            resource_group_name=args.resource_group_name,
            private_endpoint_name=pe.name,
            private_dns_zone_configs=[{"name": "azurewebsites", "private_dns_zone_id": zone.id}],
            opts=child,
        )
        return pe

    @staticmethod
    def _content_share(
        name: str, args: WordPressAppArgs, child: pulumi.ResourceOptions
    ) -> tuple[storage.StorageAccount, storage.FileShare]:
        """The storage account and the SMB share that hold wp-content."""
        # Account names are global DNS names (3-24 lowercase letters and digits): derived from
        # the resource group's id, which holds the subscription, so stable and not shared.
        account_name = pulumi.Output.from_input(args.resource_group_id).apply(
            lambda rg: "wp" + hashlib.sha256(rg.encode()).hexdigest()[:22]
        )
        account = storage.StorageAccount(
            f"{name}-storage",
            account_name=account_name,
            resource_group_name=args.resource_group_name,
            location=args.location,
            kind=storage.Kind.STORAGE_V2,
            sku=storage.SkuArgs(name=storage.SkuName.STANDARD_LRS),
            allow_blob_public_access=False,
            enable_https_traffic_only=True,
            minimum_tls_version=storage.MinimumTlsVersion.TLS1_2,
            # Reachable from the integration subnet only (its service endpoint): App Service
            # mounts a firewalled account that way. The public endpoint stays on, because a
            # service endpoint reaches the account through it; "Disabled" would leave private
            # endpoints only. Management (the share, the keys) is Azure Resource Manager's,
            # which the account's firewall does not filter.
            public_network_access=storage.PublicNetworkAccess.ENABLED,
            network_rule_set=storage.NetworkRuleSetArgs(
                default_action=storage.DefaultAction.DENY,
                bypass=storage.Bypass.NONE,
                virtual_network_rules=[
                    storage.VirtualNetworkRuleArgs(
                        virtual_network_resource_id=args.subnet.id, action=storage.Action.ALLOW
                    )
                ],
            ),
            opts=child,
        )
        share = storage.FileShare(
            f"{name}-content",
            account_name=account.name,
            resource_group_name=args.resource_group_name,
            share_name="wp-content",
            enabled_protocols=storage.EnabledProtocols.SMB,
            share_quota=CONTENT_QUOTA_GIB,
            opts=child,
        )
        return account, share


def _operator_only(operator: IPv4Network) -> web.IpSecurityRestrictionArgs:
    """The public site's one access restriction: the operator's range."""
    return web.IpSecurityRestrictionArgs(
        name="operator",
        ip_address=str(operator),
        action="Allow",
        priority=100,
        description="operatorCidr (app.access: public)",
    )


def _hosts(host: str, address: str) -> dict[str, object]:
    """What a home resolver or hosts file needs to reach a private site: its names (the site's
    and its Kudu/SCM site's) at the endpoint's address."""
    app, _, domain = host.partition(".")
    names = [host, f"{app}.scm.{domain}"]
    return {
        "access": "private",
        "privateAddress": address,
        "names": names,
        "hostsLine": " ".join([address, *names]),
    }
