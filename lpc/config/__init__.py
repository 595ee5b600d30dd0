"""Hydra plumbing: the composed config, its checks before any work, building a run's objects,
and the resolvers the configs use."""
