"""Layer 5, training: the loop, the training step, the schedule, resume checkpoints, DVCLive logs and
multi-process training."""
