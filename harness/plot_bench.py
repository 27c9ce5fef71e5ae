#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Plot Rust cost / C cost per benchmark figure (below 1: Rust is better)."""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

rows = [r for r in json.load(open(sys.argv[1])) if r.get("rust_cost_over_c_cost")]
names = [r["figure"] for r in rows]
ratios = [r["rust_cost_over_c_cost"] for r in rows]
# Baselines (system RAM buffers, anonymous memory) run the same code in both boots:
# their bars show how far two boots differ by chance under TCG.
baseline = [" ram" in n or "anonymous" in n for n in names]
colors = [
    "tab:gray" if b else ("tab:green" if v <= 1.0 else "tab:red")
    for v, b in zip(ratios, baseline)
]
# Whiskers: the ratio of the two extremes (fastest C over slowest Rust and the
# reverse), so a bar whose whiskers cross 1 is within the spread of the runs.
lo, hi = [], []
for r, v in zip(rows, ratios):
    c, rs = r["c"]["values"], r["rust"]["values"]
    up = r["unit"].endswith("/s")
    worst = (max(c) / min(rs)) if up else (max(rs) / min(c))
    best = (min(c) / max(rs)) if up else (min(rs) / max(c))
    lo.append(max(v - best, 0.0))
    hi.append(max(worst - v, 0.0))
fig, ax = plt.subplots(figsize=(10, 0.35 * len(rows) + 1.5))
ax.barh(range(len(rows)), ratios, color=colors, xerr=[lo, hi], capsize=2,
        error_kw={"elinewidth": 0.8})
ax.axvline(1.0, color="black", linewidth=1)
ax.set_yticks(range(len(rows)))
ax.set_yticklabels(names, fontsize=8)
ax.invert_yaxis()
ax.set_xscale("log")
ax.set_xlabel("Rust cost / C cost (log scale; below 1 = Rust better)")
ax.set_title("p2pmem mmap: Rust vs C, same kernel, same run\n"
             "(gray: baselines without p2pmem; whiskers: extremes of the runs)")
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=100)
