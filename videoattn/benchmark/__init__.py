"""Benchmarks behind ``tools/benchmark.py``: :mod:`.models` (speed, memory and numerics of model
configs), :mod:`.loader` (video reads and the training loader), both timed by :mod:`.timing`."""
