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
fig, ax = plt.subplots(figsize=(10, 0.35 * len(rows) + 1.5))
colors = ["tab:green" if v <= 1.0 else "tab:red" for v in ratios]
ax.barh(range(len(rows)), ratios, color=colors)
ax.axvline(1.0, color="black", linewidth=1)
ax.set_yticks(range(len(rows)))
ax.set_yticklabels(names, fontsize=8)
ax.invert_yaxis()
ax.set_xscale("log")
ax.set_xlabel("Rust cost / C cost (log scale; below 1 = Rust better)")
ax.set_title("p2pmem mmap: Rust vs C, same kernel, same run")
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=100)
