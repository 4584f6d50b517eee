"""Turn bench/run.py's benchmarks.json into the markdown tables of docs/benchmarks.md.

    python bench/to_markdown.py docs/benchmarks.json > /tmp/tables.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def level_table(servers: dict[str, Any]) -> list[str]:
    lines = ["| server | streams | output tok/s | req/s | TTFT p50 ms | TTFT p95 ms | ITL mean ms "
             "| failed |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, entry in servers.items():
        for r in entry["levels"]:
            lines.append(f"| {name} | {r['concurrency']} | {r['output_tok_s']:.1f} | "
                         f"{r['requests_s']:.2f} | {r['ttft_p50'] * 1000:.0f} | "
                         f"{r['ttft_p95'] * 1000:.0f} | {r['itl_mean'] * 1000:.1f} | "
                         f"{r['failures']} |")
    return lines


def ratios(data: dict[str, Any]) -> list[str]:
    servers, ceil = data["servers"], data["ceilings"]

    def tok_s(name: str, level: int) -> float | None:
        for r in servers.get(name, {}).get("levels", []):
            if r["concurrency"] == level:
                return float(r["output_tok_s"])
        return None

    lines = []
    top = max(r["concurrency"] for r in servers["deskai"]["levels"])
    for level in sorted({16, top}):
        mine, cpp = tok_s("deskai", level), tok_s("llama-server (C++)", level)
        py = tok_s("llama_cpp.server", level)
        batched = ceil["batched_bench"].get(str(level)) or ceil["batched_bench"].get(level)
        if mine and cpp:
            lines.append(f"- c={level}: deskai {mine:.1f} tok/s = **{mine / cpp:.2f}×** "
                         f"llama-server ({cpp:.1f})" + (f", {mine / py:.1f}× llama_cpp.server "
                                                        f"({py:.1f})" if py else ""))
        if mine and batched:
            lines.append(f"  - vs llama-batched-bench at {level} streams: "
                         f"{mine / batched['out_tok_s_with_prefill']:.0%} of its output rate "
                         f"with prefill counted ({batched['out_tok_s_with_prefill']:.1f}), "
                         f"{mine / batched['tg_tok_s']:.0%} of its pure decode rate "
                         f"({batched['tg_tok_s']:.1f})")
    single = next((r for r in servers["deskai"]["levels"] if r["concurrency"] == 1), None)
    if single and ceil["llama_bench"]:
        itl = single["itl_mean"]
        tg = ceil["llama_bench"]["tg_tok_s"]
        lines.append(f"- single stream decode: 1/ITL = {1 / itl:.1f} tok/s = "
                     f"**{1 / itl / tg:.2f}×** llama-bench tg ({tg:.1f})")
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
    if ceil["llama_bench"]:
        print(f"llama-bench: tg {ceil['llama_bench']['tg_tok_s']:.1f} tok/s, "
              f"pp {ceil['llama_bench']['pp_tok_s']:.1f} tok/s\n")
    print("| llama-batched-bench streams | decode tok/s | prefill tok/s | output tok/s incl. "
          "prefill |\n|---:|---:|---:|---:|")
    for level, v in sorted(ceil["batched_bench"].items(), key=lambda kv: int(kv[0])):
        print(f"| {level} | {v['tg_tok_s']:.1f} | {v['pp_tok_s']:.1f} | "
              f"{v['out_tok_s_with_prefill']:.1f} |")
    print()
    print("\n".join(ratios(data)))
    print(f"\nload average before/after: {data['machine']['load_before']} / "
          f"{data['machine'].get('load_after')}")


if __name__ == "__main__":
    main()
