"""The jobs a user runs (training, evaluating a checkpoint, conditional completion) and what they
share: checkpoints, resuming, loggers."""
