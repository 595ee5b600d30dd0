"""lpc: Langevin Predictive Coding for deep latent generative models.

Layers (imports point downwards only):
    samplers/, energy.py, likelihoods.py, networks/, metrics/   plain PyTorch, no Lightning/Hydra
    methods/, data/, callbacks/                                 Lightning
    training.py                                                 Hydra config -> objects -> Trainer
"""

__version__ = "0.1.0"
