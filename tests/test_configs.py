"""Every option of every config group composes, resolves and instantiates."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conftest import ROOT
from lpc.training import check_compatible, instantiate_dict

GROUPS = sorted(p.name for p in (ROOT / "configs").iterdir() if p.is_dir() and p.name != "hydra")
EXTRA = {  # options that need other values to resolve or to fit the default data (8x8 digits)
    "data/folder": ["data.root=some/folder.zip"],
    **{f"{net}/dcgan": ["data.image_size=32"] for net in ("decoder", "encoder")},
    **{f"{net}/dcgan{s}": [f"data.image_size={s}"] for s in (28, 32, 64) for net in ("decoder", "encoder")},
}
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((ROOT / "configs" / g).glob("*.yaml"))]


def test_groups_named_in_the_issue_exist():
    for group in ["data", "decoder", "likelihood", "model", "precond", "warmstart", "trainer", "logger",
                  "callbacks", "paths", "debug", "experiment"]:
        assert group in GROUPS
    names = {f"{g}/{o}" for g, o in OPTIONS}
    for opt in ["data/digits", "data/mnist", "data/cifar10", "data/svhn", "data/celeba", "data/folder",
                "decoder/mlp", "decoder/dcgan28", "decoder/dcgan32", "decoder/dcgan64", "model/pc_langevin",
                "precond/none", "precond/adam", "warmstart/none", "logger/wandb", "logger/csv"]:
        assert opt in names


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_composes_and_instantiates(compose_cfg, group, option):
    cfg = compose_cfg(f"{group}={option}", *EXTRA.get(f"{group}/{option}", []))
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    if group in ("callbacks", "logger"):
        objs = instantiate_dict(cfg[group])
        assert len(objs) == len([k for k, v in cfg[group].items() if "_target_" in v])
    elif group in ("data", "decoder", "encoder", "eval", "likelihood", "precond", "warmstart", "trainer"):
        if cfg[group].get("accelerator") == "gpu" and not torch.cuda.is_available():
            pytest.skip("trainer=gpu needs a GPU to instantiate (it composes and resolves above)")
        assert instantiate(cfg[group]) is not None
    model = instantiate(cfg.model)
    if group in ("decoder", "experiment", "model") and cfg.data._target_.endswith("DigitsDataModule"):
        check_compatible(model, instantiate(cfg.data))


def test_step_size_is_a_top_level_knob(compose_cfg):
    cfg = compose_cfg("step_size=0.01", "num_steps=7", "burn_in=2")
    sampler = instantiate(cfg.model).sampler
    assert (sampler.step_size, sampler.num_steps, sampler.burn_in) == (0.01, 7, 2)


def test_precond_option_reaches_the_sampler(compose_cfg):
    from lpc.samplers import AdamPreconditioner, IdentityPreconditioner

    assert isinstance(instantiate(compose_cfg("precond=adam").model).sampler.preconditioner, AdamPreconditioner)
    assert isinstance(instantiate(compose_cfg("precond=none").model).sampler.preconditioner, IdentityPreconditioner)


def test_mismatched_decoder_and_data_are_refused(compose_cfg):
    cfg = compose_cfg("decoder=dcgan32")  # digits are 8x8
    with pytest.raises(ValueError, match=r"decoder outputs images of shape \(1, 32, 32\).*data.image_size"):
        check_compatible(instantiate(cfg.model), instantiate(cfg.data))
    cfg = compose_cfg("warmstart=jeffreys", "encoder=dcgan32")
    with pytest.raises(ValueError, match=r"encoder reads images of shape \(1, 32, 32\)"):
        check_compatible(instantiate(cfg.model), instantiate(cfg.data))
    cfg = compose_cfg("likelihood.squash=tanh")
    with pytest.raises(ValueError, match=r"expects pixels in \[-1.0, 1.0\].*data.pixel_range"):
        check_compatible(instantiate(cfg.model), instantiate(cfg.data))
