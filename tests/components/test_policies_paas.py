"""The PaaS policies, run offline on what the mocks recorded (the args built as the analyzer does)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, cast

import pytest
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Secret,
)
from pulumi_policy.deserialize import deserialize_properties, serialize_properties
from pulumi_policy.proxy import unknown_checking_proxy

from components.offline import ProgramRun, Record, is_secret, plain
from policies.paas import (
    app_secret_settings_are_secret,
    mysql_not_open_to_internet,
    mysql_rules_open_to_internet,
    plain_secret_settings,
    rds_not_public,
)

SG = "aws:ec2/securityGroup:SecurityGroup"


def _args(type_: str, wire: dict[str, Any], *, remediation: bool = False) -> ResourceValidationArgs:
    """Args as pulumi-policy's analyzer builds them: secrets unwrapped for `validate`, marked
    (`Secret`) for `remediate`."""
    props = unknown_checking_proxy(deserialize_properties(wire, remediation))
    opts = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], None)
    return ResourceValidationArgs(type_, props, f"urn:test::{type_}", "test", opts, None)


def _violations(policy: ResourceValidationPolicy, type_: str, wire: dict[str, Any]) -> list[str]:
    found: list[str] = []
    policy.validate(_args(type_, wire), lambda message, urn: found.append(message))
    return found


def _remediate(type_: str, wire: dict[str, Any]) -> Mapping[str, Any] | None:
    """The secret-settings remediation (synchronous; pulumi-policy's hint says awaitable)."""
    return cast(Any, app_secret_settings_are_secret.remediate(_args(type_, wire, remediation=True)))


def _edited(record: Record, **props: Any) -> dict[str, Any]:
    return {**copy.deepcopy(record.inputs), **props}


def test_policies_paas_pass_on_everything_the_reference_stack_records(dev: ProgramRun) -> None:
    for r in dev.records:
        assert _violations(rds_not_public, r.type, r.inputs) == [], r.name
        assert _violations(mysql_not_open_to_internet, r.type, r.inputs) == [], r.name
        assert _remediate(r.type, r.inputs) is None, r.name


def test_policies_paas_rds_not_public_catches_a_public_instance(dev: ProgramRun) -> None:
    rds = dev.one("aws:rds/instance:Instance", "wordpress-db-instance")
    wire = _edited(rds, publiclyAccessible=True)
    assert len(_violations(rds_not_public, rds.type, wire)) == 1


def test_policies_paas_mysql_catches_the_internet_in_the_database_security_group(
    dev: ProgramRun,
) -> None:
    sg = dev.one(SG, "wordpress-db-sg")
    wire = copy.deepcopy(sg.inputs)
    wire["ingress"][0]["cidrBlocks"].append("0.0.0.0/0")
    assert _violations(mysql_not_open_to_internet, SG, wire) == [
        "ingress[0] allows 0.0.0.0/0 to port 3306"
    ]


@pytest.mark.parametrize(
    ("type_", "props", "open_"),
    [
        (
            SG,
            {
                "ingress": [
                    {"protocol": "-1", "fromPort": 0, "toPort": 0, "ipv6CidrBlocks": ["::/0"]}
                ]
            },
            True,
        ),
        (
            SG,
            {
                "ingress": [
                    {
                        "protocol": "tcp",
                        "fromPort": 3300,
                        "toPort": 3310,
                        "cidrBlocks": ["0.0.0.0/0"],
                    }
                ]
            },
            True,
        ),
        (
            SG,
            {
                "ingress": [
                    {"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/0"]}
                ]
            },
            False,
        ),
        (
            SG,
            {
                "ingress": [
                    {
                        "protocol": "udp",
                        "fromPort": 3306,
                        "toPort": 3306,
                        "cidrBlocks": ["0.0.0.0/0"],
                    }
                ]
            },
            False,
        ),
        (
            SG,
            {
                "ingress": [
                    {
                        "protocol": "tcp",
                        "fromPort": 3306,
                        "toPort": 3306,
                        "cidrBlocks": ["192.168.30.0/24"],
                    }
                ]
            },
            False,
        ),
        (
            "aws:ec2/securityGroupRule:SecurityGroupRule",
            {
                "type": "ingress",
                "protocol": "tcp",
                "fromPort": 3306,
                "toPort": 3306,
                "cidrBlocks": ["0.0.0.0/0"],
            },
            True,
        ),
        (
            "aws:ec2/securityGroupRule:SecurityGroupRule",
            {
                "type": "egress",
                "protocol": "-1",
                "fromPort": 0,
                "toPort": 0,
                "cidrBlocks": ["0.0.0.0/0"],
            },
            False,
        ),
        (
            "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
            {"ipProtocol": "tcp", "fromPort": 3306, "toPort": 3306, "cidrIpv4": "0.0.0.0/0"},
            True,
        ),
    ],
)
def test_policies_paas_mysql_rule_shapes(type_: str, props: dict[str, Any], open_: bool) -> None:
    assert bool(mysql_rules_open_to_internet(type_, props)) is open_
    assert bool(_violations(mysql_not_open_to_internet, type_, props)) is open_


def test_policies_paas_validate_cannot_see_secrecy_so_the_secret_rule_remediates(
    dev: ProgramRun,
) -> None:
    site = dev.one("azure-native:web:WebApp", "wordpress-site")
    # What a `validate` gets: no Secret mark left anywhere, the reason this rule is a remediation.
    seen = serialize_properties(_args(site.type, site.inputs).props)
    assert not is_secret(seen["siteConfig"])
    assert plain_secret_settings(site.type, site.inputs) == []


def test_policies_paas_secret_settings_remediation_encrypts_a_plain_password(
    dev: ProgramRun,
) -> None:
    site = dev.one("azure-native:web:WebApp", "wordpress-site")
    wire = _edited(site, siteConfig=plain(site.inputs["siteConfig"]))
    settings = wire["siteConfig"]["appSettings"]
    # The database password, WordPress's keys and salts, and its admin's password.
    credentials = [i for i, s in enumerate(settings) if s["name"].endswith(("_PASSWORD", "_KEY", "_SALT"))]
    assert len(credentials) == 10
    assert plain_secret_settings(site.type, wire) == [("siteConfig", "appSettings", i, "value") for i in credentials]

    fixed = _remediate(site.type, wire)
    assert fixed is not None
    fixed_settings = fixed["siteConfig"]["appSettings"]
    assert all(isinstance(fixed_settings[i]["value"], Secret) for i in credentials)
    assert [s["value"] for i, s in enumerate(fixed_settings) if i not in credentials] == [
        s["value"] for i, s in enumerate(settings) if i not in credentials
    ]
    assert plain_secret_settings(site.type, dict(serialize_properties(fixed))) == []


def test_policies_paas_secret_settings_remediation_covers_application_settings_resources() -> None:
    type_ = "azure-native:web:WebAppApplicationSettings"
    wire = {"name": "app", "properties": {"API_TOKEN": "t0k3n", "WORDPRESS_DB_NAME": "wordpress"}}
    fixed = _remediate(type_, wire)
    assert fixed is not None
    assert isinstance(fixed["properties"]["API_TOKEN"], Secret)
    assert fixed["properties"]["WORDPRESS_DB_NAME"] == "wordpress"


def test_policies_paas_offline_evaluation_reports_a_plain_password(dev: ProgramRun) -> None:
    from policies import POLICIES
    from policies.security import Resource, evaluate

    site = dev.one("azure-native:web:WebApp", "wordpress-site")
    plain_site = Resource(
        site.type, site.name, site.urn, _edited(site, siteConfig=plain(site.inputs["siteConfig"]))
    )
    kept = Resource(site.type, site.name, site.urn, site.inputs)
    assert [
        v.policy for v in evaluate([plain_site], {}, POLICIES) if v.policy.startswith("app-")
    ] == ["app-secret-settings-are-secret"]
    assert [v for v in evaluate([kept], {}, POLICIES) if v.policy.startswith("app-")] == []


# --- issue 21 item 8: no public site unless app.access is public; storage not public ----------


def _paas_violations(run: ProgramRun, edits: Mapping[tuple[str, str], Mapping[str, Any]], config: dict[str, Any]) -> list[tuple[str, str]]:
    """(policy, message) of paas.py's policies over a run's records, with `edits` applied to
    the inputs of the resources named (type, name)."""
    from policies.paas import POLICIES as PAAS
    from policies.security import Resource, evaluate

    resources = [
        Resource(r.type, r.name, r.urn, {**r.inputs, **edits.get((r.type, r.name), {})}, r.parent)
        for r in run.records
    ]
    return [(v.policy, v.message) for v in evaluate(resources, config, PAAS)]


@pytest.fixture(scope="module")
def public_run() -> ProgramRun:
    from components import program
    from components.offline import run_program
    from topology import Stack

    def build(stack: Stack) -> dict[str, Any]:
        assert stack.app is not None
        return program.build(stack.model_copy(update={"app": stack.app.model_copy(update={"access": "public"})}))

    return run_program("dev", build=build)


def _config(run: ProgramRun, access: str) -> dict[str, Any]:
    from policies.security import policy_config

    return policy_config(run.stack) | {"appAccess": access}


SITE: tuple[str, str] = ("azure-native:web:WebApp", "wordpress-site")
ACCOUNT: tuple[str, str] = ("azure-native:storage:StorageAccount", "wordpress-storage")


def test_policies_paas_private_and_public_stacks_pass(dev: ProgramRun, public_run: ProgramRun) -> None:
    assert _paas_violations(dev, {}, _config(dev, "private")) == []
    assert _paas_violations(public_run, {}, _config(public_run, "public")) == []


def test_policies_paas_no_public_site_refuses_a_public_door_of_a_private_stack(dev: ProgramRun, public_run: ProgramRun) -> None:
    opened = {SITE: {"publicNetworkAccess": "Enabled"}}
    assert _paas_violations(dev, opened, _config(dev, "private")) == [
        ("no-public-site", "wordpress-site: publicNetworkAccess is Enabled: app.access is private, the site answers at its private endpoint only")
    ]
    # The public stack's site, in a stack whose app.access is private.
    [(policy, _)] = _paas_violations(public_run, {}, _config(public_run, "private"))
    assert policy == "no-public-site"


def test_policies_paas_no_public_site_refuses_a_public_site_open_beyond_the_operator(public_run: ProgramRun) -> None:
    site = public_run.one(*SITE)
    config = plain(site.inputs["siteConfig"])
    from components.offline import SECRET_SIG, SECRET_SIG_KEY

    def secret(value: Any) -> dict[str, Any]:  # siteConfig stays a secret (the settings in it)
        return {SECRET_SIG_KEY: SECRET_SIG, "value": value}

    wide = secret(config | {"ipSecurityRestrictions": [{**config["ipSecurityRestrictions"][0], "ipAddress": "0.0.0.0/0"}]})
    allow = secret(config | {"ipSecurityRestrictionsDefaultAction": "Allow"})
    assert _paas_violations(public_run, {SITE: {"siteConfig": wide}}, _config(public_run, "public")) == [
        ("no-public-site", "wordpress-site: siteConfig.ipSecurityRestrictions[0] admits 0.0.0.0/0, outside operatorCidr 203.0.113.0/24")
    ]
    assert _paas_violations(public_run, {SITE: {"siteConfig": allow}}, _config(public_run, "public")) == [
        ("no-public-site", "wordpress-site: siteConfig.ipSecurityRestrictionsDefaultAction is not Deny: a public site admits operatorCidr only")
    ]


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        ({"networkRuleSet": None}, "networkRuleSet.defaultAction is not Deny: the account answers the whole internet"),
        (
            {"networkRuleSet": {"defaultAction": "Allow", "bypass": "None"}},
            "networkRuleSet.defaultAction is not Deny: the account answers the whole internet",
        ),
        (
            {"networkRuleSet": {"defaultAction": "Deny", "ipRules": [{"iPAddressOrRange": "198.51.100.0/24", "action": "Allow"}]}},
            "networkRuleSet.ipRules[0] admits 198.51.100.0/24 from the internet",
        ),
        ({"allowBlobPublicAccess": True}, "allowBlobPublicAccess is not false"),
    ],
)
def test_policies_paas_storage_not_public_refuses_an_account_open_to_the_internet(
    dev: ProgramRun, edit: dict[str, Any], problem: str
) -> None:
    assert _paas_violations(dev, {ACCOUNT: edit}, _config(dev, "private")) == [
        ("storage-not-public", f"wordpress-storage: {problem}; it must be reachable from the VNet only")
    ]


def test_policies_paas_storage_with_public_network_access_off_passes(dev: ProgramRun) -> None:
    edit = {"networkRuleSet": None, "publicNetworkAccess": "Disabled"}
    assert _paas_violations(dev, {ACCOUNT: edit}, _config(dev, "private")) == []
