"""The offline feature-space metrics (fd_<name>, kid_<name>, PRDC) measure what they should, on
real data, through the shipped in-domain classifiers."""

from __future__ import annotations

import functools
import json
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, SHARED_CIFAR, SHARED_MNIST_T10K, run_train
from test_protocol import StubModel
from test_estimators import scipy_frechet
from torch.utils.data import TensorDataset
from torchvision.transforms.functional import gaussian_blur

from lpc.data import DigitsDataModule, FolderDataModule
from lpc.errors import ConfigError
from lpc.evaluation.protocol import Evaluator, LikelihoodBounds, SampleQuality
from lpc.evaluation.domain_classifiers import SHIPPED_DIR, load_feature_net
from lpc.evaluation.features import ClassifierFeatures, FeaturesUnavailableError
from lpc.evaluation.frechet import frechet_distance
from lpc.jobs.train import train
from lpc.networks import ConvDecoder, MLPDecoder

needs_cifar = pytest.mark.skipif(not SHARED_CIFAR.exists(), reason="needs ../shared/data/cifar10/cifar10_jpeg.zip")


def first(dataset, n: int) -> torch.Tensor:
    return torch.stack([dataset[i][0] for i in range(min(n, len(dataset)))])


@functools.cache  # read once per test process: the CIFAR-10 images take tens of seconds to decode
def digits() -> tuple[torch.Tensor, torch.Tensor, ClassifierFeatures]:
    dm = DigitsDataModule()
    dm.setup()
    return first(dm.train_set, 1500), first(dm.test_set, 297), ClassifierFeatures(None, dm.dataset_id, dm.image_shape)


@functools.cache
def cifar(n: int = 2000) -> tuple[torch.Tensor, torch.Tensor, ClassifierFeatures]:
    dm = FolderDataModule(root=SHARED_CIFAR, image_size=32, channels=3)
    dm.setup()
    every = len(dm.train_set) // n  # a spread of classes, not the first folder only
    train = torch.stack([dm.train_set[i][0] for i in range(0, every * n, every)])
    test = torch.stack([dm.test_set[i][0] for i in range(0, len(dm.test_set), len(dm.test_set) // n)])
    return train, test, ClassifierFeatures(None, dm.dataset_id, dm.image_shape)


def untrained_samples(shape: tuple[int, ...], n: int) -> torch.Tensor:
    torch.manual_seed(0)
    c, h, _ = shape
    decoder = MLPDecoder(16, c, h) if h == 8 else ConvDecoder(16, c, h)
    with torch.no_grad():
        return torch.sigmoid(decoder(torch.randn(n, 16)))


def fd(net: ClassifierFeatures, a: torch.Tensor, b: torch.Tensor) -> float:
    with torch.no_grad():
        return frechet_distance(net(a), net(b))


@pytest.mark.parametrize("load", [digits, pytest.param(cifar, marks=needs_cifar)])
def test_real_splits_are_close_and_an_untrained_decoder_is_far(load):
    train, test, net = load()
    between_splits = fd(net, train, test)
    untrained = fd(net, test, untrained_samples(tuple(test.shape[1:]), len(test)))
    assert between_splits * 10 < untrained, (between_splits, untrained)


@pytest.mark.parametrize("load,base_sigma,kernel", [(digits, 0.6, 5), pytest.param(cifar, 0.7, 9, marks=needs_cifar)])
def test_distance_grows_with_blur_and_with_noise(load, base_sigma, kernel):
    _, test, net = load()
    blurred = [fd(net, test, gaussian_blur(test, kernel, base_sigma * level)) for level in (1, 2, 4)]
    g = torch.Generator().manual_seed(0)
    noisy = [fd(net, test, (test + s * torch.randn(test.shape, generator=g)).clamp(0, 1)) for s in (0.05, 0.1, 0.2)]
    assert 0 < blurred[0] < blurred[1] < blurred[2], blurred
    assert 0 < noisy[0] < noisy[1] < noisy[2], noisy


def test_pipeline_distance_equals_scipy_on_the_same_features():
    _, test, net = digits()
    blurred = gaussian_blur(test, 5, 1.0)
    evaluator = Evaluator(SampleQuality("classifier", num_samples=297, batch_size=100, prdc_k=3),
                          LikelihoodBounds(enabled=False))
    result = evaluator.evaluate(StubModel(blurred), TensorDataset(test, torch.zeros(len(test))), (0.0, 1.0), "digits")
    with torch.no_grad():
        want = scipy_frechet(net(test).double().numpy(), net(blurred).double().numpy())
    assert result.metrics["fd_digits_cnn"] == pytest.approx(want, rel=1e-5)
    assert {"kid_digits_cnn", "kid_digits_cnn_std", "precision_digits_cnn", "coverage_digits_cnn"} <= set(result.metrics)
    assert not any(k == "fid" or k.startswith("fid_") for k in result.metrics)


def test_a_network_for_other_data_is_refused():
    with pytest.raises(ConfigError, match=r"trained on digits \(1x8x8\), not on the evaluated data cifar10_jpeg \(3x32x32\)"):
        ClassifierFeatures(str(SHIPPED_DIR / "digits_cnn.pt"), "cifar10_jpeg", (3, 32, 32))
    with pytest.raises(FeaturesUnavailableError, match="no shipped feature network fits data svhn .* scripts/train_feature_net.py"):
        ClassifierFeatures(None, "svhn", (3, 32, 32))
    with pytest.raises(ConfigError, match="not on the evaluated data digits \\(1x28x28\\)"):
        ClassifierFeatures(str(SHIPPED_DIR / "digits_cnn.pt"), "digits", (1, 28, 28))


def test_a_damaged_feature_network_file_is_refused(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes((SHIPPED_DIR / "digits_cnn.pt").read_bytes()[:1000])
    with pytest.raises(ConfigError, match="is not a feature network written by scripts/train_feature_net.py"):
        ClassifierFeatures(str(bad), "digits", (1, 8, 8))


def test_shipped_networks_have_cards_that_match_their_weights():
    for card_path in SHIPPED_DIR.glob("*.json"):
        card = json.loads(card_path.read_text())
        net, saved = load_feature_net(card_path.with_suffix(".pt"))
        assert saved == card and net.feature_dim == card["feature_dim"] and card["test_accuracy"] >= 0.84
        assert card_path.with_suffix(".pt").stat().st_size < 5e6
        assert {"data_sha256", "command", "commit", "feature_layer"} <= set(card)


def test_train_feature_net_script_writes_a_network_and_its_card(tmp_path):
    cmd = [sys.executable, "scripts/train_feature_net.py", "name=tiny", "epochs=2", "widths=[8,16]", "padding=1",
           "flip=false", f"out_dir={tmp_path}", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    card = json.loads((tmp_path / "tiny.json").read_text())
    assert card["dataset"] == "digits" and card["image_shape"] == [1, 8, 8] and card["feature_dim"] == 16
    assert card["train_examples"] == 1350 and 0.1 < card["test_accuracy"] <= 1.0
    assert card["command"].startswith("python scripts/train_feature_net.py name=tiny")
    net, _ = load_feature_net(tmp_path / "tiny.pt")
    assert net.features(torch.rand(3, 1, 8, 8)).shape == (3, 16)


def test_training_logs_classifier_metrics_and_refuses_a_misfit(tmp_path):
    fast = ["trainer.max_steps=20", "trainer.val_check_interval=10", "num_steps=10", "burn_in=5", "eval=fast",
            "eval.features=classifier", "logger=csv", "callbacks.image_grids.every_n_steps=0"]
    run_train(tmp_path / "ok", *fast)
    metrics = json.loads((tmp_path / "ok" / "metrics.json").read_text())
    assert {"test/fd_digits_cnn", "test/kid_digits_cnn", "test/precision_digits_cnn"} <= set(metrics)
    assert not any(k.startswith("test/fid") for k in metrics)
    cmd = [sys.executable, "train.py", *fast, f"eval.sample_quality.classifier_path={SHIPPED_DIR / 'digits_cnn.pt'}",
           "data.image_size=28", "decoder=dcgan28", f"hydra.run.dir={tmp_path / 'bad'}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "ConfigError" in proc.stdout + proc.stderr
    assert not (tmp_path / "bad" / "checkpoints").exists()


@pytest.mark.skipif(not SHARED_MNIST_T10K.exists(), reason="needs ../shared/data/mnist-t10k")
def test_the_mnist_test_split_is_measured_by_its_own_shipped_network(compose_cfg, tmp_path):
    metrics = train(compose_cfg("data=mnist_t10k", f"data.root={SHARED_MNIST_T10K}", "trainer.max_steps=4",
                                "trainer.val_check_interval=4", "num_steps=4", "burn_in=2", "eval=fast",
                                "eval.features=classifier", "logger=csv", "callbacks.image_grids.every_n_steps=0"))
    assert metrics["test/fd_mnist_t10k_cnn"] > 0 and "test/kid_mnist_t10k_cnn" in metrics


@needs_cifar
def test_evaluate_py_gives_offline_metrics_for_a_cifar10_checkpoint(tmp_path):
    run_train(tmp_path / "run", "data=folder", f"data.root={SHARED_CIFAR}", "decoder=dcgan32", "trainer.max_steps=2",
              "trainer.val_check_interval=2", "trainer.limit_val_batches=1", "num_steps=4", "burn_in=2", "logger=csv",
              "callbacks=model_checkpoint")
    out = tmp_path / "eval"
    cmd = [sys.executable, "scripts/evaluate.py", f"ckpt_path={tmp_path / 'run' / 'checkpoints' / 'last.ckpt'}", "eval=fast",
           "eval.features=classifier", "eval.likelihood.enabled=false", "logger=csv", f"hydra.run.dir={out}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "metrics.json").read_text())
    names = {f"test/{k}_cifar10_cnn" for k in ("fd", "kid", "precision", "recall", "density", "coverage")} | {"test/kid_cifar10_cnn_std"}
    assert names <= set(report["metrics"]) and report["metrics"]["test/fd_cifar10_cnn"] > 0
