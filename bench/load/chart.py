#!/usr/bin/env python3
"""Draw req/s and p99 per server and concurrency from bench-out/results.json.

    chart.py RESULTS_JSON OUT_PNG     (needs matplotlib: bench/load/requirements.txt)
"""
import json
import os
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402


def main():
    src, dst = sys.argv[1], sys.argv[2]
    with open(src) as f:
        res = json.load(f)
    a, runs = res["args"], res["runs"]
    servers, concs, payloads = a["servers"], a["conc"], a["payloads"]
    fig, axes = plt.subplots(2, len(payloads), figsize=(6.5 * len(payloads), 8), squeeze=False)
    width = 0.8 / len(servers)
    for col, payload in enumerate(payloads):
        for row, (key, label, scale) in enumerate(
                (("rps", "requests/s", 1), ("p99_us", "p99 latency (ms, log scale)", 1e-3))):
            ax = axes[row][col]
            for i, s in enumerate(servers):
                med, lo, hi = [], [], []
                for c in concs:
                    v = [r[key] * scale for r in runs
                         if r["payload"] == payload and r["server"] == s and r["conc"] == c]
                    m = statistics.median(v) if v else 0
                    med.append(m)
                    lo.append(m - min(v) if v else 0)
                    hi.append(max(v) - m if v else 0)
                xs = [j + (i - (len(servers) - 1) / 2) * width for j in range(len(concs))]
                ax.bar(xs, med, width, yerr=[lo, hi], capsize=2, label=s)
            ax.set_xticks(range(len(concs)))
            ax.set_xticklabels([f"C={c}" for c in concs])
            ax.set_ylabel(label)
            if key == "p99_us":
                ax.set_yscale("log")
                ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
                ax.axhline(1.0, color="grey", linestyle="--", linewidth=0.8)
                ax.annotate("1 ms", (len(concs) - 0.6, 1.0), fontsize=7, color="grey",
                            va="bottom")
            ax.set_title(f"{payload}: {label.split(' (')[0]}")
            ax.grid(axis="y", alpha=0.3)
            if row == 0 and col == 0:
                ax.legend(fontsize=8)
    m = res["machine"]
    fig.suptitle(f"tyk-plugin-server load suite, one HTTP/2 connection, {m['date'][:10]}, "
                 f"{m['nproc']} × {m['cpu_model']} (median, bars = min–max of "
                 f"{a['rounds']} rounds)", fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    fig.savefig(dst, dpi=100)


if __name__ == "__main__":
    main()
