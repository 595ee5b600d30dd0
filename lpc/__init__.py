"""lpc: Langevin Predictive Coding for deep latent generative models.

Layers (imports point downwards only):
    model/, samplers/, networks/   the maths and the networks: plain PyTorch, no Lightning or Hydra
    evaluation/                    metrics and estimators (plain PyTorch); protocol.py runs them on a trained method
    data/, methods/, callbacks/    Lightning: data modules, one module per method, callbacks
    config/                        Hydra plumbing: composing, checking and building a run's objects
    jobs/                          what a user runs: train, evaluate, complete; checkpoints and resuming
    reporting/                     reports, tables, statistics, dashboards
    benchmarks/                    the samplers' speed against their peers, and their bias on exact targets
"""

__version__ = "0.1.0"
