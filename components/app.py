"""WordPressApp: WordPress on Azure App Service, reaching the database over the hybrid network.

Regional VNet Integration puts the app's outbound traffic into a subnet delegated to
Microsoft.Web/serverFarms; that subnet's route table sends the other sites' ranges to the
SoftEther bridge, so the database connection never leaves the private path (blog part 2).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pulumi
import pulumi_random as random
from pulumi_azure_native import network, storage, web

from topology import App

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


class WordPressApp(pulumi.ComponentResource):
    """A Linux App Service plan and the WordPress container web app integrated into `subnet`."""

    url: pulumi.Output[str]

    def __init__(
        self, name: str, args: WordPressAppArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybrid:azure:WordPressApp", name, None, opts)
        cfg = args.config
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
        settings = {
            "WORDPRESS_DB_HOST": pulumi.Output.concat(args.db_host, f":{args.db_port}"),
            "WORDPRESS_DB_NAME": args.db_name,
            "WORDPRESS_DB_USER": args.db_user,
            "WORDPRESS_DB_PASSWORD": pulumi.Output.secret(args.db_password),
        } | {f"WORDPRESS_{k}": pulumi.Output.secret(p.result) for k, p in keys.items()}
        account, share = self._content_share(name, args, child)
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
            # Today's form of WEBSITE_VNET_ROUTE_ALL=1 (formerly siteConfig.vnetRouteAllEnabled):
            # all application traffic enters the VNet, so the UDRs and NSGs apply. Image pulls
            # stay on the public route: the integration subnet needs no internet egress.
            outbound_vnet_routing=web.OutboundVnetRoutingArgs(application_traffic=True),
            site_config=web.SiteConfigArgs(
                linux_fx_version=f"DOCKER|{cfg.image}",
                always_on=True,
                ftps_state="Disabled",
                min_tls_version="1.2",
                app_settings=[
                    web.NameValuePairArgs(name=k, value=v) for k, v in settings.items()
                ],
            ),
            # The provider echoes siteConfig back; keep its copy of the password encrypted too.
            opts=pulumi.ResourceOptions.merge(
                after_subnet, pulumi.ResourceOptions(additional_secret_outputs=["siteConfig"])
            ),
        )

        # The container's filesystem is lost on every restart: wp-content lives on the share.
        key = storage.list_storage_account_keys_output(
            account_name=account.name, resource_group_name=args.resource_group_name
        ).keys[0].value
        web.WebAppAzureStorageAccounts(
            f"{name}-content-mount",
            name=site.name,
            resource_group_name=args.resource_group_name,
            properties={
                "wpcontent": web.AzureStorageInfoValueArgs(
                    type=web.AzureStorageType.AZURE_FILES,
                    account_name=account.name,
                    share_name=share.name,
                    mount_path=CONTENT_PATH,
                    access_key=pulumi.Output.secret(key),
                )
            },
            opts=child,
        )

        self.plan = plan
        self.site = site
        self.url = pulumi.Output.format("https://{0}", site.default_host_name)
        self.register_outputs({"url": self.url})

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
