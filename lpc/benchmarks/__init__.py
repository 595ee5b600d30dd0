"""Measuring the samplers: their speed against the best peers (a minimal loop, JAX, a raw CUDA graph),
their bias on exact targets, and the timing helpers the benchmark scripts share."""
