"""The clouds' catalogs of names, read from the installed provider SDK instead of copied by hand.

pulumi-aws generates enums from its provider's schema: `Region` (every region the provider
targets), `ec2.InstanceType` and `rds.InstanceType`. This module reads them from the SDK's
source files as text, without importing the SDK (topology stays free of Pulumi, and `hybrid
check` fast): a catalog is the string values of one generated enum class.

A catalog is only as new as the installed SDK: a type AWS added later is refused until
pulumi-aws is upgraded, and the message names the catalog that refused it (docs/rules.md).
"""

from __future__ import annotations

import functools
import importlib.metadata
import re
from dataclasses import dataclass
from pathlib import Path

# A generated enum member: four spaces, the constant, its string value.
_MEMBER = re.compile(r'^    [A-Z][A-Z0-9_]* = "([^"]+)"$', re.M)


@dataclass(frozen=True)
class Catalog:
    """One enum of an installed SDK: where it comes from (for messages) and its values."""

    name: str  # e.g. "pulumi-aws 7.51.1 ec2.InstanceType"
    values: frozenset[str]

    def __contains__(self, value: object) -> bool:
        return value in self.values


def _enum(distribution: str, module: str, cls: str) -> Catalog:
    dist = importlib.metadata.distribution(distribution)
    package = "/".join(p for p in (distribution.replace("-", "_"), *module.split(".")) if p)
    text = Path(str(dist.locate_file(f"{package}/_enums.py"))).read_text()
    start = text.index(f"\nclass {cls}(")
    end = text.find("\nclass ", start + 1)
    body = text[start : end if end != -1 else len(text)]
    where = f"{module}.{cls}" if module else cls
    return Catalog(f"{distribution} {dist.version} {where}", frozenset(_MEMBER.findall(body)))


@functools.cache
def aws_regions() -> Catalog:
    return _enum("pulumi-aws", "", "Region")


@functools.cache
def ec2_instance_types() -> Catalog:
    return _enum("pulumi-aws", "ec2", "InstanceType")


@functools.cache
def rds_instance_classes() -> Catalog:
    return _enum("pulumi-aws", "rds", "InstanceType")
