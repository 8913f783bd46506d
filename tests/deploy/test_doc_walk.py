"""docs/install-kubernetes.md and the pod tier stay in step: every command the guide shows is
one the tier runs or translates (deploy/ci/doc_walk.py), and the tier's admin pod is the guide's.
"""

from __future__ import annotations

from tests.deploy.test_pod_adapter import load
from tests.deploy.tools import ROOT

doc_walk = load("doc_walk")
GUIDE = ROOT / "docs" / "install-kubernetes.md"


def test_every_command_of_the_guide_has_a_translation() -> None:
    commands = doc_walk.commands(GUIDE.read_text())
    assert len(commands) > 20
    assert doc_walk.untranslated(GUIDE.read_text()) == []


def test_a_new_command_in_the_guide_is_caught() -> None:
    text = (
        GUIDE.read_text() + "\n```sh\nkubectl -n qmesh scale deploy/qmesh-send --replicas=3\n```\n"
    )
    assert doc_walk.untranslated(text) == ["kubectl -n qmesh scale deploy/qmesh-send --replicas=3"]


def test_continuation_lines_are_one_command() -> None:
    command = "printf x | kubectl -n qmesh exec -i qmesh-admin -- \\\n    qmesh user add a@b"
    text = f"```sh\n{command}\n```\n"
    assert doc_walk.commands(text) == [
        "printf x | kubectl -n qmesh exec -i qmesh-admin -- qmesh user add a@b"
    ]


def test_the_tier_runs_the_guides_exec_commands() -> None:
    guide = doc_walk.Guide(GUIDE)
    walked = guide.exec_commands()
    assert any("qmesh user add" in c for c in walked)
    assert any("qmesh domain list" in c for c in walked)
    assert all("kubectl -n qmesh exec" in c for c in walked)
