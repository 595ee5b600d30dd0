"""Every option of every config group composes, resolves and instantiates."""

from __future__ import annotations

import pytest
import torch
from conftest import ROOT
from hydra.utils import instantiate
from omegaconf import OmegaConf

from lpc.config.build import check_compatible, instantiate_dict

GROUPS = sorted(p.name for p in (ROOT / "configs").iterdir() if p.is_dir() and p.name != "hydra")
EXTRA = {  # options that need other values to resolve or to fit the default data (8x8 digits)
    "data/folder": ["data.root=some/folder.zip"],
    # the presets for a class of one's own (docs/networks.md), here with lpc's own
    "data/custom": ["data._target_=lpc.data.DigitsDataModule", "data.image_size=8", "data.channels=1"],
    **{f"{net}/custom": [f"{net}._target_=lpc.networks.MLP{net.capitalize()}"] for net in ("decoder", "encoder")},
    **{f"{net}/dcgan": ["data.image_size=32"] for net in ("decoder", "encoder")},
    **{f"{net}/{arch}{s}": [f"data.image_size={s}"] for arch, sizes in (("dcgan", (28, 32, 64)), ("higgins", (32, 64)))
       for s in sizes for net in ("decoder", "encoder")},
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
    if group in ("decoder", "encoder"):  # the network fits the data it is configured for
        net, shape = instantiate(cfg[group]), (cfg.data.channels, cfg.data.image_size, cfg.data.image_size)
        out = net(torch.randn(2, cfg.latent_dim)) if group == "decoder" else net(torch.rand(2, *shape))
        assert out.shape == (2, *shape) if group == "decoder" else [t.shape for t in out] == [(2, cfg.latent_dim)] * 2
    if group in ("decoder", "experiment", "model", "likelihood") and cfg.data._target_.endswith("DigitsDataModule"):
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
    cfg = compose_cfg("likelihood=discretized_gaussian", "data.pixel_range=[0.0,1.0]")
    with pytest.raises(ValueError, match=r"DiscretizedGaussianLikelihood expects pixels in \[-1.0, 1.0\]"):
        check_compatible(instantiate(cfg.model), instantiate(cfg.data))
    cfg = compose_cfg("likelihood=bernoulli", "data.binarize=none")
    with pytest.raises(ValueError, match="needs binarised pixels but data.binarize=none; set data.binarize=dynamic"):
        check_compatible(instantiate(cfg.model), instantiate(cfg.data))


@pytest.mark.parametrize("likelihood,pixel_range,binarize", [
    ("gaussian", [0.0, 1.0], "none"), ("gaussian_learned", [0.0, 1.0], "none"),
    ("discretized_gaussian", [-1.0, 1.0], "none"), ("bernoulli", [0.0, 1.0], "dynamic"),
])
def test_data_transforms_follow_the_likelihood(compose_cfg, likelihood, pixel_range, binarize):
    cfg = compose_cfg(f"likelihood={likelihood}")
    assert list(cfg.data.pixel_range) == pixel_range and cfg.data.binarize == binarize
    check_compatible(instantiate(cfg.model), instantiate(cfg.data))
