"""The tasks: pre-training, ISLR and SLT. Each takes a config dataclass and explicit values, prepares its
data, supplies its batch -> loss step and its validation to the shared loop (:mod:`msmae.train.loop`),
evaluates, predicts, and returns results (it never prints: :mod:`msmae.commands` does)."""
