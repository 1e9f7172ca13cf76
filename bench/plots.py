"""PNG charts of the benchmarks' sweeps, written to bench/results/ (ignored by git)."""

from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _pyplot():
    # Imported when a chart is drawn: matplotlib is slow to import and needs no display here.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_concurrency_sweep(
    points: dict[str, list[tuple[int, float, float, float, float]]], subtitle: str, path: Path
) -> Path:
    """Throughput and latency percentiles against concurrency, one line per target.

    `points[target]` holds (concurrency, requests/s, p50 ms, p95 ms, p99 ms) tuples.
    """
    plt = _pyplot()
    figure, (throughput, latency) = plt.subplots(1, 2, figsize=(11, 4.2))
    for target, rows in points.items():
        rows = sorted(rows)
        concurrency = [row[0] for row in rows]
        (line,) = throughput.plot(concurrency, [row[1] for row in rows], marker="o", label=target)
        for index, (name, style) in enumerate((("p50", "-"), ("p95", "--"), ("p99", ":")), 2):
            latency.plot(
                concurrency,
                [row[index] for row in rows],
                linestyle=style,
                marker="o",
                color=line.get_color(),
                label=f"{target} {name}",
            )
    for axis in (throughput, latency):
        axis.set_xscale("log", base=2)
        axis.set_xticks(sorted({row[0] for rows in points.values() for row in rows}))
        axis.get_xaxis().set_major_formatter(plt.matplotlib.ticker.ScalarFormatter())
        axis.set_xlabel("concurrent clients")
        axis.grid(True, alpha=0.3)
    throughput.set_ylabel("requests/s")
    throughput.set_title("Throughput")
    throughput.set_ylim(bottom=0)
    throughput.legend()
    latency.set_ylabel("latency (ms)")
    latency.set_yscale("log")
    latency.set_title("Latency percentiles")
    latency.legend(fontsize="small")
    figure.suptitle(f"POST /predict/label through the proxy vs a direct /predict\n{subtitle}")
    return _save(figure, plt, path)


def plot_backlog_sweep(points: list[tuple[int, float]], subtitle: str, path: Path) -> Path:
    """Items scored per second of one job pass against the backlog it drained."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4.2))
    points = sorted(points)
    axis.plot([row[0] for row in points], [row[1] for row in points], marker="o")
    axis.set_xscale("log")
    axis.set_xlabel("backlog (unscored items) at the start of the pass")
    axis.set_ylabel("items scored per second")
    axis.set_ylim(bottom=0)
    axis.grid(True, alpha=0.3)
    figure.suptitle(f"Batch job: one pass over a backlog\n{subtitle}")
    return _save(figure, plt, path)


def _save(figure, plt, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path
