"""What the inner loop and an update cost on this machine: eager vs the fast modes (``sampler.compile``)
vs a raw CUDA-graph replay of the same Langevin math, written here as the ceiling.

    python scripts/benchmark.py            # on a GPU: dcgan32 and mlp, batch 64/128/512, T = 100
    python scripts/benchmark.py --tiny     # small sizes (the CPU's default; what the tests run)

Measured, per decoder and batch size (the model is built from the project's configs, as train.py
builds it; data shaped as CIFAR-10, 3 x 32 x 32, random pixels: only shapes matter):
  inner    ms per Langevin step of ``LangevinPC.infer`` (the call training makes) in each mode, and of
           the raw graph; (fast mode) / (raw graph) and eager / (fast mode)
  memory   peak allocated and reserved-memory growth of one inner loop (capture included) at
           T = 10 and T = 200, per mode
  outer    ms per training step through Lightning (one LPC update: warm-start, T steps with burn-in
           T / 2, the learning pass and the optimizer; and one VAE update), at T in --outer-steps, with
           the train metrics made and logged every --log-every steps
  match    the largest difference between a fast mode's chain and eager's from the same seed
  precision  energy and grad_z E of fp32 against TF32 and bf16 autocast (relative errors)
  overhead   the project's loop (``LangevinSampler.run``, precond none and adam, eager and
           ``sampler.compile=torch_compile``) against a minimal hand-written Langevin loop on the same
           decoder, weights, data and T (``minimal_langevin``) and, when JAX is installed (the ``jax``
           extra), against the same chain in JAX (``jit`` of ``lax.scan``: lpc/benchmarks/jax_langevin.py):
           the three small decoders the CPU runs (OVERHEAD_MODELS), batch --overhead-batch, T = 50,
           timed interleaved; the median ratio of adjacent calls and its interquartile range, to the
           minimal loop and to JAX. ``--overhead-only`` runs this table alone (what docs/benchmarks.md
           shows for the CPU); pin it to one core (``taskset -c 0``) with ``--threads 1``.
The inner table also has the minimal loop's ms/step on the model it times (``minimal``).
Timing: CUDA events (perf_counter on a CPU) around each call after warm-up calls, the median over
--repeats calls. Writes <out>/benchmark.json and benchmark.md (the tables, machine, commit, command).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from pathlib import Path

import torch

from lpc.benchmarks.inner_loop import jax_version, measure, render
from lpc.jobs.train import set_tf32
from lpc.reporting.provenance import REPO as ROOT
from lpc.reporting.provenance import commit, machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="small default sizes (also the defaults without a GPU)")
    parser.add_argument("--decoders", nargs="+", default=["dcgan32", "mlp"])
    parser.add_argument("--batch-sizes", nargs="+", type=int)
    parser.add_argument("--steps", type=int, help="T of the inner-loop timing (100; 4 with --tiny)")
    parser.add_argument("--outer-steps", nargs="+", type=int, help="T of the training-step timing (20 50 100)")
    parser.add_argument("--memory-steps", nargs=2, type=int, help="the two T of the memory check (10 200)")
    parser.add_argument("--modes", nargs="*", help="fast modes besides eager (cuda_graph on a GPU, torch_compile on a CPU; none: eager only)")
    parser.add_argument("--compile-backend", help="torch.compile backend for torch_compile (its default: inductor)")
    parser.add_argument("--latent", type=int, help="latent dimension D (128; 8 with --tiny)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per measurement (20; 3 with --tiny)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed calls first (3; 1 with --tiny)")
    parser.add_argument("--log-every", type=int, default=10,
                        help="trainer.log_every_n_steps of the training-step timing (10, the configs' default; 1: "
                             "every step makes and logs its metrics)")
    parser.add_argument("--overhead-only", action="store_true", help="only the loop-overhead table")
    parser.add_argument("--overhead-batch", type=int, default=64, help="batch of the overhead table (64)")
    parser.add_argument("--overhead-steps", type=int, default=50, help="T of the overhead table (50)")
    parser.add_argument("--overhead-repeats", type=int, default=30, help="interleaved calls per loop in the overhead table (30)")
    parser.add_argument("--overhead-modes", nargs="+", default=["eager", "torch_compile"],
                        help="sampler.compile modes of the overhead table (eager torch_compile)")
    parser.add_argument("--threads", type=int, help="torch threads (1 for the overhead table, pinned with taskset)")
    parser.add_argument("--tf32", action="store_true", help="time with TF32 matmuls and convolutions (tf32=true); default IEEE fp32")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "benchmark")
    args = parser.parse_args()

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tiny = args.tiny or device.type == "cpu"
    pick = lambda given, full, small: given if given is not None else (small if tiny else full)  # noqa: E731
    batches = pick(args.batch_sizes, [64, 128, 512], [4, 8])
    steps = pick(args.steps, 100, 4)
    outer_steps = pick(args.outer_steps, [20, 50, 100], [2, 4])
    memory_steps = pick(args.memory_steps, [10, 200], [2, 8])
    modes = pick(args.modes, ["cuda_graph"] if device.type == "cuda" else ["torch_compile"], ["torch_compile"])
    latent = pick(args.latent, 128, 8)
    repeats, warmup = pick(args.repeats, 20, 3), pick(args.warmup, 3, 1)
    set_tf32(args.tf32)
    torch.backends.cudnn.benchmark = True
    tables = measure(device, args.out, [] if args.overhead_only else args.decoders, batches, steps, outer_steps, memory_steps,
                     modes, latent, repeats, warmup, args.log_every, args.compile_backend,
                     {"batch": args.overhead_batch, "steps": args.overhead_steps, "repeats": args.overhead_repeats,
                      "modes": args.overhead_modes}, args.tf32)

    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = "python scripts/benchmark.py " + " ".join(sys.argv[1:])
    result = {"date": when, "commit": commit(), "machine": machine(), "device": str(device), "tiny": tiny,
              "command": command, "threads": torch.get_num_threads(),
              "settings": {"latent": latent, "steps": steps, "repeats": repeats, "warmup": warmup, "log_every": args.log_every,
                           "modes": modes, "compile_backend": args.compile_backend or "inductor",
                           "overhead_modes": args.overhead_modes, "jax": jax_version(), "tf32": args.tf32},
              **tables}
    report = render(result)
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmark.json").write_text(json.dumps(result, indent=2))
    (args.out / "benchmark.md").write_text(report + "\n")
    print(f"written: {args.out / 'benchmark.json'}, {args.out / 'benchmark.md'}")


if __name__ == "__main__":
    main()
