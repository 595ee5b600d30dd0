"""lpc.callbacks.Budget: a budget of decoder evaluations ends every method within one update of it."""

from __future__ import annotations

import json

import pytest

from lpc.errors import ConfigError
from lpc.jobs.train import train

TINY = ["num_steps=6", "burn_in=2", "sampler.thin=1", "trainer.max_steps=-1", "trainer.val_check_interval=1000",
        "trainer.limit_val_batches=1", "logger=csv", "callbacks=none"]
BUDGET = 250


@pytest.mark.parametrize("method", ["lpc", "vae", "iwae", "lpc_jeffreys"])
def test_a_decoder_evaluation_budget_stops_every_method_at_the_same_count(compose_cfg, tmp_path, method):
    """LPC spends T + S = 6 + 4 decoder passes per update, LPC with a Jeffreys warm-start 11, the
    VAE 1 and IWAE 5: each stops at the last update that keeps its total within the budget."""
    cost = {"lpc": 10, "lpc_jeffreys": 11, "vae": 1, "iwae": 5}[method]
    train(compose_cfg(f"method={method}", *TINY, f"budget.decoder_evals={BUDGET}"))
    summary = json.loads((tmp_path / "metrics.json").read_text())
    spent, steps = summary["decoder_evals_total"], summary["global_step"]
    assert BUDGET - cost < spent <= BUDGET and spent == steps * cost, (spent, steps)


def test_the_run_still_stops_at_max_steps_and_a_budget_must_be_positive(compose_cfg, tmp_path):
    train(compose_cfg("method=vae", *TINY, "trainer.max_steps=7", f"budget.decoder_evals={BUDGET}"))
    assert json.loads((tmp_path / "metrics.json").read_text())["decoder_evals_total"] == 7
    with pytest.raises(ConfigError, match="budget.decoder_evals must be >= 1"):
        train(compose_cfg("method=vae", *TINY, "budget.decoder_evals=0"))
