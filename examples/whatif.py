"""An analyst's view: replay a month of history under two policies and compare them.

Notebook-style (each ``# %%`` is a cell in VS Code / Jupyter). Needs the analysis extra::

    pip install "cps-engine[analysis]"        # pandas, pyarrow, matplotlib
    python examples/whatif.py                  # writes whatif.png in the current directory
"""

# %% The bundled sample: a month of a social-commerce programme (4,000 orders, a 200-deep chain)
from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display needed: the figure goes to a file

from cps_engine import ShareGraph, compare, compute_batch, load_events, load_policy

HERE = Path(__file__).resolve().parent
events = load_events(Path(str(files("cps_engine") / "data" / "sample_events.jsonl")))
print(f"{len(events)} events, {sum(e.type == 'order' for e in events)} orders")

# %% Two candidate policies: the original first-sharer CPS, and three capped levels
policies = {
    "first sharer 10%": load_policy(HERE / "policies" / "first_sharer.toml"),
    "3 levels, cap 15%": load_policy(HERE / "policies" / "capped_multilevel.toml"),
}
cmp = compare(events, policies)
summary = cmp.summary().set_index("policy")
print(summary[["orders", "gmv", "commission", "effective_rate", "payees", "gini", "max_level"]].to_string())

# %% Who wins and who loses moving from one to the other (minor units)
deltas = cmp.deltas("first sharer 10%", "3 levels, cap 15%")
print(f"\n{(deltas['delta_minor'] > 0).sum()} payees gain, {(deltas['delta_minor'] < 0).sum()} lose")
print("biggest gain:", deltas.iloc[0].to_dict())
print("biggest loss:", deltas.iloc[-1].to_dict())

# %% The raw lines: one vectorised pass, a pandas frame per policy
graph = ShareGraph.from_events(events)
lines = compute_batch(events, policies["3 levels, cap 15%"], graph=graph)
by_level = lines.groupby("level")["amount_minor"].agg(["count", "sum"])
print("\nlines by level (3 levels, cap 15%):")
print(by_level.to_string())

# %% The same frame in polars, if it is installed (pip install "cps-engine[polars]")
try:
    import polars as pl
except ImportError:
    print("\n(polars not installed: skipped)")
else:
    top = (pl.from_pandas(lines).group_by("payee").agg(pl.col("amount_minor").sum())
           .sort(["amount_minor", "payee"], descending=[True, False]).head(3))
    print("\ntop payees (polars):", top.rows())

# %% The figure: cost, Lorenz curves, commission by level, depth histogram
fig = cmp.plot()
fig.savefig("whatif.png", dpi=80)
print("\nfigure -> whatif.png")
