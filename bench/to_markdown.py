"""Turn bench/run.py's benchmarks.json into the markdown tables of docs/benchmarks.md.

    python bench/to_markdown.py docs/benchmarks.json > /tmp/tables.md
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def level_table(servers: dict[str, Any]) -> list[str]:
    lines = ["| server | streams | output tok/s | req/s | TTFT p50 ms | TTFT p95 ms | ITL mean ms "
             "| failed | client CPU % |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, entry in servers.items():
        for r in entry["levels"]:
            cpu = r.get("client_cpu_s")
            client = "-" if cpu is None else f"{100 * cpu / r['duration']:.0f}"
            lines.append(f"| {name} | {r['concurrency']} | {r['output_tok_s']:.1f} | "
                         f"{r['requests_s']:.2f} | {r['ttft_p50'] * 1000:.0f} | "
                         f"{r['ttft_p95'] * 1000:.0f} | {r['itl_mean'] * 1000:.1f} | "
                         f"{r['failures']} | "
                         f"{client} |")
    return lines


ENGINE = "deskai engine (in process)"
CPP = "llama-server (C++)"


def per_round(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Each round's results as {"levels": {server: {level: result}}, "ceilings": ...}: a ratio
    is taken within a round (measured minutes apart), then the rounds' median is reported."""
    servers = data["servers"]
    n = max(len(entry.get("rounds", [entry["levels"]])) for entry in servers.values())
    ceilings = data.get("ceiling_rounds") or [data["ceilings"]] * n
    return [{"levels": {name: {r["concurrency"]: r
                               for r in entry.get("rounds", [entry["levels"]])[i]}
                        for name, entry in servers.items()},
             "ceilings": ceilings[i]} for i in range(n)]


def spread(values: list[float], fmt: str = "{:.2f}×") -> str:
    """The median, and the range over rounds when there were several."""
    middle = fmt.format(statistics.median(values))
    if len(values) == 1:
        return f"**{middle}**"
    return f"**{middle}** ({fmt.format(min(values))}–{fmt.format(max(values))})"


def ratios(data: dict[str, Any]) -> list[str]:
    servers = data["servers"]
    rounds = per_round(data)
    n = len(rounds)

    Pick = Callable[[dict[str, Any]], float | None]  # one figure out of one round

    def ratio(top: Pick, bottom: Pick) -> list[float]:
        """``top / bottom`` in every round that has both."""
        return [a / b for round_ in rounds if (a := top(round_)) and (b := bottom(round_))]

    def server(name: str, level: int, metric: str = "output_tok_s") -> Pick:
        def pick(round_: dict[str, Any]) -> float | None:
            result = round_["levels"].get(name, {}).get(level)
            if not result:
                return None
            return 1 / result["itl_mean"] if metric == "itl" else result[metric]
        return pick

    def batched(level: int, key: str) -> Pick:
        def pick(round_: dict[str, Any]) -> float | None:
            per_level = round_["ceilings"]["batched_bench"]
            row = per_level.get(str(level)) or per_level.get(level)
            return row[key] if row else None
        return pick

    def llama_bench_tg(round_: dict[str, Any]) -> float | None:
        return round_["ceilings"]["llama_bench"].get("tg_tok_s")

    lines = [f"Ratios within each of {n} rounds, then the median (range):"] if n > 1 else []
    top = max(r["concurrency"] for r in servers["deskai"]["levels"])
    for level in sorted({16, top}):
        with_prefill = batched(level, "out_tok_s_with_prefill")
        for label, values in (
                ("deskai / llama-server", ratio(server("deskai", level), server(CPP, level))),
                ("deskai / llama_cpp.server",
                 ratio(server("deskai", level), server("llama_cpp.server", level))),
                ("llama-server / llama-batched-bench with prefill",
                 ratio(server(CPP, level), with_prefill)),
                ("deskai / llama-batched-bench with prefill",
                 ratio(server("deskai", level), with_prefill)),
                ("deskai engine in process / llama-batched-bench with prefill",
                 ratio(server(ENGINE, level), with_prefill))):
            if values:
                lines.append(f"- c={level}, {label}: {spread(values)}")
    levels = sorted(r["concurrency"] for r in servers["deskai"]["levels"])
    for baseline in (name for name in servers if name.startswith("deskai (")):
        for level in levels:  # a change against its parent, both against llama-server
            for label, values in (
                    (f"deskai / {baseline}", ratio(server("deskai", level),
                                                   server(baseline, level))),
                    ("deskai / llama-server", ratio(server("deskai", level),
                                                    server(CPP, level))),
                    (f"{baseline} / llama-server", ratio(server(baseline, level),
                                                         server(CPP, level)))):
                if values:
                    lines.append(f"- c={level}, {label}: {spread(values)}")
    for name in ("deskai", CPP, ENGINE):
        values = ratio(server(name, 1, "itl"), llama_bench_tg)
        if values:
            lines.append(f"- single stream, {name} 1/ITL / llama-bench tg: {spread(values)}")
    for name, entry in servers.items():
        if "prefix_cache" in entry:
            p = entry["prefix_cache"]
            lines.append(f"- {name}: 1,000-token cached prefix TTFT "
                         f"{p['warm_ttft_s'] * 1000:.0f} ms vs cold "
                         f"{p['cold_ttft_s'] * 1000:.0f} ms = "
                         f"**{p['cold_ttft_s'] / p['warm_ttft_s']:.1f}×** faster")
    same = servers["deskai"].get("batched_vs_solo")
    if same:
        lines.append(f"- deskai greedy batched == solo: {same['identical']}/{same['of']} "
                     f"({same['rate']:.0%}); mean shared word prefix "
                     f"{same['mean_shared_prefix']:.0%}")
    kv = data["kv"]
    lines.append(f"- KV per slot (2,048 tokens): deskai {kv['deskai_bytes_per_slot'] / 2**20:.1f} "
                 f"MiB → {kv['deskai_slots_in_2gib']} slots in 2 GiB; full-size (swa_full) "
                 f"{kv['full_size_bytes_per_slot'] / 2**20:.1f} MiB → "
                 f"{2 * 2**30 // kv['full_size_bytes_per_slot']} slots")
    if "llama_server_bytes_per_slot" in kv:
        lines.append(f"  - llama-server with `-np` (one stream per slot): "
                     f"{kv['llama_server_bytes_per_slot'] / 2**20:.1f} MiB → "
                     f"{kv['llama_server_slots_in_2gib']} slots in 2 GiB")
    cpp_kv = servers.get("llama-server (C++)", {}).get("kv_mib_total")
    if cpp_kv:
        slots = data["settings"]["levels"].split(",")[-1]
        per = cpp_kv / int(slots)
        lines.append(f"- llama-server reported {cpp_kv:.0f} MiB of KV for {slots} slots = "
                     f"{per:.1f} MiB per slot → {int(2048 // per)} slots in 2 GiB")
    return lines


def main() -> None:
    data = json.loads(Path(sys.argv[1]).read_text())
    ceil = data["ceilings"]
    print("\n".join(level_table(data["servers"])))
    print()
    if ceil["llama_bench"]:  # empty with --no-ceilings
        print(f"llama-bench: tg {ceil['llama_bench']['tg_tok_s']:.1f} tok/s, "
              f"pp {ceil['llama_bench']['pp_tok_s']:.1f} tok/s\n")
    if ceil["batched_bench"]:
        print("| llama-batched-bench streams | decode tok/s | prefill tok/s | output tok/s "
              "incl. prefill |\n|---:|---:|---:|---:|")
        for level, v in sorted(ceil["batched_bench"].items(), key=lambda kv: int(kv[0])):
            print(f"| {level} | {v['tg_tok_s']:.1f} | {v['pp_tok_s']:.1f} | "
                  f"{v['out_tok_s_with_prefill']:.1f} |")
        print()
    print("\n".join(ratios(data)))
    print(f"\nload average before/after: {data['machine']['load_before']} / "
          f"{data['machine'].get('load_after')}")


if __name__ == "__main__":
    main()
