"""docs/networks.md, "Bring your own network", as written: its code blocks become modules outside the
package and every `python train.py` command of the page trains a few steps with them; networks that
break the contract stop the run before training, with exit status 2 and a message that names the fix."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT
from torch import nn
from torch.utils.data import TensorDataset

from lpc.config.build import build, check_compatible
from lpc.data import ImageDataModule
from lpc.errors import ConfigError

PAGE = ROOT / "docs" / "networks.md"
QUICK = ["trainer.max_steps=3", "eval=fast", "logger=csv", "callbacks=evaluation"]


def code_files() -> dict[str, str]:
    """The page's ```python title="<file>"``` blocks, by file name."""
    return dict(re.findall(r'```python title="([\w.]+)"\n(.*?)```', PAGE.read_text(), flags=re.DOTALL))


def commands() -> list[list[str]]:
    """The overrides of every `PYTHONPATH=. python train.py ...` line of the page's bash blocks."""
    blocks = re.findall(r"```bash\n(.*?)```", PAGE.read_text(), flags=re.DOTALL)
    lines = [line for block in blocks for line in block.splitlines()]
    prefix = ["PYTHONPATH=.", "python", "train.py"]
    return [shlex.split(line)[len(prefix):] for line in lines if shlex.split(line, comments=True)[:3] == prefix]


def write_modules(folder: Path) -> None:
    for name, code in code_files().items():
        (folder / name).write_text(code)


def train(folder: Path, *overrides: str) -> subprocess.CompletedProcess:
    """`python train.py <overrides>` with ``folder`` on PYTHONPATH, its output under folder/run."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "train.py", *overrides, f"hydra.run.dir={folder / 'run'}"]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_the_page_holds_the_networks_the_data_and_the_commands():
    assert {"my_networks.py", "my_data.py"} <= set(code_files())
    used = " ".join(" ".join(c) for c in commands())
    for override in ("decoder._target_=my_networks.TinyDecoder", "encoder._target_=my_networks.TinyEncoder",
                     "warmstart=jeffreys", "model=vae", "data._target_=my_data.Bars"):
        assert override in used


@pytest.mark.slow
@pytest.mark.parametrize("overrides", commands(), ids=[f"command{i + 1}" for i in range(len(commands()))])
def test_each_command_of_the_page_trains_with_its_code(tmp_path, overrides):
    write_modules(tmp_path)
    proc = train(tmp_path, *overrides, *QUICK)
    assert proc.returncode == 0, f"{shlex.join(overrides)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["global_step"] == 3 and metrics["updates"] == 3
    saved = (tmp_path / "run" / ".hydra" / "config.yaml").read_text()
    for target in [o.split("=", 1)[1] for o in overrides if "._target_=" in o]:
        assert f"_target_: {target}" in saved  # the run built the page's classes, not a preset's
    if "warmstart=jeffreys" in overrides:
        assert "train/encoder_loss" in metrics


BROKEN = '''
from my_networks import TinyDecoder, TinyEncoder


class FlatDecoder(TinyDecoder):
    def forward(self, z):
        return self.net(z)  # (batch, 64): not reshaped into images


class OneTensorEncoder(TinyEncoder):
    def forward(self, x):
        return self.net(x)  # (batch, 2 * latent_dim): mean and log_std not split
'''


@pytest.mark.parametrize("overrides,problem,fix", [
    (["decoder=custom", "decoder._target_=broken.FlatDecoder"],
     ("the decoder broken.FlatDecoder returns a tensor of shape (2, 64) for z of shape (2, 16), but data=digits has "
      "images of shape (1, 8, 8)"), "end it with .view(-1, channels, image_size, image_size)"),
    (["encoder=custom", "encoder._target_=broken.OneTensorEncoder", "warmstart=jeffreys"],
     ("the encoder broken.OneTensorEncoder returns one tensor of shape (2, 32), but an encoder returns the pair "
      "(mean, log_std)"), "end its forward with `return out.chunk(2, dim=-1)`"),
    (["decoder._target_=my_networks.TinyDecoder"],
     "my_networks.TinyDecoder does not take hidden, act, which decoder=mlp passes",
     "decoder=custom decoder._target_=my_networks.TinyDecoder, or drop them with ~decoder.hidden ~decoder.act"),
], ids=["decoder_shape", "encoder_pair", "preset_keys"])
def test_a_network_off_the_contract_stops_before_training(tmp_path, overrides, problem, fix):
    write_modules(tmp_path)
    (tmp_path / "broken.py").write_text(BROKEN)
    proc = train(tmp_path, *overrides, *QUICK)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-3000:]
    assert "ConfigError: " in out and problem in out and fix in out, out[-3000:]
    assert "Traceback" not in out
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing trained


class BareDecoder(nn.Module):
    """A decoder with no attributes lpc reads, that draws random numbers: the probe must not draw
    them from the run's stream."""

    def __init__(self, latent_dim: int, channels: int, image_size: int):
        super().__init__()
        self.net = nn.Linear(latent_dim, channels * image_size**2)
        self.shape = (channels, image_size, image_size)

    def forward(self, z):
        return self.net(z + 0.0 * torch.randn_like(z)).view(-1, *self.shape)


def test_a_bare_decoder_builds_and_the_probe_leaves_no_trace(compose_cfg):
    cfg = compose_cfg("decoder=custom", "decoder._target_=test_own_networks.BareDecoder", "warmstart=jeffreys")
    datamodule, model = build(cfg)
    assert not hasattr(model.decoder, "latent_dim") and model.prior.data_dim == 16  # the input size is the prior's
    rng, weights = torch.get_rng_state(), {k: v.clone() for k, v in model.state_dict().items()}
    check_compatible(model, datamodule)
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    assert all(m.training for m in model.modules())  # back in training mode


class Bytes(ImageDataModule):
    def load_split(self, split):
        return TensorDataset(torch.full((10, 1, 8, 8), 255, dtype=torch.uint8), torch.zeros(10))


class ImagesAlone(ImageDataModule):
    def load_split(self, split):
        return TensorDataset(torch.rand(10, 1, 8, 8))


def test_a_data_module_is_checked_before_training():
    with pytest.raises(ConfigError, match=r"Bytes.load_split\('train'\) returns torch.uint8 images.*divide 8-bit"):
        Bytes(image_size=8, channels=1, batch_size=2).setup()
    with pytest.raises(ConfigError, match=r"ImageDataModule does not implement load_split\(split\)"):
        ImageDataModule(image_size=8, channels=1, batch_size=2).setup()
    data = ImagesAlone(image_size=8, channels=1, batch_size=2)  # images without labels: label 0
    data.setup()
    image, label = data.train_set[0]
    assert image.shape == (1, 8, 8) and label == 0
