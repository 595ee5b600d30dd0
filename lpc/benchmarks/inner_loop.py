"""What the inner loop and an update cost (scripts/benchmark.py): eager against the fast modes
(``sampler.compile``), a minimal hand-written loop, the same chain in JAX (``jit`` of ``lax.scan``)
and, on a GPU, a raw CUDA-graph replay of the same Langevin math; with the memory, the match of the
fast chains to eager's and the error of reduced precision."""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
from functools import partial
from pathlib import Path

import lightning as L
import torch

from lpc.benchmarks.timing import (
    interleaved_ms,
    median_ms,
    memory_mib,
    quartiles,
    training_step_ms,
)
from lpc.config.build import build
from lpc.config.compose import compose_config
from lpc.jobs.train import set_tf32
from lpc.reporting.markdown import markdown_table

SHAPE = (3, 32, 32)


# the decoders of the overhead table: what the CPU runs (the digits, binarised or not, and MNIST-sized)
OVERHEAD_MODELS = {
    "mlp z8-512-64, Bernoulli": ["data=digits", "likelihood=bernoulli", "decoder.hidden=[512]", "latent_dim=8"],
    "mlp z16-256-256-64, Gaussian": ["data=digits", "latent_dim=16"],  # the default run's decoder
    "mlp z32-512-784, Bernoulli": ["data=mnist", "likelihood=bernoulli", "decoder.hidden=[512]", "latent_dim=32"],
}


OVERHEAD_STEP_SIZES = {"none": 0.03, "adam": 0.2}  # train.yaml's advice per preconditioner


def build_model(device: torch.device, out: Path, decoder: str, batch: int, steps: int, mode: str = "eager",
                model: str = "pc_langevin", latent: int = 128, compile_backend: str | None = None) -> L.LightningModule:
    """The model train.py would build for these overrides (as a job in ``out``), on ``device``."""
    overrides = ["data=cifar10", f"decoder={decoder}", f"encoder={decoder}", f"model={model}", f"latent_dim={latent}",
                 f"batch_size={batch}", f"num_steps={steps}", f"burn_in={steps // 2}", f"sampler.compile={mode}"]
    if mode == "torch_compile" and compile_backend:
        overrides.append(f"+sampler.compile_options.backend={compile_backend}")
    cfg = compose_config(overrides, out)
    torch.manual_seed(0)
    return build(cfg)[1].to(device)


def minimal_langevin(energy: Callable, x: torch.Tensor, z: torch.Tensor, step_size: float, steps: int) -> torch.Tensor:
    """The overhead table's reference: T steps of z <- z - eta grad_z E + sqrt(2 eta) xi with
    ``torch.autograd.grad`` on the energy, and nothing else (no preconditioner, divergence check or
    kept samples)."""
    noise_scale = (2 * step_size) ** 0.5
    for _ in range(steps):
        z = z.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(energy(x, z).sum(), z)
        z = z - step_size * grad + noise_scale * torch.randn_like(z)
    return z


def jax_loop(model, x: torch.Tensor, z0: torch.Tensor, steps: int) -> Callable[[], object] | None:
    """The JAX reference chain on the model's weights and data (precond none), None without JAX."""
    try:
        from lpc.benchmarks.jax_langevin import langevin_loop
    except ImportError:
        return None
    return langevin_loop(model.decoder, model.likelihood, x, z0, OVERHEAD_STEP_SIZES["none"], steps)


def overhead_rows(device: torch.device, out: Path, batch: int, steps: int, repeats: int, warmup: int,
                  modes: list[str]) -> list[dict]:
    """Per decoder of OVERHEAD_MODELS: ms per step of the minimal loop, of the JAX loop (when JAX is
    installed) and of ``sampler.run`` with precond none and adam in each of ``modes`` (burn-in T / 2,
    the configs' thinning), on one decoder's weights and data; each ratio the median over repeats of
    (project's call) / (the reference call just before it)."""
    rows = []
    for name, overrides in OVERHEAD_MODELS.items():
        samplers, model = {}, None
        for precond, eta in OVERHEAD_STEP_SIZES.items():
            for mode in modes:
                cfg = compose_config([*overrides, "model=pc_langevin", f"precond={precond}", f"step_size={eta}",
                                      f"batch_size={batch}", f"num_steps={steps}", f"burn_in={steps // 2}",
                                      f"sampler.compile={mode}"], out)
                torch.manual_seed(0)  # the same decoder weights for all
                built = build(cfg)[1].to(device)
                model = model or built
                samplers[loop_name(precond, mode)] = built.sampler
        shape = (batch, cfg.data.channels, cfg.data.image_size, cfg.data.image_size)
        x = torch.rand(shape, device=device)
        x = x.round() if "likelihood=bernoulli" in overrides else x
        z0 = torch.randn(batch, model.latent_dim, device=device)
        references = {"minimal": partial(minimal_langevin, model.energy, x, z0, OVERHEAD_STEP_SIZES["none"], steps)}
        if device.type == "cpu" and (jax := jax_loop(model, x, z0, steps)) is not None:
            references["jax"] = jax
        fns = {**references, **{k: partial(sampler.run, model.energy, z0, x) for k, sampler in samplers.items()}}
        times = interleaved_ms(fns, device, repeats, warmup)
        row = {"model": name, "batch": batch, "steps": steps, "repeats": repeats,
               **{f"{k}_ms": statistics.median(v) / steps for k, v in times.items()}}
        for loop in samplers:
            for reference in references:
                q1, q2, q3 = quartiles([a / b for a, b in zip(times[loop], times[reference])])
                suffix = "" if reference == "minimal" else f"_{reference}"
                row[f"{loop}_ratio{suffix}"], row[f"{loop}_ratio{suffix}_iqr"] = q2, [q1, q3]
        rows.append(row)
        print(f"overhead {name}: " + ", ".join(f"{k}={fmt(v) if isinstance(v, float) else v}" for k, v in row.items()), flush=True)
    return rows


def loop_name(precond: str, mode: str) -> str:
    """The overhead table's name of the project's loop with ``precond`` in ``mode``."""
    return precond if mode == "eager" else f"{precond}_{mode}"


def raw_graph_ms(model, x: torch.Tensor, steps: int, repeats: int, warmup: int) -> float:
    """ms per step of the bare loop replayed from one CUDA graph: T preconditioned Langevin steps
    (the Adam-style M per example during burn-in, the project's default) and nothing else: no
    warm-start, input copies, divergence checks, kept samples or output copies. A lower bound on
    what ``sampler.compile=cuda_graph`` can reach, which pays those per call (amortised over T)."""
    sampler, energy = model.sampler, model.energy
    precond = sampler.preconditioner
    static_x, static_z = x.clone(), torch.randn(len(x), model.latent_dim, device=x.device)

    def loop() -> torch.Tensor:
        z, v, scale = static_z, torch.zeros_like(static_z), 1.0
        for t in range(1, steps + 1):
            zr = z.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(energy(static_x, zr).sum(), zr)
            if hasattr(precond, "beta") and t <= max(sampler.burn_in, 1):
                v = precond.beta * v + (1 - precond.beta) * grad.square()
                scale = (1 / ((v / (1 - precond.beta**t)).sqrt() + precond.eps)).clamp_max(precond.max_scale)
            z = z - sampler.step_size * scale * grad + (2 * sampler.step_size * scale) ** 0.5 * torch.randn_like(z)
        return z

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        loop()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        loop()
    return median_ms(graph.replay, x.device, repeats, warmup) / steps


def chain_difference(eager, fast, x: torch.Tensor) -> float:
    """Largest |fast - eager| over the kept samples of one chain from the same seed (after a first
    call, which captures or compiles)."""
    fast.infer(x)
    samples = []
    for model in (eager, fast):
        torch.manual_seed(123)
        samples.append(model.infer(x).samples)
    return (samples[0] - samples[1]).abs().max().item()


def precision_errors(model, x: torch.Tensor, device: torch.device, tf32: bool = False) -> dict[str, dict[str, float]]:
    """Relative errors of E(x, z) (largest over the batch) and of grad_z E (norm over the batch)
    under TF32 and bf16 autocast, against IEEE fp32; then ``tf32`` is the setting again."""
    z = torch.randn(len(x), model.latent_dim, device=device, generator=torch.Generator(device).manual_seed(1))

    def energy_grad() -> tuple[torch.Tensor, torch.Tensor]:
        zr = z.clone().requires_grad_(True)
        energy = model.energy(x, zr)
        (grad,) = torch.autograd.grad(energy.sum(), zr)
        return energy.float(), grad.float()

    set_tf32(False)
    ref_e, ref_g = energy_grad()
    found = {}
    for name in ("tf32", "bf16"):
        set_tf32(name == "tf32")
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=name == "bf16"):
            e, g = energy_grad()
        set_tf32(False)
        found[name] = {"energy_rel_err": ((e - ref_e).abs() / ref_e.abs()).max().item(),
                       "grad_rel_err": ((g - ref_g).norm() / ref_g.norm()).item()}
    set_tf32(tf32)
    return found


def jax_version() -> str | None:
    """JAX's version and the XLA flags the reference ran with, None without JAX."""
    try:
        import jax
    except ImportError:
        return None
    return f"{jax.__version__}, XLA_FLAGS='{os.environ.get('XLA_FLAGS', '')}'"


def fmt(v: float | None, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}g}"


def measure(device: torch.device, out: Path, decoders: list[str], batches: list[int], steps: int, outer_steps: list[int],
            memory_steps: list[int], modes: list[str], latent: int, repeats: int, warmup: int, log_every: int,
            compile_backend: str | None, overhead: dict, tf32: bool) -> dict[str, list[dict]]:
    """Every table of the benchmark (``render`` draws them): the loop overhead (``overhead``: its
    batch, steps, repeats and modes), then per decoder and batch the inner loop, its memory, the
    training step, the fast chains' match to eager's and the error of reduced precision."""
    model_for = lambda dec, b, t, mode="eager", model="pc_langevin": build_model(  # noqa: E731
        device, out, dec, b, t, mode, model, latent, compile_backend)
    overhead_table = overhead_rows(device, out, overhead["batch"], overhead["steps"], overhead["repeats"], warmup,
                                   overhead["modes"])
    inner, memory, outer, match, precision = [], [], [], [], []
    for dec in decoders:
        for b in batches:
            x = torch.rand(b, *SHAPE, device=device)
            models = {mode: model_for(dec, b, steps, mode) for mode in ["eager", *modes]}
            row = {"decoder": dec, "batch": b, "steps": steps}
            for mode, model in models.items():
                row[f"{mode}_ms"] = median_ms(lambda: model.infer(x), device, repeats, warmup) / steps
            eager = models["eager"]
            z0 = torch.randn(b, eager.latent_dim, device=device)
            row["minimal_ms"] = median_ms(partial(minimal_langevin, eager.energy, x, z0, eager.sampler.step_size, steps),
                                          device, repeats, warmup) / steps
            row["raw_graph_ms"] = raw_graph_ms(models["eager"], x, steps, repeats, warmup) if device.type == "cuda" else None
            for mode in modes:
                row[f"{mode}_speedup"] = row["eager_ms"] / row[f"{mode}_ms"]
                if row["raw_graph_ms"]:
                    row[f"{mode}_over_raw"] = row[f"{mode}_ms"] / row["raw_graph_ms"]
                match.append({"decoder": dec, "batch": b, "mode": mode,
                              "max_abs_diff": chain_difference(models["eager"], models[mode], x)})
            inner.append(row)
            print(f"inner {dec} B={b}: " + ", ".join(f"{k}={fmt(v) if isinstance(v, float) else v}" for k, v in row.items()), flush=True)
        b = batches[0]
        x = torch.rand(b, *SHAPE, device=device)
        for mode in ["eager", *modes]:
            peaks, reserved = zip(*(memory_mib(partial(model_for(dec, b, t, mode).infer, x), device) for t in memory_steps))
            memory.append({"decoder": dec, "batch": b, "mode": mode, "steps": memory_steps, "peak_mib": list(peaks),
                           "reserved_mib": list(reserved), "peak_ratio": peaks[1] / peaks[0] if peaks[0] else None,
                           "reserved_ratio": reserved[1] / reserved[0] if reserved[0] else None})
        vae_ms, _ = training_step_ms(model_for(dec, b, 1, model="vae"), device, b, repeats, warmup, log_every, SHAPE)
        for t in outer_steps:
            for mode in ["eager", *modes]:
                ms, fit_ms = training_step_ms(model_for(dec, b, t, mode), device, b, repeats, warmup, log_every, SHAPE)
                outer.append({"decoder": dec, "batch": b, "steps": t, "mode": mode, "lpc_ms": ms, "vae_ms": vae_ms,
                              "lpc_over_vae": ms / vae_ms, "fit_ms": fit_ms})
        precision.append({"decoder": dec, "batch": b, **precision_errors(models["eager"], x, device, tf32)})

    return {"overhead": overhead_table, "inner": inner, "memory": memory, "outer": outer, "match": match, "precision": precision}


def render(result: dict) -> str:
    modes = result["settings"]["modes"]
    lines = [f"- date: {result['date']}", f"- commit: {result['commit']}", f"- machine: {result['machine']}",
             f"- command: `{result['command']}`", f"- torch threads: {result['threads']}"]
    if result["device"] == "cpu":
        lines.append("- on a CPU: no CUDA graphs (raw graph: n/a) and no peak-memory counter (n/a)")
    loops = [loop_name(p, m) for p in OVERHEAD_STEP_SIZES for m in result["settings"].get("overhead_modes", ["eager"])]
    has_jax = any("jax_ms" in r for r in result["overhead"])

    def ratio(r: dict, loop: str, suffix: str) -> str:
        key = f"{loop}_ratio{suffix}"
        return f"{fmt(r[key])}x, IQR {fmt(r[key + '_iqr'][0])}-{fmt(r[key + '_iqr'][1])}" if key in r else "n/a"

    overhead_rows = [[r["model"], str(r["batch"]), str(r["steps"]), fmt(r["minimal_ms"]), fmt(r.get("jax_ms")),
                      *(f"{fmt(r[f'{loop}_ms'])} ({ratio(r, loop, '')}{'; ' + ratio(r, loop, '_jax') + ' of JAX' if has_jax else ''})"
                        for loop in loops)] for r in result["overhead"]]
    repeats = result["overhead"][0]["repeats"] if result["overhead"] else 0
    inner_header = ["decoder", "batch", "minimal ms/step", "eager ms/step", *(f"{m} ms/step" for m in modes), "raw graph ms/step",
                    *(f"eager / {m}" for m in modes), *(f"{m} / raw" for m in modes)]
    inner_rows = [[r["decoder"], str(r["batch"]), fmt(r["minimal_ms"]), fmt(r["eager_ms"]), *(fmt(r[f"{m}_ms"]) for m in modes),
                   fmt(r["raw_graph_ms"]), *(fmt(r[f"{m}_speedup"]) for m in modes),
                   *(fmt(r.get(f"{m}_over_raw")) for m in modes)] for r in result["inner"]]
    memory_rows = [[r["decoder"], str(r["batch"]), r["mode"], *(fmt(p, 4) for p in r["peak_mib"]), fmt(r["peak_ratio"], 4),
                    *(fmt(p, 4) for p in r["reserved_mib"]), fmt(r["reserved_ratio"], 4)] for r in result["memory"]]
    steps = result["memory"][0]["steps"] if result["memory"] else ["", ""]
    outer_rows = [[r["decoder"], str(r["batch"]), str(r["steps"]), r["mode"], fmt(r["lpc_ms"]), fmt(r["vae_ms"]),
                   fmt(r["lpc_over_vae"])] for r in result["outer"]]
    match_rows = [[r["decoder"], str(r["batch"]), r["mode"], fmt(r["max_abs_diff"])] for r in result["match"]]
    precision_rows = [[r["decoder"], str(r["batch"]), name, fmt(r[name]["energy_rel_err"]), fmt(r[name]["grad_rel_err"])]
                      for r in result["precision"] for name in ("tf32", "bf16")]
    sections = [
        "\n".join(lines),
        f"Loop overhead: ms per step of the minimal Langevin loop, of the JAX loop ({result['settings'].get('jax') or 'not installed'}) "
        f"and of the project's ``LangevinSampler.run`` (in brackets: the median ratio to the minimal call beside it, "
        f"and to the JAX call, over {repeats} interleaved calls, with the interquartile range):\n\n"
        + markdown_table(["decoder", "batch", "T", "minimal ms/step", "JAX ms/step",
                          *(f"lpc, precond {loop.replace('_', ', ', 1)}" for loop in loops)], overhead_rows),
    ]
    if not result["inner"]:
        return "\n\n".join(sections)
    return "\n\n".join([
        *sections,
        f"Inner loop (T = {result['settings']['steps']}, LangevinPC.infer, median):\n\n" + markdown_table(inner_header, inner_rows),
        "Memory of one inner loop, capture included (MiB above the model: peak allocated, and reserved growth, "
        "which holds a graph's pool):\n\n"
        + markdown_table(["decoder", "batch", "mode", f"peak T={steps[0]}", f"peak T={steps[1]}", "ratio",
                          f"reserved T={steps[0]}", f"reserved T={steps[1]}", "ratio"], memory_rows),
        f"Training step through Lightning (LPC with burn-in T/2 against one VAE step, median ms; metrics made and "
        f"logged every {result['settings']['log_every']} steps):\n\n"
        + markdown_table(["decoder", "batch", "T", "mode", "LPC ms", "VAE ms", "LPC / VAE"], outer_rows),
        "Fast chain against eager's from the same seed (largest |difference| of the kept samples):\n\n"
        + markdown_table(["decoder", "batch", "mode", "max abs diff"], match_rows),
        "Reduced precision against IEEE fp32 (energy: largest relative error over the batch; gradient: relative norm):\n\n"
        + markdown_table(["decoder", "batch", "precision", "energy rel. err", "grad rel. err"], precision_rows),
    ])
