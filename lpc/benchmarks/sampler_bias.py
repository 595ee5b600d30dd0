"""The bias of ULA, MALA and HMC on a banana whose moments are known exactly (scripts/sampler_bias.py).

Every chain starts from an exact draw of the target, so what the samplers do to the moments after
T transitions is their stationary bias alone (a corrected sampler leaves the law invariant), not
slow convergence; with N independent chains the final states are N independent draws and the
standard errors are exact. Chains that diverge (ULA at large steps) are counted and left out.
HMC runs L = 5 leapfrog steps of eps = sqrt(2 eta) (each moves as far as one Langevin step of eta)
for a fifth of the transitions, so all three samplers spend about the same gradients.
"""

from __future__ import annotations

import math
import time

import torch

from lpc.reporting.markdown import markdown_table
from lpc.samplers import HMCSampler, LangevinSampler, MALASampler
from lpc.samplers.targets import Banana, moments_with_errors


def samplers(eta: float, steps: int) -> dict:
    return {
        "ula": LangevinSampler(step_size=eta, num_steps=steps),
        "mala": MALASampler(step_size=eta, num_steps=steps),
        "hmc": HMCSampler(step_size=math.sqrt(2 * eta), num_steps=max(steps // 5, 1), num_leapfrog=5),
    }


def measure(target: Banana, eta: float, steps: int, chains: int, seed: int) -> list[dict]:
    rows = []
    for name, sampler in samplers(eta, steps).items():
        z0 = target.sample(chains, torch.Generator().manual_seed(seed))
        torch.manual_seed(seed + 1)
        start = time.perf_counter()
        result = sampler.run(target.energy, z0)
        seconds = time.perf_counter() - start
        kept = result.subset(~result.diverged)  # a diverged chain is held at its (exact) start: leave it out
        if kept.diverged.numel() < 2:  # (nearly) every chain diverged: no moments
            estimate = error = torch.full((2, 2), math.nan, dtype=torch.float64)
        else:
            estimate, error = moments_with_errors(kept.last)  # the final state of each chain
        exact = target.moments()
        rows.append({
            "sampler": name, "step_size": eta, "gradients": sampler.grad_evals,
            "mean_z2": estimate[0, 1].item(), "mean_z2_z": ((estimate[0, 1] - exact[0, 1]) / error[0, 1]).item(),
            "second_moment_z2": estimate[1, 1].item(), "second_moment_z2_exact": exact[1, 1].item(),
            "second_moment_z2_z": ((estimate[1, 1] - exact[1, 1]) / error[1, 1]).item(),
            "max_abs_z": ((estimate - exact) / error).abs().max().item(),
            "diverged_frac": result.diverged.double().mean().item(),
            "accept_rate": None if result.accept_rate is None else result.accept_rate.mean().item(),
            "seconds": seconds,
        })
    return rows


def markdown(rows: list[dict]) -> str:
    header = ["step η", "sampler", "gradients", "E[z2] (exact 0)", f"E[z2²] (exact {rows[0]['second_moment_z2_exact']:.2f})",
              "worst error / s.e.", "acceptance", "diverged"]
    return markdown_table(header, ([f"{r['step_size']:g}", r["sampler"], r["gradients"], f"{r['mean_z2']:+.4f}",
                                    f"{r['second_moment_z2']:.4f}", f"{r['max_abs_z']:.1f}",
                                    "" if r["accept_rate"] is None else f"{r['accept_rate']:.3f}",
                                    f"{r['diverged_frac']:.1%}"] for r in rows))
