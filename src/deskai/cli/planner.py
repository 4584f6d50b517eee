"""Planner verbs: ``deskai hw``, ``deskai fit``, ``deskai plan train``."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from deskai import config
from deskai.cli._app import app, console, print_table
from deskai.errors import InvalidInputError

plan_app = typer.Typer(help="Plan work bigger than one box: training runs at cluster scale.",
                       no_args_is_help=True)
app.add_typer(plan_app, name="plan")


def _gb(value: float) -> str:
    return f"{value / 1e9:,.1f} GB"


def _print_json(data: Any) -> None:
    console.print_json(json.dumps(data))


@app.command("hw")
def hw(
    catalog: bool = typer.Option(False, "--catalog", help="List the hardware catalog instead."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    measure: bool = typer.Option(True, "--measure/--no-measure",
                                 help="Measure memory bandwidth (about half a second)."),
) -> None:
    """This machine: CPU, cores, RAM, measured memory bandwidth, NVIDIA GPUs."""
    from deskai.hardware import check_offload, detect, load_catalog

    if catalog:
        cat = load_catalog()
        if as_json:
            _print_json({"accelerators": [a.to_dict() for a in cat.accelerators.values()],
                         "systems": [s.to_dict() for s in cat.systems.values()]})
            return
        print_table(_catalog_table(cat))
        return
    machine = detect(measure_bandwidth=measure)
    offload = check_offload(machine.gpus)
    if as_json:
        _print_json({**machine.to_dict(), "offload": offload.to_dict()})
        return
    console.print(f"cpu        {machine.cpu_model}")
    console.print(f"cores      {machine.physical_cores} physical, {machine.logical_cores} logical")
    console.print(f"memory     {_gb(machine.memory_bytes)} ({_gb(machine.memory_available_bytes)}"
                  " available)")
    if measure:
        console.print(f"bandwidth  {machine.memory_bandwidth / 1e9:,.1f} GB/s (measured copy)")
    for gpu in machine.gpus:
        shared = ", unified with the host's" if gpu.unified else ""
        arch = f", compute {gpu.compute_capability}" if gpu.compute_capability else ""
        console.print(f"gpu {gpu.index}      {gpu.name}, {_gb(gpu.memory_bytes)}{shared}{arch}")
    if not machine.gpus:
        console.print("gpus       none found (NVIDIA GPUs are read through nvidia-ml-py)")
    can = {True: "yes", False: "no (a CPU-only build)", None: "unknown"}[offload.build_offloads]
    console.print(f"offload    llama.cpp build can use a GPU: {can}", highlight=False)
    if offload.fix:
        console.print(f"fix        {offload.fix}", highlight=False, soft_wrap=True)


def _catalog_table(cat: Any) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("NAME", "KIND", "MEMORY", "BANDWIDTH", "BF16 TFLOPS", "FP8", "FP4", "POWER"):
        table.add_column(column)
    for a in cat.accelerators.values():
        table.add_row(a.key, a.kind, _gb(a.memory_bytes), f"{a.memory_bandwidth / 1e9:,.0f} GB/s",
                      f"{a.tflops.get('bf16', 0):,.0f}", f"{a.tflops.get('fp8', 0):,.0f}",
                      f"{a.tflops.get('fp4', 0):,.0f}", f"{a.power_w:,.0f} W")
    for s in cat.systems.values():
        extra = "".join(f" + {n:,} x {x.key}" for x, n in s.extra)
        table.add_row(s.key, "system", f"{s.count:,} x {s.accelerator.key}{extra}", "", "", "",
                      "", f"{s.power_w / 1000:,.1f} kW")
    return table


@app.command("fit")
def fit_command(
    model: str = typer.Argument(None, help="A catalog model, a store name, a .gguf file or a "
                                "config.json."),
    on: str = typer.Option(None, "--on", help="Hardware from the catalog (default: this machine)."),
    context: int = typer.Option(None, "--context", help="Context length per sequence."),
    quant: str = typer.Option(None, "--quant", help="Weight format (default: the best that fits)."),
    batch: int = typer.Option(1, "--batch", help="Parallel sequences."),
    kv_type: str = typer.Option("f16", "--kv-type", help="KV cache element type."),
    list_models: bool = typer.Option(False, "--list", help="Rank the catalog models that fit."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Will MODEL fit, with which quantization and context, and how fast will it run?"""
    from deskai.planner import fit, load_model, rank_catalog

    if batch <= 0:
        raise InvalidInputError(f"batch must be a positive number, got {batch}")
    if context is not None and context <= 0:
        raise InvalidInputError(f"context must be a positive number, got {context}")
    from deskai.hardware import target_system

    system = target_system(on, threads=config.threads())
    if list_models:
        results = rank_catalog(system, context=context, batch=batch)
        if as_json:
            _print_json([r.to_dict() for r in results])
        else:
            print_table(_fit_table(results))
        return
    if not model:
        raise InvalidInputError("name a model, or use --list")
    result = fit(load_model(model), system, context=context, quant=quant, batch=batch,
                 kv_type=kv_type)
    if as_json:
        _print_json(result.to_dict())
        return
    _print_fit(result)


def _fit_table(results: list[Any]) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("MODEL", "FITS", "QUANT", "MEMORY", "MAX CONTEXT", "DECODE tok/s",
                   "PREFILL tok/s"):
        table.add_column(column)
    for r in results:
        table.add_row(r.model, "yes" if r.fits else "no", r.quant, _gb(r.memory.total),
                      f"{r.max_context:,}", f"{r.speed.decode_tokens_per_s:,.1f}",
                      f"{r.speed.prefill_tokens_per_s:,.0f}")
    return table


def _print_fit(r: Any) -> None:
    verdict = "fits" if r.fits else "does NOT fit"
    console.print(f"[bold]{r.model}[/] {verdict} on {r.hardware} at {r.quant}, context "
                  f"{r.context:,} x {r.batch}")
    m = r.memory
    for label, value in (("weights", m.weights), ("kv cache", m.kv_cache),
                         ("compute", m.compute), ("overhead", m.overhead), ("total", m.total)):
        console.print(f"  {label:10} {_gb(value):>12}")
    console.print(f"  {'capacity':10} {_gb(r.capacity_bytes):>12}")
    console.print(f"  max context {r.max_context:,}")
    console.print(f"  decode  {r.speed.decode_tokens_per_s:,.1f} tok/s ({r.speed.decode_bound}-"
                  f"bound), prefill {r.speed.prefill_tokens_per_s:,.0f} tok/s "
                  f"({r.speed.prefill_bound}-bound)")


def _parse_count(text: str, what: str) -> float:
    """``15.6T``, ``2e12``, ``500B`` -> a number; bad or negative values are refused."""
    units = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12, "p": 1e15}
    raw = text.strip().lower()
    scale = units.get(raw[-1:], 1.0)
    number = raw[:-1] if raw[-1:] in units else raw
    try:
        value = float(number) * scale
    except ValueError:
        raise InvalidInputError(f"{what} must be a number like 15.6T, got {text!r}") from None
    if value <= 0:
        raise InvalidInputError(f"{what} must be a positive number, got {text}")
    return value


@plan_app.command("train")
def plan_train_command(
    model: str = typer.Option(..., "--model", help="A catalog model, .gguf or config.json."),
    tokens: str = typer.Option("15T", "--tokens", help="Training tokens, e.g. 15.6T."),
    gpus: int = typer.Option(None, "--gpus", help="GPUs (default: the cluster's)."),
    gpu: str = typer.Option(None, "--gpu", help="GPU type from the catalog."),
    cluster: str = typer.Option(None, "--cluster", help="A catalog cluster (fills GPUs and type)."),
    seq: int = typer.Option(8192, "--seq", help="Sequence length."),
    global_batch_tokens: str = typer.Option(None, "--global-batch-tokens",
                                            help="Tokens per optimizer step (default 16M)."),
    dtype: str = typer.Option("bf16", "--dtype", help="Compute precision: bf16, fp8."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Plan a training run: FLOPs, best parallel layout, MFU, days, GPU-hours, energy."""
    from deskai.hardware import load_catalog
    from deskai.planner import load_model
    from deskai.planner.readers import ModelFile
    from deskai.planner.training import plan_train

    if gpus is not None and gpus <= 0:
        raise InvalidInputError(f"gpus must be a positive number, got {gpus}")
    if seq <= 0:
        raise InvalidInputError(f"seq must be a positive number, got {seq}")
    if not gpu and not cluster:
        raise InvalidInputError("give --gpu TYPE (with --gpus N) or --cluster NAME")
    cat = load_catalog()
    system = cat.system(cluster) if cluster else cat.system(gpu)
    if gpu and cluster:
        from dataclasses import replace

        system = replace(system, accelerator=cat.accelerator(gpu))
    if gpu and not cluster and system.count == 1:
        from dataclasses import replace

        system = replace(system, gpus_per_node=8)  # an 8-GPU server, the common node
    loaded = load_model(model)
    arch = loaded.architecture if isinstance(loaded, ModelFile) else loaded
    batch = int(_parse_count(global_batch_tokens, "global-batch-tokens")) if \
        global_batch_tokens else None
    plan = plan_train(arch, system, tokens=_parse_count(tokens, "tokens"),
                      gpus=gpus, seq=seq, global_batch_tokens=batch, dtype=dtype)
    if as_json:
        _print_json(plan.to_dict())
        return
    lay = plan.layout
    console.print(f"[bold]{plan.model}[/] on {plan.gpus:,} x {plan.gpu}, {plan.tokens:.3g} "
                  f"tokens at seq {plan.seq:,}")
    console.print(f"  total FLOPs   {plan.total_flops:.3g}")
    console.print(f"  layout        TP {lay.tp} x PP {lay.pp} x CP {lay.cp} x DP {lay.dp}, "
                  f"ZeRO-{lay.zero}, recompute {'full' if lay.recompute else 'none'}")
    console.print(f"  memory/GPU    {_gb(plan.memory_per_gpu_bytes)}")
    console.print(f"  MFU           {plan.mfu:.1%} ({plan.tflops_per_gpu:,.0f} TFLOPs/GPU)")
    console.print(f"  time          {plan.days:,.1f} days, {plan.gpu_hours:,.0f} GPU-hours")
    console.print(f"  energy        {plan.energy_mwh:,.0f} MWh (IT load, no PUE)")
