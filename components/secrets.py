"""`HybridSecrets`: every credential of a stack, all Pulumi secrets.

Passwords: one per name of `softether.derive.secret_names` (pulumi-random), except the home
server's admin password: the home server outlives the stack (`pulumi destroy` leaves its
SoftEther configuration in place), so its admin password is the stack secret
`homeAdminPassword` (`pulumi config set --secret`), which outlives a destroy too. SSH: one
host key per cloud bridge (pulumi-tls, ed25519), and the operator's key: the stack secret
`operatorKey` (the same reason: the home server authorizes it once, and a destroy must not take
it away), or, while that is not set, a generated one that only the bridges accept.

Rotation (`hybrid-cloud:rotation`, README "Rotate"): each password's `keepers` hold the
counter of its kind (`softether.derive.secret_kind`), so a new counter replaces exactly the
passwords of that kind, and `pulumi preview` shows them and the nodes whose specs use them.
A counter of 0 sets no keepers: a stack made before rotation existed keeps its passwords.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pulumi
import pulumi_random as random
import pulumi_tls as tls

from softether.derive import admin_secret, secret_kind, secret_names
from topology import Topology, TopologyError
from topology.load import (
    GENERATE_ADMIN_PASSWORD,
    HOME_ADMIN_PASSWORD,
    OPERATOR_KEY,
    PROJECT,
    admin_password_problems,
)
from topology.model import Rotation

PASSWORD_LENGTH = 32
HOME_ADMIN_CONFIG = HOME_ADMIN_PASSWORD
SET_HOME_ADMIN = (
    f"pulumi config set --secret {PROJECT}:{HOME_ADMIN_CONFIG} '<admin password of the home VPN"
    f" server; for a fresh server, a new one: {GENERATE_ADMIN_PASSWORD}>'"
)


def home_admin_password(source: str) -> str | None:
    """The stack secret `homeAdminPassword`, checked (one line naming the key, never the
    value), or None if it is not set."""
    key = f"{PROJECT}:{HOME_ADMIN_CONFIG}"
    value = pulumi.runtime.get_config(key)
    if value is None:
        return None
    problems = []
    if not pulumi.runtime.is_config_secret(key):
        problems.append(f"{HOME_ADMIN_CONFIG}: must be a secret: set it with pulumi config set --secret")
    problems += admin_password_problems(value)
    if problems:
        raise TopologyError(source, problems)
    return value


OPERATOR_KEY_CONFIG = OPERATOR_KEY
KEY_FILE = "~/.ssh/hybrid-cloud"  # where the README has the operator keep the key
SET_OPERATOR_KEY = (
    f"ssh-keygen -q -t ed25519 -N '' -f {KEY_FILE} && "
    f"pulumi config set --secret {PROJECT}:{OPERATOR_KEY_CONFIG} < {KEY_FILE}"
)


@dataclass(frozen=True)
class OperatorKey:
    """The operator's SSH key from the stack secret `operatorKey` (OpenSSH text)."""

    private_openssh: str
    public_openssh: str  # `ssh-ed25519 AAAA...`


def operator_key(source: str) -> OperatorKey | None:
    """The stack secret `operatorKey`, checked (one line naming the key, never the value), or
    None if it is not set."""
    key = f"{PROJECT}:{OPERATOR_KEY_CONFIG}"
    value = pulumi.runtime.get_config(key)
    if value is None:
        return None
    problems = []
    if not pulumi.runtime.is_config_secret(key):
        problems.append(f"{OPERATOR_KEY_CONFIG}: must be a secret: set it with pulumi config set --secret")
    # The SSH stack only where the key is set (`hybrid plan` of an unconfigured stack loads none).
    from softether.transport import load_private_key

    text = value.strip() + "\n"
    public = None
    try:
        parsed = load_private_key(text)
        public = f"{parsed.get_name()} {parsed.get_base64()}"
    except ValueError:
        problems.append(
            f"{OPERATOR_KEY_CONFIG}: (value not shown) is not an unencrypted OpenSSH or PEM private"
            f" key: {SET_OPERATOR_KEY}"
        )
    if problems or public is None:
        raise TopologyError(source, problems)
    return OperatorKey(text, public)


def password_name(component: str, secret_name: str) -> str:
    """The RandomPassword resource name for a secret name (`admin/home` -> `secrets-admin-home`)."""
    return f"{component}-{re.sub(r'[^A-Za-z0-9-]+', '-', secret_name)}"


def _keepers(counter: int) -> dict[str, str] | None:
    # pulumi-random replaces a password whose keepers change: that is the rotation.
    return {"rotation": str(counter)} if counter else None


class HybridSecrets(pulumi.ComponentResource):
    """`passwords[name]` for each SoftEther secret name, the operator's key
    (`operator_private_key`, `operator_public_key`), `host_keys[node]` (model.BridgeVm.node)."""

    passwords: dict[str, random.RandomPassword]
    operator_private_key: pulumi.Output[str]
    operator_public_key: pulumi.Output[str]
    host_keys: dict[str, tls.PrivateKey]

    def __init__(
        self,
        name: str,
        net: Topology,
        home_admin: str | None = None,
        operator: OperatorKey | None = None,
        rotation: Rotation | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`home_admin`: the stack secret `homeAdminPassword`; None while it is not set
        (the home server is then left alone, and a generated stand-in fills its slot);
        `operator`: the stack secret `operatorKey`; None: a generated key (bridges only);
        `rotation`: the stack's rotation counters (`hybrid-cloud:rotation`)."""
        super().__init__("hybrid:secrets:HybridSecrets", name, None, opts)
        self.rotation = rotation or Rotation()
        child = pulumi.ResourceOptions(parent=self)
        configured = {admin_secret(net.home.name): home_admin} if home_admin is not None else {}
        self.configured = {n: pulumi.Output.secret(v) for n, v in configured.items()}
        self.passwords = {
            n: random.RandomPassword(
                password_name(name, n),
                length=PASSWORD_LENGTH,
                # vpncmd takes passwords as /PASSWORD:value arguments inside its script:
                # letters and digits need no quoting rules.
                special=False,
                keepers=_keepers(getattr(self.rotation, secret_kind(net, n))),
                opts=child,
            )
            for n in secret_names(net)
            if n not in configured
        }
        if operator is not None:
            self.operator_private_key = pulumi.Output.secret(operator.private_openssh)
            self.operator_public_key = pulumi.Output.from_input(operator.public_openssh)
        else:
            generated = tls.PrivateKey(f"{name}-operator-ssh", algorithm="ED25519", opts=child)
            self.operator_private_key = generated.private_key_openssh
            self.operator_public_key = generated.public_key_openssh
        self.host_keys = {
            vm.node: tls.PrivateKey(f"{name}-{vm.node}-host-key", algorithm="ED25519", opts=child)
            for vm in net.bridge_vms
        }
        self.register_outputs({})

    def values(self) -> pulumi.Output[dict[str, str]]:
        """Every password by secret name, as one secret output (for `softether.derive`)."""
        generated = {n: p.result for n, p in self.passwords.items()}
        return pulumi.Output.secret(pulumi.Output.all(**generated, **self.configured))
