"""Package boundaries: the pure packages load no Pulumi module (design.md)."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["topology", "topology.cost", "cli.stack", "cli.cost", "cli.ttl", "cli.diagram"])
def test_boundary_pure_package_imports_no_pulumi(module: str):
    code = (
        f"import sys, {module}\n"
        "bad = sorted(m for m in sys.modules if m == 'pulumi' or m.startswith(('pulumi.', 'pulumi_')))\n"
        "print(','.join(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == ""


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
