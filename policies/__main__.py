"""The policy pack: `pulumi preview --policy-pack policies --policy-pack-config cfg.json`
(cfg: each configurable policy's `policies.security.policy_config`, as `hybrid plan
--policy-config cfg.json` writes it)."""

import sys
from pathlib import Path

from pulumi_policy import EnforcementLevel, PolicyPack

# The pack runs with policies/ as its working directory; the project root holds the package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from policies import POLICIES

PolicyPack(
    name="hybrid-cloud-security",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=list(POLICIES),
)
