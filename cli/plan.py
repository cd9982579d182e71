"""`hybrid plan`: the whole program run offline under Pulumi's mocks, and the security policies.

No cloud credentials and no Pulumi CLI: CI runs it on every pull request, forks included.
Prints the resource tree (type, name, key inputs; secrets masked) and the policy results;
exits 1 on a policy violation.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path
from typing import Any

from .args import add_stack, stack_ref

# Inputs that say nothing about the design (placement and bookkeeping).
NOISE = {"tags", "region", "location", "resourceGroupName", "__provider"}
WIDTH = 110


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="run the program under Pulumi's mocks; print resources and policy results")
    add_stack(p)
    p.add_argument("--quiet", action="store_true", help="only the policy results and the summary")
    p.add_argument(
        "--policy-config",
        metavar="FILE",
        help="also write the stack's --policy-pack-config for `pulumi preview --policy-pack policies`",
    )
    p.set_defaults(func=plan)


def plan(args: argparse.Namespace) -> int:
    # The SDKs warn about deprecated resources they define, not about ours.
    warnings.simplefilter("ignore", DeprecationWarning)
    from components.offline import ProgramRun, run_program
    from policies import POLICIES, Resource, evaluate
    from policies.security import pack_config, policy_config

    ref = stack_ref(args)
    run: ProgramRun = run_program(ref)
    if not args.quiet:
        for line in tree_lines(run):
            print(line)
        print()
    resources = [Resource(r.type, r.name, r.urn, r.inputs, r.parent) for r in run.records]
    violations = evaluate(resources, policy_config(run.stack), POLICIES)
    if args.policy_config:
        Path(args.policy_config).write_text(json.dumps(pack_config(run.stack), indent=2) + "\n")
    for p in POLICIES:
        found = [v for v in violations if v.policy == p.name]
        print(f"policy {p.name}: {'FAIL' if found else 'ok'}")
        for v in found:
            print(f"  {v.message}  ({v.urn})")
    custom = sum(r.custom for r in run.records)
    print(
        f"plan {run.stack_name}: {len(run.records)} resources ({custom} custom,"
        f" {len(run.records) - custom} components), {len(POLICIES)} policies,"
        f" {len(violations)} violations"
    )
    return 1 if violations else 0


def tree_lines(run: Any) -> list[str]:
    """Each resource under its parent: `type name  key=value ...` with secrets masked."""
    out: list[str] = []

    # Sorted: registration order under the mocks varies from run to run, and a plan printed
    # on every pull request should only change when the program does.
    records = sorted(run.records, key=lambda r: (r.type, r.name))

    def walk(parent: str, depth: int) -> None:
        for r in records:
            if r.parent != parent:
                continue
            out.append(f"{'  ' * depth}{r.type} {r.name}")
            pad = "  " * (depth + 2)
            for k, v in sorted(r.inputs.items()):
                if k not in NOISE:
                    out.extend(input_lines(pad, k, v))
            walk(r.urn, depth + 1)

    walk("", 0)
    return out


def input_lines(pad: str, key: str, value: Any) -> list[str]:
    """`key=value`, or for a long list (rules, routes) one `- item` line per element."""
    line = render(value)
    if isinstance(value, list) and not line.startswith('"') and len(line) >= WIDTH:
        # Each rule or route whole: these are what a reviewer checks.
        return [f"{pad}{key}:", *(f"{pad}  - {render(item, None)}" for item in value)]
    return [f"{pad}{key}={line}"]


def render(value: Any, width: int | None = WIDTH) -> str:
    """A one-line rendering of a wire-form input, secrets masked, cut at `width` characters."""
    text = json.dumps(_masked(value), separators=(",", ":"), sort_keys=True)
    return text if width is None or len(text) <= width else text[: width - 3] + "..."


def _masked(value: Any) -> Any:
    from components.offline import is_secret

    if is_secret(value):
        return "[secret]"
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    # The wire carries every number as a float.
    return int(value) if isinstance(value, float) and value.is_integer() else value
