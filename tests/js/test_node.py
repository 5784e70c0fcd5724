"""Runs the chart modules' node unit tests (tests/js/*.test.mjs) as part of pytest."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.support.requirements import require

HERE = Path(__file__).resolve().parent


def test_node_unit_tests_pass() -> None:
    node = shutil.which("node")
    require(node is not None, "node is not installed, so the chart modules' JS tests (tests/js/*.test.mjs) cannot "
            "run: apt-get install nodejs (Node 18 or newer, for `node --test`)")
    files = sorted(str(p) for p in HERE.glob("*.test.mjs"))
    result = subprocess.run([node, "--test", *files], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
