"""The environment: one lock, current with pyproject.toml, and the package's metadata."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO


def test_lock_matches_pyproject():
    uv = REPO / ".tools" / "bin" / "uv"
    uv = str(uv) if uv.exists() else shutil.which("uv")
    if not uv:
        pytest.skip("uv is not installed (make env installs it into .tools/)")
    out = subprocess.run([uv, "lock", "--check", "--python", sys.executable], cwd=REPO,
                         capture_output=True, text=True, env=dict(os.environ, UV_PYTHON_DOWNLOADS="never"))
    assert out.returncode == 0, f"uv.lock is stale: run `.tools/bin/uv lock` and commit it\n{out.stderr[-2000:]}"


def test_distribution_name_and_lower_bounds():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    # PyPI's `data-helpers` is an unrelated project
    assert project["name"] == "zarr-bioimaging-book"
    pinned = [d for d in project["dependencies"] if "==" in d]
    assert not pinned, f"pyproject.toml states needs as lower bounds; exact pins live in uv.lock: {pinned}"


def test_the_environment_is_the_lock():
    """The running environment holds the locked version of every package it has."""
    import importlib.metadata as md

    lock = tomllib.loads((REPO / "uv.lock").read_text())
    wrong = []
    for pkg in lock["package"]:
        if pkg.get("source", {}).get("editable") or pkg.get("source", {}).get("virtual"):
            continue
        try:
            have = md.version(pkg["name"])
        except md.PackageNotFoundError:
            continue  # another platform's or Python's package
        if have != pkg["version"]:
            wrong.append(f"{pkg['name']} {have} (lock: {pkg['version']})")
    assert not wrong, f"the environment differs from uv.lock (run `make env`): {wrong[:10]}"
