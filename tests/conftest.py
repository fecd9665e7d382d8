"""Test-wide settings, applied before jax is imported anywhere.

- 4 forced host devices, so that the sharded code path is exercised on CPU.
- XLA's CPU backend at optimisation level 0: compiles ~6x faster, and tests check
  correctness, not speed (speed is `python -m launch.bench`).
"""
import os

os.environ.setdefault(
    'XLA_FLAGS', '--xla_force_host_platform_device_count=4 --xla_backend_optimization_level=0')
