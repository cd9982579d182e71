"""The controller runs on the bridge VM's bare python3: standard library only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_failover_package_imports_only_the_standard_library():
    # -S: no site-packages at all, so any third-party import fails here.
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
        "import softether.failover.__main__, softether.failover.drivers\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'paramiko', 'pulumi', 'topology', 'lab', 'components')))"
    )
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
