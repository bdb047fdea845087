"""Training infrastructure shared by pre-training, ISLR and SLT: optimiser and schedule,
checkpoints, distributed set-up, autocast, scalar logging."""
