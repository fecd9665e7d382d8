"""Test-wide settings, applied before jax is imported anywhere.

- The XLA defaults of research.xla_flags, as the entry points apply them.
- 4 forced host devices, so that the sharded code path is exercised on CPU.
- XLA's CPU backend at optimisation level 0: compiles ~6x faster, and tests check
  correctness, not speed (speed is `python -m launch.bench`).
- `--no-skip` (CI's .ci/run) turns every skip into a failure: CI installs what each test
  needs, so a skip there means a test silently stopped running.
"""

import os

_flags = os.environ.get('XLA_FLAGS', '')
for _flag in ('--xla_force_host_platform_device_count=4', '--xla_backend_optimization_level=0'):
  if _flag.split('=')[0] not in _flags:
    _flags += ' ' + _flag
os.environ['XLA_FLAGS'] = _flags.strip()

import pytest  # noqa: E402  (after the flags: nothing may start JAX before them)

from research import data  # noqa: E402
from research import sweep  # noqa: E402
from research import xla_flags  # noqa: E402

xla_flags.apply()  # as the entry points do


@pytest.fixture(scope='session')
def tiny_dir(tmp_path_factory):
  """A TFDS data dir holding lab_shapes/res64_tiny (64/16/16 examples), built once."""
  path = tmp_path_factory.mktemp('tfds')
  data.prepare(data.default_config(variant='res64_tiny', data_dir=str(path)))
  return path


@pytest.fixture(scope='session')
def instances_dir(tiny_dir):
  """tiny_dir, holding lab_shapes/res64_instances_tiny too (the instance and panoptic tasks)."""
  data.prepare(data.default_config(variant='res64_instances_tiny', data_dir=str(tiny_dir)))
  return tiny_dir


@pytest.fixture(scope='session')
def clips_dir(tiny_dir):
  """tiny_dir, holding lab_shapes/res64_clips_tiny too (8 / 4 / 4 clips of 8 frames)."""
  data.prepare(data.default_config(variant='res64_clips_tiny', data_dir=str(tiny_dir)))
  return tiny_dir


@pytest.fixture(scope='session')
def shrink_task(tiny_dir):
  """A task experiment's config (instance, panoptic, video) made small for a runner test:
  U-Net depth 1 on the tiny data at 16 px, batch 8, one device (compiles faster; the
  sharded path is research.train's), no progress bar or compilation cache; then
  `overrides` (dotted keys)."""

  def shrink(c, variant: str, **overrides):
    c.data.variant = variant
    c.data.data_dir = str(tiny_dir)
    c.data.image_size = 16
    c.model.options = {'depth': 1}
    c.num_devices = 1
    c.batch_size = c.eval_batch_size = 8
    c.log_every = 1
    c.eval_every = 0
    c.progress = False
    c.compilation_cache = False
    return sweep.apply_overrides(c, overrides)

  return shrink


def pytest_addoption(parser):
  parser.addoption(
    '--no-skip',
    action='store_true',
    help='Fail each test that would be skipped, with the reason of its skip.',
  )


def _fail_if_skipped(config, report):
  if config.getoption('no_skip') and report.skipped and not hasattr(report, 'wasxfail'):
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = 'failed'
    report.longrepr = f'Skipped, and --no-skip forbids it: {reason.removeprefix("Skipped: ")}'
  return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
  del call
  return _fail_if_skipped(item.config, (yield))


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
  return _fail_if_skipped(collector.config, (yield))
