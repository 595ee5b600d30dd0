"""The inner loop's execution modes (``sampler.compile``): the fast paths give the eager chain for the
same noise; the graph runner's buffers, caching and errors (on the CPU through a stand-in for the
CUDA graph; on a GPU, when there is one, the real capture); and that no sampler's loop makes the host
wait for the device, which a capture could not hold (caught on the CPU by a dispatch mode)."""

from __future__ import annotations

import pytest
import torch
from conftest import NoHostSync

from lpc.config.build import build
from lpc.errors import ConfigError
from lpc.jobs.train import train
from lpc.model.energy import Energy
from lpc.model.likelihoods import DiscretizedGaussianLikelihood, GaussianLikelihood
from lpc.networks import MLPDecoder
from lpc.samplers import (
    AdamPreconditioner,
    HMCSampler,
    IdentityPreconditioner,
    LangevinSampler,
    MALASampler,
)
from lpc.samplers.compiled import LoopRunner, clone_outputs

B, D = 8, 4
AOT = {"backend": "aot_eager"}  # dynamo + AOT autograd without C++ code generation (seconds, not a minute, on 2 cores)
SAMPLERS = {
    "ula": lambda **kw: LangevinSampler(**{"step_size": 0.1, "num_steps": 12, "burn_in": 4, "thin": 2,
                                           "preconditioner": AdamPreconditioner(), **kw}),
    "mala": lambda **kw: MALASampler(**{"step_size": 0.1, "num_steps": 12, "burn_in": 4, "adapt_step_size": True,
                                        "preconditioner": AdamPreconditioner(), **kw}),
    "hmc": lambda **kw: HMCSampler(**{"step_size": 0.1, "num_steps": 6, "burn_in": 2, "num_leapfrog": 3, "chains": 2, **kw}),
}


@pytest.fixture
def energy() -> Energy:
    torch.manual_seed(0)
    return Energy(MLPDecoder(latent_dim=D, channels=1, image_size=8, hidden=[16]), GaussianLikelihood())


def images(seed: int, rows: int = B) -> torch.Tensor:
    return torch.rand(rows, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def chain(sampler, energy: Energy, x: torch.Tensor, seed: int = 1):
    torch.manual_seed(seed)
    return sampler.run(energy, torch.randn(len(x), D), x)


def assert_same_chain(a, b, exact: bool) -> None:
    for name in ("samples", "energies", "diverged", "accept_rate", "step_size", "scale"):
        got, want = getattr(a, name), getattr(b, name)
        if isinstance(want, torch.Tensor):
            if exact:
                assert torch.equal(got, want), name
            else:
                torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4, msg=name)
        else:
            assert got == want, name


class StandInGraph:
    """What ``CUDAGraphLoop`` does with memory, on a CPU: inputs copied into static tensors, the
    outputs written into the same static tensors on every replay (a caller holding them would see
    the next batch's values), capture without touching the caller's random stream. It re-runs the
    loop eagerly, so it checks the runner's caching and buffers, not what a real capture bakes in
    (the GPU tests below do that)."""

    captures = 0

    def __init__(self, fn, inputs):
        StandInGraph.captures += 1
        self.fn = fn
        self.static_inputs = tuple(t.clone() for t in inputs)
        with torch.random.fork_rng(), NoHostSync():  # a real capture fails where the host would wait
            self.static_outputs = fn(*self.static_inputs)

    def __call__(self, *inputs):
        for static, new in zip(self.static_inputs, inputs):
            static.copy_(new)
        for static, new in zip(self.static_outputs, self.fn(*self.static_inputs)):
            if isinstance(static, torch.Tensor):
                static.copy_(new)
        return clone_outputs(self.static_outputs)


def test_the_host_sync_guard_catches_what_a_capture_cannot_hold():
    z = torch.randn(4, 3)
    for waits in (lambda: z.sum().item(), lambda: bool((z > 0).any()), lambda: z[z[:, 0] > 0],
                  lambda: z.nonzero(), lambda: z[torch.tensor([True, False, True, False])].sum()):
        with pytest.raises(AssertionError, match="waits for the device"), NoHostSync():
            waits()
    with NoHostSync():  # what the loop does instead: masks as arithmetic, fixed shapes
        torch.where(z[:, :1] > 0, z, 0.0).sum(0), z[torch.tensor([0, 2])]


@pytest.mark.parametrize("name", list(SAMPLERS))
@pytest.mark.parametrize("diverge", [False, True])
def test_the_loop_never_waits_for_the_device(name, diverge, energy):
    """Every sampler's T steps (gradients, the preconditioner, transitions, step-size adaptation,
    divergence checks and resets, kept samples) run without a host synchronisation, as a CUDA-graph
    capture needs; ``diverge`` sends some chains off (a huge start) so the reset path runs too."""
    sampler = SAMPLERS[name]()
    z0 = torch.randn(B * sampler.chains, D)
    if diverge:
        z0[::3] = 1e6
    with NoHostSync():
        outputs = sampler.loop(energy, z0, images(0).repeat(sampler.chains, 1, 1, 1))
    assert outputs[3].any() == diverge and not outputs[3].all()


@pytest.mark.parametrize("name", list(SAMPLERS))
@pytest.mark.parametrize("precond", ["adam", "none", "shared"])
def test_torch_compile_gives_the_eager_chain(name, precond, energy, caplog):
    """Whole transitions compiled (the gradient by torch.func, M, the step, the checks): the eager
    chain from the same seed, for every sampler and preconditioner, with chains started so far out
    that some diverge (their reset runs too), and compiled once for the next batch."""
    preconditioner = {"adam": AdamPreconditioner(), "none": IdentityPreconditioner(),
                      "shared": AdamPreconditioner(shared_over_batch=True)}[precond]
    step = {"step_size": 0.003} if precond == "none" else {}  # without M, the step of the others diverges every chain
    make = lambda **kw: SAMPLERS[name](**{"preconditioner": preconditioner, **step, **kw})  # noqa: E731
    compiled = make(compile="torch_compile", compile_options=AOT, compile_chunk=3)
    for seed in (0, 1):
        x, z0 = images(seed), torch.randn(B, D, generator=torch.Generator().manual_seed(seed)).repeat(compiled.chains, 1)
        z0[::3] *= 1e6  # these chains diverge at once
        runs = []
        for sampler in (make(), compiled):
            torch.manual_seed(seed)
            runs.append(sampler.run(energy, z0, x.repeat(sampler.chains, 1, 1, 1)))
        assert runs[0].diverged.any() and not runs[0].diverged.all()
        assert_same_chain(runs[1], runs[0], exact=False)
    assert compiled._runner.compiled.failed is None and compiled._runner.compiled.calls > 2
    assert "cannot be compiled" not in caplog.text


class HostReadingEnergy(torch.nn.Module):
    """An energy that reads a value back to Python (a graph break, which torch.compile cannot hold
    in one graph) before it returns the wrapped energy."""

    def __init__(self, energy: Energy):
        super().__init__()
        self.energy = energy

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        scale = 1.0 if float(z.abs().max()) < 1e30 else 1.0
        return scale * self.energy(x, z)


def test_torch_compile_falls_back_to_eager_with_the_reason(energy, caplog):
    """Where the loop cannot be compiled, the runner says why once and runs the chain eagerly, with
    the same noise as eager from the same seed."""
    fallen = SAMPLERS["ula"](compile="torch_compile", compile_options=AOT)
    wrapped = HostReadingEnergy(energy)
    with caplog.at_level("WARNING", logger="lpc.samplers.compiled"):
        got = chain(fallen, wrapped, images(0))
        chain(fallen, wrapped, images(0))
    assert_same_chain(got, chain(SAMPLERS["ula"](), wrapped, images(0)), exact=True)
    assert caplog.text.count("(the inner loop) cannot be compiled") == 1 and fallen._runner.compiled.failed


def test_the_discretised_gaussian_compiles_too():
    """Its log-probability is an autograd.Function with a hand-written backward: torch.func takes it."""
    torch.manual_seed(0)
    energy = Energy(MLPDecoder(latent_dim=D, channels=1, image_size=8, hidden=[16]), DiscretizedGaussianLikelihood(sigma=0.1))
    x = (images(0) * 255).round() / 127.5 - 1
    compiled = SAMPLERS["ula"](compile="torch_compile", compile_options=AOT)
    assert_same_chain(chain(compiled, energy, x), chain(SAMPLERS["ula"](), energy, x), exact=False)
    assert compiled._runner.compiled.failed is None


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_graph_runner_replays_the_eager_chain_for_each_batch(name, energy):
    sampler = SAMPLERS[name]()
    sampler._runner = LoopRunner("cuda_graph", graph=StandInGraph)
    StandInGraph.captures = 0
    first = chain(sampler, energy, images(0))
    assert_same_chain(first, chain(SAMPLERS[name](), energy, images(0)), exact=True)  # capture left the noise alone
    kept = first.samples.clone()
    second = chain(sampler, energy, images(1), seed=2)  # new data and noise through the same graph
    assert StandInGraph.captures == 1
    assert_same_chain(second, chain(SAMPLERS[name](), energy, images(1), seed=2), exact=True)
    assert torch.equal(first.samples, kept)  # the first result is a copy, not the graph's output buffer
    assert not torch.equal(first.samples, second.samples)


def test_graph_runner_captures_anew_for_a_new_shape_step_size_or_weights_and_keeps_a_few(energy):
    sampler = SAMPLERS["ula"]()
    sampler._runner = LoopRunner("cuda_graph", graph=StandInGraph, max_graphs=2)
    StandInGraph.captures = 0
    chain(sampler, energy, images(0))
    chain(sampler, energy, images(0, rows=B // 2))  # e.g. a last, smaller validation batch
    assert StandInGraph.captures == 2
    sampler.step_size /= 2  # model.on_divergence=backoff: the step size is baked into a graph
    halved = chain(sampler, energy, images(0))
    assert StandInGraph.captures == 3 and len(sampler._runner.graphs) == 2
    for p in energy.parameters():  # weights moved (as by .cpu() and back): a graph would read freed memory
        p.data = p.data.clone()
    chain(sampler, energy, images(0))
    assert StandInGraph.captures == 4
    reference = SAMPLERS["ula"]()
    reference.step_size /= 2
    assert_same_chain(halved, chain(reference, energy, images(0)), exact=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where there is no GPU")
def test_cuda_graph_without_a_gpu_is_refused_before_training(compose_cfg):
    with pytest.raises(ConfigError, match="sampler.compile=cuda_graph needs a CUDA GPU.*use sampler.compile=eager"):
        build(compose_cfg("sampler.compile=cuda_graph"))


def test_bad_modes_are_refused_with_the_fix(energy):
    with pytest.raises(ValueError, match="sampler.compile must be one of"):
        LangevinSampler(step_size=0.1, num_steps=3, compile="graph")
    with pytest.raises(ValueError, match="set sampler.compile=torch_compile"):
        LangevinSampler(step_size=0.1, num_steps=3, compile_options={"mode": "max-autotune"})
    with pytest.raises(ValueError, match="needs a CUDA device.*sampler.compile=eager"):
        chain(LangevinSampler(step_size=0.1, num_steps=3, compile="cuda_graph"), energy, images(0))


GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="a CUDA graph needs a GPU")


@pytest.mark.parametrize("mode, sign, rel", [
    (["sampler.compile=torch_compile", "+sampler.compile_options.backend=aot_eager"], "compiling the inner loop", 1e-3),
    pytest.param(["sampler.compile=cuda_graph", "trainer=gpu"], "capturing the inner loop", 1e-6, marks=GPU),
], ids=["torch_compile", "cuda_graph"])
def test_training_with_a_fast_loop_matches_eager(mode, sign, rel, compose_cfg, tmp_path, caplog):
    """The fast mode through the real trainer (training, in-loop validation, and the validation
    after fit, which Lightning runs on weights it moved to the CPU and back): eager's metrics."""
    common = ["num_steps=6", "burn_in=2", "trainer.max_steps=5", "trainer.val_check_interval=4", "logger=csv",
              "eval=fast", "eval.features=classifier", "callbacks.image_grids.every_n_steps=0",
              *(m for m in mode if m.startswith("trainer="))]
    eager = train(compose_cfg(*common, f"paths.output_dir={tmp_path / 'eager'}"))
    assert sign not in caplog.text
    with caplog.at_level("INFO", logger="lpc.samplers.compiled"):
        fast = train(compose_cfg(*common, *mode, f"paths.output_dir={tmp_path / 'fast'}"))
    assert sign in caplog.text  # the fast path ran
    for key in ("train/loss", "train/energy", "train/recon_mse", "val/energy"):
        assert fast[key] == pytest.approx(eager[key], rel=rel), key


@GPU
@pytest.mark.parametrize("name", list(SAMPLERS))
def test_cuda_graph_gives_the_eager_chain_on_the_gpu(name, energy):
    energy = energy.cuda()
    x = images(0).cuda()
    graphed = SAMPLERS[name](compile="cuda_graph")
    for seed in (1, 2):  # the first call captures, the second only replays
        torch.manual_seed(seed)
        fast = graphed.run(energy, torch.randn(B, D, device="cuda"), x)
        torch.manual_seed(seed)
        slow = SAMPLERS[name]().run(energy, torch.randn(B, D, device="cuda"), x)
        assert_same_chain(fast, slow, exact=True)
    assert len(graphed._runner.graphs) == 1
    with torch.no_grad():  # an optimizer step between batches: the replay reads the weights in place
        for p in energy.parameters():
            p.mul_(1.1)
    torch.manual_seed(3)
    fast = graphed.run(energy, torch.randn(B, D, device="cuda"), x)
    torch.manual_seed(3)
    assert_same_chain(fast, SAMPLERS[name]().run(energy, torch.randn(B, D, device="cuda"), x), exact=True)
    assert len(graphed._runner.graphs) == 1
