"""The README's Python example runs, and every example policy file loads and round-trips."""

from __future__ import annotations

import re
import tomllib
import warnings
from pathlib import Path

import pytest

from cps_engine import dump_policy, load_policy

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples" / "policies").glob("*.*"))


def test_readme_opens_with_the_two_setup_commands() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    first_block = re.search(r"```\w*\n(.*?)```", text, re.S)
    assert first_block is not None
    assert first_block.group(1).split() == ["make", "demo", "make", "test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_readme_python_example_runs(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", text, re.S)
    assert code is not None
    monkeypatch.chdir(ROOT)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # the README shows the current API only
        exec(compile(code.group(1), "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "bob 1 18.99 CNY" in out and "merchant keeps 161.51 CNY" in out


def test_every_readme_python_block_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The ledger and what-if examples too, in a scratch directory (they write files)."""
    import shutil

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 3
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    for i, block in enumerate(blocks):
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            exec(compile(block, f"README.md block {i}", "exec"), {})
    out = capsys.readouterr().out
    # the ledger block: base 189.99 - 50.00 refunded = 139.99; bob 10% -> 13.99, amy 5% -> 6.99 (down)
    assert "4 events: 3 applied, 1 duplicate" in out
    assert "bob 0.00 CNY 13.99 CNY 0.00 CNY" in out and "amy 0.00 CNY 6.99 CNY 0.00 CNY" in out
    assert (tmp_path / "commissions.db").exists() and (tmp_path / "whatif.png").stat().st_size > 10_000


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_policy_loads_and_round_trips(path: Path) -> None:
    policy = load_policy(path)
    again = load_policy(tomllib.loads(dump_policy(policy, "toml")))
    assert again == policy and again.config_hash == policy.config_hash
    assert load_policy(__import__("json").loads(dump_policy(policy, "json"))) == policy


def test_every_builtin_kind_has_an_example() -> None:
    from cps_engine import policy_kinds

    kinds = {load_policy(p).kind for p in EXAMPLES}
    assert set(policy_kinds()) <= kinds
