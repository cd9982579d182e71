"""`hybrid cloud-init`: a bridge's user data, as the VM's cloud-init receives it.

The program runs under Pulumi's mocks (as in `hybrid plan`), so the document is the one the
program builds, with the mocks' stand-ins for what the providers generate: keys and addresses
are not those of a deployed stack (its user data is in the stack's state,
`pulumi stack export --show-secrets`). Azure's customData is printed decoded, as cloud-init
reads it. Generated secrets are replaced by placeholders naming the resource and output that
holds them, unless `--show-secrets`.
"""

from __future__ import annotations

import argparse
import base64
import sys
import warnings
from typing import Any, assert_never

import yaml

from topology import TopologyError, stack_file

from .args import add_stack, stack_ref

# The outputs of the credential resources that Pulumi stores as secrets.
SECRET_OUTPUTS = {
    "tls:index/privateKey:PrivateKey": ("privateKeyOpenssh", "privateKeyPem", "privateKeyPemPkcs8"),
    "random:index/randomPassword:RandomPassword": ("result", "bcryptHash"),
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cloud-init", help="print a bridge's cloud-init user data (program run under the mocks)")
    add_stack(p)
    p.add_argument("--site", required=True, help="the cloud site whose bridge to print")
    p.add_argument("--show-secrets", action="store_true", help="print generated secrets instead of placeholders")
    p.set_defaults(func=cloud_init)


def cloud_init(args: argparse.Namespace) -> int:
    # The SDKs warn about deprecated resources they define, not about ours.
    warnings.simplefilter("ignore", DeprecationWarning)
    from components.cloudinit import cloud_config_text
    from components.offline import ProgramRun, plain, run_program

    ref = stack_ref(args)
    run: ProgramRun = run_program(ref)
    # A site's bridge, or a pair's second bridge by its node name (`Hybrid-VPC-b`).
    nodes = {vm.node: vm.site for vm in run.stack.network.bridge_vms}
    if args.site not in nodes:
        raise TopologyError(
            str(stack_file(ref)),
            [f"--site: {args.site} is not a cloud site of {ref} (sites: {', '.join(nodes)})"],
        )
    cloud = run.stack.network.site(nodes[args.site]).cloud
    match cloud:
        case "aws":
            vm = run.one("aws:ec2/instance:Instance", f"{args.site}-bridge-vm")
            text = plain(vm.inputs["userData"])
        case "azure":
            vm = run.one("azure-native:compute:VirtualMachine", f"{args.site}-bridge-vm")
            text = base64.b64decode(plain(vm.inputs["osProfile"])["customData"]).decode()
        case _:
            assert_never(cloud)
    if not args.show_secrets:
        secrets = {
            value: f"<secret: {r.type} {r.name} {key}>"
            for r in run.records
            for key in SECRET_OUTPUTS.get(r.type, ())
            if isinstance(value := r.outputs.get(key), str) and value
        }
        text = cloud_config_text(_masked(yaml.safe_load(text), secrets))
    sys.stdout.write(text)
    return 0


def _masked(value: Any, secrets: dict[str, str]) -> Any:
    """`value` with each string that holds a secret replaced by that secret's placeholder."""
    if isinstance(value, str):
        return next((label for secret, label in secrets.items() if secret.strip() and secret.strip() in value), value)
    if isinstance(value, dict):
        return {k: _masked(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v, secrets) for v in value]
    return value
