"""The generative model's maths: the energy E(x, z), the likelihoods p(x | z), the prior p(z) and
Gaussian densities (plain PyTorch)."""
