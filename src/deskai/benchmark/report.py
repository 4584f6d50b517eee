"""Results of a load run as rows for a table and as a plot (matplotlib, the ``bench`` extra)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from deskai.benchmark.loadgen import LevelResult
from deskai.errors import InvalidInputError

COLUMNS = ("concurrency", "requests", "output tok/s", "req/s", "TTFT p50 ms", "TTFT p95 ms",
           "ITL mean ms", "ITL p95 ms", "failed", "client CPU %")


def table_rows(results: Sequence[LevelResult]) -> list[tuple[str, ...]]:
    return [(str(r.concurrency), str(r.requests), f"{r.output_tok_s:.1f}", f"{r.requests_s:.2f}",
             f"{r.ttft_p50 * 1000:.0f}", f"{r.ttft_p95 * 1000:.0f}", f"{r.itl_mean * 1000:.1f}",
             f"{r.itl_p95 * 1000:.1f}", str(r.failures), client_cpu_percent(r))
            for r in results]


def client_cpu_percent(result: LevelResult) -> str:
    """The load generator's own CPU use over the level, in % of one core: what it took from a
    server on the same machine."""
    if result.client_cpu_s is None or result.duration <= 0:
        return "-"
    return f"{100 * result.client_cpu_s / result.duration:.0f}"


def plot(series: Mapping[str, Sequence[LevelResult]], path: Path, *, title: str = "",
         ceilings: Mapping[str, Mapping[int, float]] | None = None) -> Path:
    """Output tok/s and TTFT p50 against concurrency, one line per server (and ceilings)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise InvalidInputError("--plot needs matplotlib: pip install 'deskai[bench]'",
                                param="plot") from exc
    figure, (speed, latency) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, results in series.items():
        levels = [r.concurrency for r in results]
        speed.plot(levels, [r.output_tok_s for r in results], marker="o", label=name)
        latency.plot(levels, [r.ttft_p50 * 1000 for r in results], marker="o", label=name)
    for name, points in (ceilings or {}).items():
        levels = sorted(points)
        speed.plot(levels, [points[level] for level in levels], linestyle="--", label=name)
    for axis, label in ((speed, "output tokens/s (all streams)"), (latency, "TTFT p50 (ms)")):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("concurrent streams")
        axis.set_ylabel(label)
        axis.grid(True, alpha=0.3)
    latency.set_yscale("log")
    speed.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
