"""WordPressApp: WordPress on Azure App Service, reaching the database over the hybrid network.

Regional VNet Integration puts the app's outbound traffic into a subnet delegated to
Microsoft.Web/serverFarms; that subnet's route table sends the other sites' ranges to the
SoftEther bridge, so the database connection never leaves the private path (blog part 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_azure_native import network, web

from topology import App


@dataclass(frozen=True)
class WordPressAppArgs:
    """`subnet` is the delegated integration subnet; `db_*` come from the PrivateMysql outputs."""

    config: App
    resource_group_name: pulumi.Input[str]
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
        settings = {
            "WORDPRESS_DB_HOST": pulumi.Output.concat(args.db_host, f":{args.db_port}"),
            "WORDPRESS_DB_NAME": args.db_name,
            "WORDPRESS_DB_USER": args.db_user,
            "WORDPRESS_DB_PASSWORD": pulumi.Output.secret(args.db_password),
        }
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

        self.plan = plan
        self.site = site
        self.url = pulumi.Output.format("https://{0}", site.default_host_name)
        self.register_outputs({"url": self.url})
