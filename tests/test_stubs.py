"""The .pyi stubs of the three compiled modules match the built modules (mypy's stubtest)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

# Runtime names with no API: Cython's pickling helpers, doctest table and C-API
# capsule; and the stubs' type aliases, which exist only for type checkers.
ALLOWLIST = r"""
kvstore\._(engine|codec|protocol)\.(\w+\.)?__(reduce|setstate)_cython__
kvstore\._(engine|codec|protocol)\.__test__
kvstore\._(engine|codec|protocol)\.__pyx_capi__
kvstore\._engine\.(Key|Value)
kvstore\._codec\.(Buffer|Storable|Value)
"""

MODULES = ["kvstore._engine", "kvstore._codec", "kvstore._protocol"]


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None,
                    reason="mypy is not installed: pip install mypy to check the stubs")
@pytest.mark.parametrize("module", MODULES)
def test_stub_matches_the_compiled_module(module, tmp_path):
    (tmp_path / "allowlist").write_text(ALLOWLIST)
    (tmp_path / "mypy.ini").write_text(f"[mypy]\ncache_dir = {tmp_path / 'cache'}\n")
    # From a directory without the source tree, so the INSTALLED build and its
    # stubs are what gets compared (the tests import the installed build too).
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", module, "--allowlist", str(tmp_path / "allowlist"),
         "--ignore-unused-allowlist", "--mypy-config-file", str(tmp_path / "mypy.ini")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
