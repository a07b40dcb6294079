"""The package's import layers, declared in pyproject.toml ([tool.importlinter]) and checked by import-linter:
commands never reach into the benchmarks, data/ never into weights/, the model and weights never into Lightning."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO


def test_imports_keep_to_the_declared_layers():
    pytest.importorskip("importlinter", reason="import-linter comes with the dev extra")
    beside = Path(sys.executable).parent / "lint-imports"  # a virtual environment's, also when it is not on PATH
    lint = str(beside) if beside.is_file() else shutil.which("lint-imports")
    assert lint, "import-linter is installed but its lint-imports command is not on PATH"
    result = subprocess.run([lint], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "broken" in result.stdout and "0 broken" in result.stdout
