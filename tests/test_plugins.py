"""Third-party policies are discovered through the ``cps_engine.policies`` entry-point group."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from cps_engine import PolicyRegistrationError, ShareGraph, compute, load_events, load_policy, policy_schema
from cps_engine.policies import registry

PLUGIN = '''
from typing import Literal
from fractions import Fraction
from cps_engine import PolicyConfig
from cps_engine.policies import Award

class EveryoneGetsOne(PolicyConfig):
    """Pays 1% to every person in the chain."""
    kind: Literal["everyone_one_percent"] = "everyone_one_percent"

    def awards(self, chain, order):
        return [Award(link.payee, level, Fraction(1, 100), "one percent", (link.via,))
                for level, link in enumerate(chain.walk(), start=1)]

class NotAPolicy:
    kind = "bogus"
'''


def _install(tmp_path: Path, target: str) -> None:
    (tmp_path / "cps_plugin_demo.py").write_text(textwrap.dedent(PLUGIN), encoding="utf-8")
    dist = tmp_path / "cps_plugin_demo-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: cps-plugin-demo\nVersion: 1.0\n", encoding="utf-8")
    (dist / "entry_points.txt").write_text(f"[cps_engine.policies]\ndemo = cps_plugin_demo:{target}\n",
                                           encoding="utf-8")


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    monkeypatch.setattr(registry, "_KINDS", dict(registry._KINDS))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("cps_plugin_demo", None)


def test_entry_point_policy_is_loaded_and_used(fresh_registry: Path) -> None:
    _install(fresh_registry, "EveryoneGetsOne")
    policy = load_policy({"kind": "everyone_one_percent"})
    assert "everyone_one_percent" in str(policy_schema())
    events = load_events(Path(__file__).parent.parent / "examples" / "events" / "small.jsonl")
    order = next(e for e in events if e.type == "order")
    lines = compute(order, policy, graph=ShareGraph.from_events(events)).lines
    assert [(ln.payee, ln.level, str(ln.amount)) for ln in lines] == [("bob", 1, "1.89 CNY"), ("amy", 2, "1.89 CNY")]


def test_entry_point_that_is_not_a_policy_is_refused(fresh_registry: Path) -> None:
    _install(fresh_registry, "NotAPolicy")
    with pytest.raises(PolicyRegistrationError, match="not a PolicyConfig subclass"):
        load_policy({"kind": "first_sharer", "rate": "1%"})


def test_entry_point_that_fails_to_import_is_reported(fresh_registry: Path) -> None:
    _install(fresh_registry, "Missing")
    with pytest.raises(PolicyRegistrationError, match="failed to load"):
        load_policy({"kind": "first_sharer", "rate": "1%"})
