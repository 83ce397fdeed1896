"""Repository hygiene: ruff is clean under the rules in pyproject.toml, and the package ships
its ``py.typed`` marker."""
import importlib.resources
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def test_ruff_is_clean():
    if importlib.util.find_spec("ruff") is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise",
                          "."], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, (f"ruff check found problems (fix them, or `ruff check --fix` "
                                 f"for the safe ones):\n{out.stdout}{out.stderr}")


def test_ruff_is_configured_in_pyproject():
    config = _pyproject()
    assert "ruff" in config["tool"] and "lint" in config["tool"]["ruff"]
    assert any(r.startswith("ruff") for r in config["project"]["optional-dependencies"]["test"])


def test_py_typed_exists_and_is_package_data():
    assert (ROOT / "nasscale" / "py.typed").is_file()
    package_data = _pyproject()["tool"]["setuptools"]["package-data"]
    assert "py.typed" in package_data["nasscale"]
    # the installed package (editable or not) has the marker beside its modules
    assert (importlib.resources.files("nasscale") / "py.typed").is_file()
