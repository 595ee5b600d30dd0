"""The shared evaluation: the full sample-quality pipeline with an injected feature network, the
offline Inception path, evaluation during training, and scripts/evaluate.py on every method."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from unittest import mock

import numpy as np
import pytest
import torch
from conftest import ROOT, read_metrics
from test_estimators import scipy_frechet
from test_train import FAST
from torch import Tensor, nn
from torch.utils.data import Dataset, TensorDataset

from lpc.data import DigitsDataModule
from lpc.evaluation import prdc
from lpc.evaluation.protocol import Evaluator, LikelihoodBounds, SampleQuality
from lpc.evaluation.features import FeaturesUnavailableError, InceptionFeatures
from lpc.jobs.checkpoints import moved_targets
from lpc.jobs.train import train


class SmallFeatures(nn.Module):
    """A fixed random conv net standing in for Inception."""

    name = "small"

    def __init__(self):
        super().__init__()
        torch.manual_seed(123)
        self.net = nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1), nn.Tanh(), nn.Flatten(), nn.Linear(8 * 16, 6))

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images)


class StubModel(nn.Module):
    """Just what the sample-quality evaluation needs: a device and deterministic samples in [-1, 1]."""

    def __init__(self, pool: Tensor):
        super().__init__()
        self.pool = pool
        self.served = 0
        self.dummy = nn.Parameter(torch.zeros(()))

    @property
    def device(self) -> torch.device:
        return self.dummy.device

    def generate(self, n: int) -> Tensor:
        out = self.pool[self.served : self.served + n]
        self.served += n
        return out


READS: list[tuple[str, int]] = []  # (split, training step) of every image RecordingDigits served from val and test


class Recorded(Dataset):
    """A split that records the training step at which each of its images is read."""

    def __init__(self, base: Dataset, name: str, datamodule: DigitsDataModule):
        self.base, self.name, self.datamodule = base, name, datamodule

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        READS.append((self.name, self.datamodule.trainer.global_step if self.datamodule.trainer else -1))
        return self.base[index]


class RecordingDigits(DigitsDataModule):
    """The digits, with their validation and test splits recorded (``READS``)."""

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        for name in ("val", "test"):
            if not isinstance(getattr(self, f"{name}_set"), Recorded):
                setattr(self, f"{name}_set", Recorded(getattr(self, f"{name}_set"), name, self))


def test_evaluation_during_training_never_reads_the_test_split(compose_cfg):
    """Validation at step 15 (evaluation, Lightning's loop, image grids) and at the end; the test
    split is read once, after the last step, by the final evaluation only."""
    READS.clear()
    train(compose_cfg(*FAST, "eval=fast", "eval.sample_quality.num_samples=50", "data._target_=test_protocol.RecordingDigits"))
    steps = {name: {step for split, step in READS if split == name} for name in ("val", "test")}
    assert {15, 30} <= steps["val"] and steps["test"] == {30}
    # and with the final test evaluation off (a tuning trial), never
    READS.clear()
    train(compose_cfg(*FAST, "eval=fast", "eval.sample_quality.num_samples=50", "data._target_=test_protocol.RecordingDigits",
                      "callbacks.evaluation.test=false"))
    assert {split for split, _ in READS} == {"val"}


def test_a_checkpoint_from_before_the_validation_split_says_so_when_evaluated(compose_cfg, tmp_path):
    """Its training saw today's validation images: evaluate.py warns and records it, and scores the test split.
    Its config names classes by the module paths from before the package was grouped by role (lpc.likelihoods,
    lpc.priors, lpc.warmstart, lpc.metrics): they are read as the new ones."""
    train(compose_cfg("model=vae", *FAST, "callbacks=model_checkpoint"))
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    saved = ckpt["hyper_parameters"]
    for key in ("val_size", "split_seed"):  # as a checkpoint written before 2026-12-05 has it
        del saved["data"][key]
    for node, old in ((saved["likelihood"], "lpc.likelihoods"), (saved["prior"], "lpc.priors"),
                      (saved["warmstart"], "lpc.warmstart"), (saved["eval"]["sigma_fit"], "lpc.metrics.scale_fit")):
        node["_target_"] = f"{old}.{node['_target_'].rsplit('.', 1)[1]}"
    torch.save(ckpt, tmp_path / "old.ckpt")
    cmd = [sys.executable, "scripts/evaluate.py", f"ckpt_path={tmp_path / 'old.ckpt'}", "eval=fast", "eval.sample_quality.enabled=false",
           "logger=csv", f"hydra.run.dir={tmp_path / 'eval'}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert report["split"] == "test" and "trained before lpc held out a validation split" in report["notes"][0]
    assert "note: this checkpoint was trained before lpc held out a validation split" in proc.stdout


def test_old_module_paths_in_a_checkpoint_are_rewritten():
    saved = {"likelihood": {"_target_": "lpc.likelihoods.GaussianLikelihood", "sigma": 0.1},
             "eval": {"_target_": "lpc.evaluation.Evaluator", "ais": {"_target_": "lpc.evaluation.AnnealedLikelihood"},
                      "sigma_fit": {"_target_": "lpc.metrics.scale_fit.ScaleFit"}},
             "callbacks": [{"_target_": "lpc.callbacks.Budget"}], "model": {"_target_": "lpc.methods.VAE"}}
    assert moved_targets(saved) == {
        "likelihood": {"_target_": "lpc.model.likelihoods.GaussianLikelihood", "sigma": 0.1},
        "eval": {"_target_": "lpc.evaluation.protocol.Evaluator", "ais": {"_target_": "lpc.evaluation.protocol.AnnealedLikelihood"},
                 "sigma_fit": {"_target_": "lpc.evaluation.scale_fit.ScaleFit"}},
        "callbacks": [{"_target_": "lpc.callbacks.Budget"}], "model": {"_target_": "lpc.methods.VAE"}}
    assert moved_targets(moved_targets(saved)) == moved_targets(saved)  # new paths stay


def numpy_kid(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3 (Binkowski et al. 2018), straight from the formula."""
    d = x.shape[1]
    k = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    m, n = len(x), len(y)
    return ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
            - 2 * kxy.mean())


def test_sample_quality_pipeline_equals_a_direct_computation():
    g = torch.Generator().manual_seed(0)
    real = torch.rand(300, 1, 8, 8, generator=g) * 2 - 1  # data in [-1, 1]
    fake = (torch.rand(200, 1, 8, 8, generator=g) * 1.6 - 1).clamp(-1, 1)
    test_set = TensorDataset(real, torch.zeros(300))
    evaluator = Evaluator(SampleQuality(SmallFeatures, num_samples=200, batch_size=64, prdc_k=3),
                          LikelihoodBounds(enabled=False))
    result = evaluator.evaluate(StubModel(fake), test_set, pixel_range=(-1.0, 1.0))
    net = SmallFeatures()
    with torch.no_grad():
        f_real = net((real[:200] + 1) / 2).double()
        f_fake = net((fake + 1) / 2).double()
    assert set(result.metrics) == {"fd_small", "kid_small", "kid_small_std", "precision_small", "recall_small",
                                   "density_small", "coverage_small"}
    assert result.metrics["fd_small"] == pytest.approx(scipy_frechet(f_real.numpy(), f_fake.numpy()), rel=1e-5)
    # subsets of all 200 from each side: every subset is the whole set, so KID is the plain unbiased MMD^2
    assert result.metrics["kid_small"] == pytest.approx(numpy_kid(f_real.numpy(), f_fake.numpy()), rel=1e-6)
    assert result.metrics["kid_small_std"] == pytest.approx(0.0, abs=1e-9)
    want = prdc(f_real, f_fake, k=3)
    assert {k: result.metrics[f"{k}_small"] for k in want} == pytest.approx(want)
    assert not result.errors


def test_missing_inception_weights_skip_fid_once_with_both_fixes(caplog):
    real = torch.rand(50, 1, 8, 8)
    evaluator = Evaluator(SampleQuality("inception", num_samples=20, download=False),
                          LikelihoodBounds(enabled=False))
    with caplog.at_level(logging.WARNING):
        first = evaluator.evaluate(StubModel(torch.rand(40, 1, 8, 8)), TensorDataset(real, real), (0.0, 1.0))
        second = evaluator.evaluate(StubModel(torch.rand(40, 1, 8, 8)), TensorDataset(real, real), (0.0, 1.0))
    assert "fid" not in first.metrics and "fid" in first.errors and first.errors == second.errors
    assert "eval.sample_quality.weights_path" in first.errors["fid"] and "eval.sample_quality.download=true" in first.errors["fid"]
    assert sum("FID skipped" in r.getMessage() for r in caplog.records) == 1
    with pytest.raises(FeaturesUnavailableError, match="no file at eval.sample_quality.weights_path"):
        InceptionFeatures(weights_path="/nonexistent/inception.pth")


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory) -> str:
    """A weights file in torch-fidelity's Inception format, randomly initialised (the real one
    cannot be downloaded in the tests)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    with mock.patch.object(FeatureExtractorInceptionV3, "load_state_dict"), \
            mock.patch("torch_fidelity.feature_extractor_inceptionv3.load_state_dict_from_url", return_value={}):
        random_net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    weights = tmp_path_factory.mktemp("inception") / "inception.pth"
    torch.save(random_net.state_dict(), weights)
    return str(weights)


def test_inception_path_with_a_local_weights_file(inception_weights):
    """The real Inception pipeline fed a weights file: 2048-d features from 8x8 grayscale digits, finite FID."""
    features = InceptionFeatures(weights_path=inception_weights, download=False)
    assert features(torch.rand(3, 1, 8, 8)).shape == (3, 2048)
    evaluator = Evaluator(SampleQuality(lambda: features, num_samples=12, batch_size=6), LikelihoodBounds(enabled=False))
    real = torch.rand(12, 1, 8, 8)
    result = evaluator.evaluate(StubModel(torch.rand(12, 1, 8, 8)), TensorDataset(real, real), (0.0, 1.0))
    assert np.isfinite(result.metrics["fid"]) and {"precision", "recall", "density", "coverage"} <= set(result.metrics)


def test_training_logs_fid_and_prdc_when_the_weights_are_given(compose_cfg, tmp_path, inception_weights):
    train(compose_cfg(*FAST, "eval=fast", f"eval.sample_quality.weights_path={inception_weights}", "eval.sample_quality.num_samples=24",
                      "eval.sample_quality.references=false",  # Inception on a CPU: the reference points are tested in other features
                      "callbacks.evaluation.every_n_steps=0", "callbacks.image_grids.every_n_steps=0"))
    for name in ("fid", "precision", "recall", "density", "coverage", "elbo_chain"):
        for split in ("val", "test"):  # the validation split at the last step, then the test split
            values = read_metrics(tmp_path, f"{split}/{name}")
            assert len(values) == 1 and np.isfinite(values[0]), (split, name)


def test_training_logs_the_evaluation_and_survives_missing_fid(compose_cfg, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        metrics = train(compose_cfg(*FAST, "eval=fast", "eval.sample_quality.download=false", "callbacks.image_grids.every_n_steps=0"))
    assert metrics["test/iwae10_chain"] >= metrics["test/elbo_chain"] - 1.0 and "test/bpd_chain" in metrics
    assert not any(k.startswith("test/fid") for k in metrics)
    assert len(read_metrics(tmp_path, "val/elbo_chain")) == 2  # the validation split at step 15 and at the end ...
    assert len(read_metrics(tmp_path, "test/elbo_chain")) == 1  # ... and the test split once, at the end
    assert sum("FID skipped" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize("method,proposals", [  # warmstart=none and persistent: tests/methods/test_sampler_runs.py
    (["warmstart=jeffreys"], {"chain", "encoder"}), (["sampler=mala"], {"chain"}),
    (["sampler=hmc", "sampler.num_leapfrog=2", "warmstart=reverse_kl"], {"chain", "encoder"}),
    (["model=pc"], {"chain"}), (["model=vae"], {"encoder"}), (["model=iwae"], {"encoder"}),
])
def test_evaluate_py_on_a_checkpoint_of_each_method(compose_cfg, tmp_path, method, proposals):
    """eval=ais_paper (Wu et al.'s 16 chains and 10 leapfrog steps; few distributions and examples here) on
    the test split, at the sigma fitted on the validation split, which it prints with the AIS estimates."""
    train(compose_cfg(*method, *FAST, "likelihood=gaussian_learned", "callbacks=model_checkpoint"))
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    out = tmp_path / "eval"
    cmd = [sys.executable, "scripts/evaluate.py", f"ckpt_path={ckpt}", "eval=ais_paper", "eval.sample_quality.num_samples=100",
           "eval.sample_quality.download=false", "eval.likelihood.num_examples=6", "eval.likelihood.k=[1,10]",
           "eval.ais.num_distributions=5", "eval.ais.bdmc_examples=3",
           "eval.ais.check_distributions=[3]", "eval.ais.starts=[prior,encoder,chain]", "eval.sigma_fit.num_examples=20",
           "eval.sigma_fit.burn_in=20", "logger=csv", f"hydra.run.dir={out}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "metrics.json").read_text())
    assert report["global_step"] == 30 and "FID skipped" in report["missing"]["fid"]
    assert report["split"] == "test" and report["images"] == 297 and report["notes"] == []
    m = report["metrics"]
    assert m["test/sigma_fitted"] > 0 and m["test/sigma_trained"] != m["test/sigma_fitted"]
    assert f"scored the test split (297 images)" in proc.stdout
    assert f"sigma fitted on the validation split: {m['test/sigma_fitted']:.4g} (training left {m['test/sigma_trained']:.4g}" in proc.stdout
    assert f"test/ais_prior = {m['test/ais_prior']:.2f} nats; {m['test/trained_sigma/ais_prior']:.2f} at the training sigma" in proc.stdout
    for p in proposals:
        assert m[f"test/iwae10_{p}"] >= m[f"test/elbo_{p}"] - 1.0 and m[f"test/bpd_{p}"] > 0
    assert {f"test/elbo_{p}" for p in proposals} == {k for k in m if k.startswith("test/elbo_")}
    starts = {"prior"} | proposals  # AIS from the prior, and from each proposal the method offers (encoder, chain)
    assert {k for k in m if k.startswith("test/ais_") and k.count("_") == 1} == {f"test/ais_{s}" for s in starts}
    assert {f"test/{k}_{s}" for s in starts for k in ("ais3", "bdmc_gap")} <= set(m)  # each start checked at K = 3
    assert all(np.isfinite(m[f"test/ais_{s}"]) and m[f"test/bdmc_gap_{s}"] > -5 for s in starts)
    best = report["estimators"]["test/log_likelihood"]
    assert m["test/log_likelihood"] == m[best] == max(m[k] for k in m if k.startswith(("test/iwae10_", "test/ais_"))
                                                      and k.count("_") == 1)
    assert (out / "images" / "samples_step000030.png").exists()


def test_evaluate_py_refuses_a_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "last.ckpt"
    bad.write_bytes(b"\x00not a checkpoint")
    cmd = [sys.executable, "scripts/evaluate.py", f"ckpt_path={bad}", f"hydra.run.dir={tmp_path / 'eval'}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "is not a readable checkpoint" in proc.stdout + proc.stderr
