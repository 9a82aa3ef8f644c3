"""Training and evaluation machinery: checkpoints, distributed helpers, optimiser and
schedule, metrics, multi-view evaluation, scalar logs."""
