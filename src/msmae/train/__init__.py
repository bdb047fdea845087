"""Training infrastructure shared by pre-training, ISLR and SLT: the epoch-based fine-tuning loop
(:mod:`msmae.train.loop`), optimiser and schedule, fp16 loss scaling, checkpoints, distributed set-up,
autocast."""
