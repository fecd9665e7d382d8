"""JAX's multi-controller runtime for real: two processes of two CPU devices each (gloo
collectives between them, a coordinator on localhost) train the same run as one process of
four devices, and either resumes the other's checkpoints."""

import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest

from research import sweep

pytestmark = pytest.mark.slow

TINY = """\
from experiments import quick


def get_config(arg=None):
  c = quick.get_config(arg)
  c.data.variant = 'res64_tiny'
  c.data.image_size = 32
  c.model.options = {'depth': 2}
  c.model.width = 4
  c.batch_size = 8
  c.eval_batch_size = 8
  c.log_every = 1
  c.num_steps = 4
  c.checkpoint_every = 2
  c.eval_every = 2
  c.progress = False
  return c
"""


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _train(experiment, workdir, tiny_dir, devices: int, processes: int = 1):
  """Runs launch.train in `processes` processes of `devices` CPU devices each; waits."""
  env = {
    **os.environ,
    'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices} '
    '--xla_backend_optimization_level=0',
  }
  command = [
    sys.executable,
    '-m',
    'launch.train',
    f'--config={experiment}',
    f'--workdir={workdir}',
    f'--config.data.data_dir={tiny_dir}',
  ]
  if processes > 1:
    command += [f'--coordinator_address=localhost:{_free_port()}', f'--num_processes={processes}']
  procs = [
    subprocess.Popen(
      command + ([f'--process_id={i}'] if processes > 1 else []),
      cwd=sweep.REPO,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    for i in range(processes)
  ]
  outputs = [p.communicate(timeout=600)[0] for p in procs]
  for p, out in zip(procs, outputs):
    assert p.returncode == 0, out[-3000:]
  with open(os.path.join(workdir, 'final.json')) as f:
    return json.load(f)


def _quality(final):
  return {
    f'{split}/{k}': v
    for split in ('val', 'test')
    for k, v in final[split].items()
    if isinstance(v, float)
  }


def test_two_processes_train_as_one_and_resume_each_other(tmp_path, tiny_dir):
  experiment = tmp_path / 'tiny.py'
  experiment.write_text(TINY)
  one = _train(experiment, tmp_path / 'one', tiny_dir, devices=4)
  two = _train(experiment, tmp_path / 'two', tiny_dir, devices=2, processes=2)
  assert one['cost']['devices'] == 4 and two['cost']['devices'] == 4
  # Gloo sums the gradients across processes in another order than one process does: the
  # parameters agree to float rounding, and a few pixels' argmax may flip.
  assert _quality(two) == pytest.approx(_quality(one), abs=1e-3)
  # Process 0 alone writes the run's files: one of each.
  files = sorted(os.listdir(tmp_path / 'two'))
  assert {'config.json', 'metrics.jsonl', 'final.json', 'checkpoints'} <= set(files)
  steps = [
    json.loads(line)['step']
    for line in open(tmp_path / 'two' / 'metrics.jsonl')
    if 'train/loss' in line
  ]
  assert steps == [1, 2, 3, 4]  # each step logged once
  # Per-image values in the split's order whatever the process count, so that runs pair by
  # image: the ground truth's pixel counts per class and its small objects, image by image.
  with (
    np.load(tmp_path / 'one' / 'per_image_test.npz') as a,
    np.load(tmp_path / 'two' / 'per_image_test.npz') as b,
  ):
    np.testing.assert_array_equal(a['confusion'].sum(-1), b['confusion'].sum(-1))
    np.testing.assert_array_equal(a['small_totals'], b['small_totals'])
  # The two-process run's step-2 checkpoint, resumed by one process, ends where one did.
  os.remove(tmp_path / 'two' / 'final.json')
  shutil.rmtree(tmp_path / 'two' / 'checkpoints' / '4')
  resumed = _train(experiment, tmp_path / 'two', tiny_dir, devices=4)
  assert _quality(resumed) == pytest.approx(_quality(one), abs=1e-3)
