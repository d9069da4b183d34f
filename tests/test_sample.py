"""The bundled sample is exactly what the seeded generator writes, and it is a valid programme."""

from __future__ import annotations

import json

from cps_engine import ShareGraph, load_events
from cps_engine.cli import sample_path
from cps_engine.sample import generate


def test_bundled_file_is_the_generator_output() -> None:
    lines = sample_path().read_text(encoding="utf-8").splitlines()
    expected = [json.dumps(d, ensure_ascii=False, separators=(",", ":")) for d in generate()]
    assert lines == expected


def test_sample_is_a_valid_realistic_programme() -> None:
    events = load_events(sample_path())
    graph = ShareGraph.from_events(events)
    kinds = {e.type for e in events}
    assert kinds == {"share", "bind", "order", "refund", "payout"}
    assert max(graph.depth_histogram()) >= 200  # the one deep chain
    assert sum(e.type == "order" for e in events) >= 3000
