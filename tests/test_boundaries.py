"""Package boundaries: the pure packages load no Pulumi module (design.md)."""

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

SOFTETHER = sorted(
    f"softether.{m.name}"
    for m in pkgutil.iter_modules([str(Path(__file__).resolve().parents[1] / "softether")])
    if m.name != "dynamic"  # the one module that is Pulumi's (design.md)
)


@pytest.mark.parametrize(
    "module",
    ["topology", "topology.cost", "cli.stack", "cli.cost", "cli.ttl", "cli.diagram", "softether", *SOFTETHER],
)
def test_boundary_pure_package_imports_no_pulumi(module: str):
    assert _pulumi_modules(module) == ""


def test_boundary_check_sees_pulumi_where_it_is():
    assert "pulumi.dynamic" in _pulumi_modules("softether.dynamic").split(",")


def _pulumi_modules(module: str) -> str:
    """The Pulumi modules that importing `module` loads in a fresh interpreter."""
    code = (
        f"import sys, {module}\n"
        "bad = sorted(m for m in sys.modules if m == 'pulumi' or m.startswith(('pulumi.', 'pulumi_')))\n"
        "print(','.join(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return out.stdout.strip()


def test_boundary_policies_import_no_components():
    """The policies read topology facts (`Topology.ranges`), not the program's components."""
    code = (
        "import sys, policies\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] == 'components')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == ""
