"""One command that measures the GPU path the first time a GPU is there (under 8 minutes on one
GPU, with only what the install provides: no download), and checks its own plumbing on a CPU.

    python scripts/gpu_check.py OUT_DIR          # on a GPU machine
    python scripts/gpu_check.py OUT_DIR --dry    # anywhere: every step at toy sizes (the tests run this)

Steps, each a subprocess with its own time limit, its log and outputs in --work (default a temporary
folder):
  tests      the GPU tests (tests/samplers/test_compiled.py: CUDA graphs give eager's chain, training matches)
  inner      scripts/benchmark.py: the inner-loop table (eager, torch_compile, cuda_graph, the minimal
             loop, the raw CUDA-graph replay) for dcgan32 and mlp at batch 64 and 256, in fp32, and
             again with TF32; memory, training steps against a VAE step, precision
  ais        scripts/ais_benchmark.py: what AIS costs beside IWAE
  train      a short CIFAR-10 training run (experiment=cifar10_lpc) with the fastest loop
             (sampler.compile=cuda_graph), from --cifar (a folder or zip of train/ and test/ images)
Writes OUT_DIR/gpu_check.md (each step's status and time, and the benchmark's tables) and
OUT_DIR/gpu_check.json (everything, the benchmarks' JSON included): two files, as the device tool
brings back. docs/benchmarks.md says how to run it on the lent GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

# (name, arguments on a GPU, arguments in --dry, time limit in seconds on a GPU)
STEPS = [
    ("tests", ["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/samplers/test_compiled.py"],
     ["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/samplers/test_compiled.py", "-k", "loop_never_waits and ula"], 90),
    ("inner", ["scripts/benchmark.py", "--decoders", "dcgan32", "mlp", "--batch-sizes", "64", "256", "--steps", "50",
               "--modes", "torch_compile", "cuda_graph", "--outer-steps", "20", "50", "--repeats", "10"],
     ["scripts/benchmark.py", "--tiny", "--decoders", "mlp", "--batch-sizes", "4", "--outer-steps", "2", "--modes",
      "--overhead-repeats", "2", "--overhead-batch", "4", "--overhead-steps", "4", "--overhead-modes", "eager"], 180),
    ("inner_tf32", ["scripts/benchmark.py", "--decoders", "dcgan32", "mlp", "--batch-sizes", "64", "256", "--steps", "50",
                    "--outer-steps", "20", "--repeats", "10", "--tf32", "--overhead-repeats", "3"],
     ["scripts/benchmark.py", "--tiny", "--decoders", "mlp", "--batch-sizes", "4", "--outer-steps", "2", "--modes",
      "--tf32", "--overhead-repeats", "2", "--overhead-batch", "4", "--overhead-steps", "4", "--overhead-modes", "eager"], 60),
    ("ais", ["scripts/ais_benchmark.py", "--data", "digits", "--examples", "100", "--overhead-repeats", "5"],
     ["scripts/ais_benchmark.py", "--data", "digits", "--examples", "2", "--batch-size", "2", "--paper-distributions", "4",
      "--ais-distributions", "4", "--overhead-distributions", "4", "--overhead-repeats", "1"], 45),
]


def train_step(cifar: Path, dry: bool) -> list[str]:
    if dry:
        return ["train.py", "num_steps=3", "burn_in=1", "trainer.max_steps=2", "trainer.val_check_interval=2", "eval=fast",
                "eval.sample_quality.enabled=false", "logger=csv", "callbacks=none", "trainer.enable_progress_bar=false"]
    return ["train.py", "experiment=cifar10_lpc", f"data.root={cifar}", "trainer=gpu", "sampler.compile=cuda_graph",
            "trainer.max_steps=300", "trainer.val_check_interval=300", "eval.features=classifier", "eval.sample_quality.num_samples=2000",
            "eval.likelihood.num_examples=200", "logger=csv", "trainer.enable_progress_bar=false"]


def run_step(name: str, args: list[str], limit: float, work: Path) -> dict:
    """Run one step (its output folder under ``work``); its status, seconds, and JSON results."""
    out = work / name
    out.mkdir(parents=True, exist_ok=True)
    outputs = ["--out", str(out)] if args[0].startswith("scripts/") and "benchmark" in args[0] else []
    hydra = [f"hydra.run.dir={out}"] if args[0] == "train.py" else []
    junit = [f"--junitxml={out / 'tests.xml'}"] if args[:2] == ["-m", "pytest"] else []
    cmd = [PY, *args, *outputs, *hydra, *junit]
    start = time.perf_counter()
    env = {**os.environ, "LPC_ROOT": str(ROOT), "PYTHONUNBUFFERED": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=limit)
        status, log = ("ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"), proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as err:
        status, log = f"timed out after {limit:.0f} s", f"{err.stdout or ''}{err.stderr or ''}"
    (out / "log.txt").write_text(log if isinstance(log, str) else log.decode(errors="replace"))
    results = {p.name: json.loads(p.read_text()) for p in sorted(out.glob("*.json"))}
    tables = "\n\n".join(p.read_text() for p in sorted(out.glob("*.md")))
    print(f"{name}: {status} in {time.perf_counter() - start:.0f} s", flush=True)
    return {"name": name, "command": " ".join(["python", *cmd[1:]]).replace(str(ROOT) + "/", ""), "status": status,
            "seconds": time.perf_counter() - start, "results": results, "tables": tables,
            "log_tail": (log if isinstance(log, str) else "")[-3000:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--dry", action="store_true", help="every step at toy sizes, on any machine")
    parser.add_argument("--cifar", type=Path, default=ROOT / "data" / "cifar10_jpeg.zip",
                        help="CIFAR-10 as a folder or zip of train/ and test/ images (the train step)")
    parser.add_argument("--work", type=Path, help="where each step writes (default: a temporary folder)")
    args = parser.parse_args()
    import torch

    if not args.dry and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run with --dry to check the plumbing, or on a GPU machine")
    work = args.work or Path(tempfile.mkdtemp(prefix="lpc_gpu_check_"))
    steps = [(name, dry if args.dry else full, limit) for name, full, dry, limit in STEPS]
    steps.append(("train", train_step(args.cifar, args.dry), 100))  # the limits add up to 7 min 55 s
    found = [run_step(name, cmd, limit * (3 if args.dry else 1), work) for name, cmd, limit in steps]
    from lpc.reporting.provenance import commit, machine

    report = {"commit": commit(), "machine": machine(), "dry": args.dry, "steps": found}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str))
    lines = [f"- commit: {report['commit']}", f"- machine: {report['machine']}", f"- dry: {args.dry}", "",
             "| step | status | seconds | command |", "|---|---|---|---|",
             *(f"| {s['name']} | {s['status']} | {s['seconds']:.0f} | `{s['command']}` |" for s in found), ""]
    lines += [f"## {s['name']}\n\n{s['tables']}\n" for s in found if s["tables"]]
    (args.out / "gpu_check.md").write_text("\n".join(lines))
    print(f"written: {args.out / 'gpu_check.md'}, {args.out / 'gpu_check.json'}")
    if any(s["status"] != "ok" for s in found):
        raise SystemExit("some steps did not finish: see gpu_check.md")


if __name__ == "__main__":
    main()
