"""The Pulumi program: stack config -> topology -> routing plan (cloud resources: components/)."""

import pulumi

from topology import Stack, parse_stack, plan_routes


def _config() -> dict[str, object]:
    cfg = pulumi.Config()
    keys = (f.alias or name for name, f in Stack.model_fields.items())
    return {k: v for k in keys if (v := cfg.get_object(k)) is not None}


stack = parse_stack(_config(), f"stack {pulumi.get_stack()}")
pulumi.export("routes", plan_routes(stack.network).to_json())
