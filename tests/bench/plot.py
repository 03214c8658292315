#!/usr/bin/python3
"""Plots dbmgr-bench CSV files: TPS and p99 latency against clients, one PNG per workload.

    /usr/bin/python3 tests/bench/plot.py [--prefix NAME] OUT_DIR run1.csv [run2.csv ...]

Reads the merged rows (kind=point, round=all) of every CSV given; a (workload, target,
clients) point present in several files is taken from the last one. Writes
OUT_DIR/PREFIX-WORKLOAD.png (PREFIX: --prefix, default "bench"), and
OUT_DIR/PREFIX-idle-clients.png when the CSVs hold --idle-clients rows. The MariaDB
figures are drawn apart: --prefix bench-mariadb with the MariaDB CSVs only. The disconnect workload (one client count) is drawn as bars of
p50/p99/p99.9 latency per target, with the issue's 5 ms p99 target. Needs matplotlib (Debian: apt-get install python3-matplotlib; use
/usr/bin/python3 if another python3 comes first in PATH).
"""
import csv
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TARGET_ORDER = ["pg-direct", "pg-pgbouncer", "pg-dbmgrd", "pg-dbmgrd-async", "sqlite-inproc",
                "sqlite-procs", "sqlite-dbmgrd", "sqlite-dbmgrd-async", "mariadb-direct",
                "mariadb-dbmgrd"]
STYLE = {
    "pg-direct": ("tab:blue", "-", "o"),
    "pg-pgbouncer": ("tab:orange", "-", "s"),
    "pg-dbmgrd": ("tab:green", "-", "^"),
    "sqlite-inproc": ("tab:blue", "--", "o"),
    "sqlite-procs": ("tab:orange", "--", "s"),
    "sqlite-dbmgrd": ("tab:green", "--", "^"),
    "pg-dbmgrd-async": ("tab:red", "-", "v"),
    "sqlite-dbmgrd-async": ("tab:red", "--", "v"),
    "mariadb-direct": ("tab:blue", ":", "o"),
    "mariadb-dbmgrd": ("tab:green", ":", "^"),
}


def plot_disconnect(out_dir, points, prefix):
    """Bars: kill -> the waiter's reply, p50/p99/p99.9 per target (ms)."""
    rows = [(t, r) for t in TARGET_ORDER for k, r in sorted(points.items())
            if k[0] == "disconnect" and k[1] == t]
    fig, ax = plt.subplots(figsize=(6, 4))
    stats = (("p50_us", "p50"), ("p99_us", "p99"), ("p999_us", "p99.9"))
    width = 0.8 / len(stats)
    for i, (col, label) in enumerate(stats):
        ax.bar([j + i * width for j in range(len(rows))],
               [float(r[col]) / 1000.0 for _, r in rows], width, label=label)
    ax.axhline(5.0, color="red", linestyle=":", label="target: p99 < 5 ms")
    ax.set_xticks([j + width * (len(stats) - 1) / 2 for j in range(len(rows))])
    ax.set_xticklabels([f"{t}\n{r['txns']} kills, {r['errors']} errors" for t, r in rows],
                       fontsize=8)
    ax.set_ylabel("client killed -> waiter answered (ms)")
    ax.set_title("disconnect: rollback, connection back in the pool")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = os.path.join(out_dir, f"{prefix}-disconnect.png")
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def main(argv):
    prefix = "bench"
    if len(argv) >= 3 and argv[1] == "--prefix":
        prefix = argv[2]
        argv = argv[:1] + argv[3:]
    if len(argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    out_dir = argv[1]
    os.makedirs(out_dir, exist_ok=True)
    points = {}  # (workload, target, clients) -> row
    idle = {}  # (server, clients) -> kb per client
    for path in argv[2:]:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                if row["kind"] == "point" and row["round"] == "all":
                    points[(row["workload"], row["target"], int(row["clients"]))] = row
                elif row["kind"] == "idle":
                    idle[(row["target"], int(row["clients"]))] = float(row["idle_kb_per_client"])

    written = []
    for workload in sorted({k[0] for k in points}):
        if workload == "disconnect":
            written.append(plot_disconnect(out_dir, points, prefix))
            continue
        fig, (ax_tps, ax_p99) = plt.subplots(1, 2, figsize=(12, 4.5))
        for target in TARGET_ORDER:
            rows = sorted((k[2], r) for k, r in points.items()
                          if k[0] == workload and k[1] == target)
            if not rows:
                continue
            xs = [c for c, _ in rows]
            color, line, marker = STYLE.get(target, ("black", "-", "x"))
            mode = rows[0][1]["client_mode"]
            label = f"{target} ({mode})"
            ax_tps.plot(xs, [float(r["tps"]) for _, r in rows], color=color, linestyle=line,
                        marker=marker, label=label)
            ax_p99.plot(xs, [float(r["p99_us"]) / 1000.0 for _, r in rows], color=color,
                        linestyle=line, marker=marker, label=label)
        for ax, title, unit in ((ax_tps, "TPS (median of rounds)", "transactions/s"),
                                (ax_p99, "p99 latency", "ms")):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("clients")
            ax.set_ylabel(unit)
            ax.set_title(f"{workload}: {title}")
            ax.grid(True, which="both", alpha=0.3)
        ax_tps.legend(fontsize=8)
        fig.tight_layout()
        out = os.path.join(out_dir, f"{prefix}-{workload}.png")
        fig.savefig(out, dpi=90)
        plt.close(fig)
        written.append(out)

    if idle:
        fig, ax = plt.subplots(figsize=(6, 4))
        servers = sorted({k[0] for k in idle})
        counts = sorted({k[1] for k in idle})
        width = 0.8 / max(1, len(servers))
        for i, server in enumerate(servers):
            ax.bar([j + i * width for j in range(len(counts))],
                   [idle.get((server, c), 0) for c in counts], width, label=server)
        ax.set_xticks([j + width * (len(servers) - 1) / 2 for j in range(len(counts))])
        ax.set_xticklabels([f"{c} idle" for c in counts])
        ax.set_ylabel("RSS growth per idle client (KB)")
        ax.set_title("idle clients")
        ax.legend()
        fig.tight_layout()
        out = os.path.join(out_dir, f"{prefix}-idle-clients.png")
        fig.savefig(out, dpi=90)
        plt.close(fig)
        written.append(out)

    for w in written:
        print(w)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
