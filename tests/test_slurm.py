"""Sweeps on a real Slurm cluster: a private one-node cluster on this machine (.ci/slurm.sh),
fed by `python -m launch.sweep --backend=slurm` as a user would, with tiny cells.

Needs root and Debian's slurm-wlm and munge (CI installs them; elsewhere the tests skip,
saying so).
"""

import getpass
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from research import sweep

SCRIPT = sweep.REPO / '.ci' / 'slurm.sh'
TOOLS = ('munged', 'slurmctld', 'slurmd', 'sbatch', 'scancel', 'scontrol', 'squeue', 'sinfo')

TINY = """\
from experiments import quick
from research import sweep


def get_config(arg=None):
  c = quick.get_config(arg)
  c.data.variant = 'res64_tiny'
  c.data.image_size = 32
  c.model.options = {{'depth': 2}}
  c.model.width = 4
  c.batch_size = 8
  c.eval_batch_size = 8
  c.log_every = 1
  return c


def get_sweep(arg=None):
  return {grid}
"""
# Seed-major, so that the second pair of tasks finds both programs in the sweep's
# compilation cache.
FOUR_CELLS = (
  "sweep.product(sweep.axis('seed', [0, 1]), "
  "sweep.axis('model.upsampler', ['nearest', 'bilinear']))"
)


@pytest.fixture(scope='module')
def cluster():
  """The environment of commands that talk to a private Slurm cluster, up for this module."""
  missing = [tool for tool in TOOLS if shutil.which(tool) is None]
  if missing:
    pytest.skip(
      f'Slurm is not installed ({", ".join(missing)} not on PATH): apt-get install slurm-wlm munge'
    )
  if os.geteuid() != 0:
    pytest.skip('starting a private Slurm cluster needs root (slurmd runs jobs as their user)')
  # Not under pytest's tmp_path: munged runs as user munge and needs a path it can traverse.
  directory = tempfile.mkdtemp(prefix='slurm-')
  os.chmod(directory, 0o755)
  up = subprocess.run(
    ['bash', str(SCRIPT), 'up', directory], capture_output=True, text=True, timeout=120, check=False
  )
  try:
    assert up.returncode == 0, f'.ci/slurm.sh up failed:\n{up.stdout}{up.stderr}'
    yield {**os.environ, 'SLURM_CONF': up.stdout.strip()}
  finally:
    subprocess.run(['bash', str(SCRIPT), 'down', directory], check=True)
    shutil.rmtree(directory)


@pytest.fixture
def slurm(cluster):
  """The cluster, emptied after the test: a failed test's jobs would hold the next one up."""
  yield cluster
  _slurm(cluster, 'scancel', f'--user={getpass.getuser()}')
  deadline = time.monotonic() + 30
  while _slurm(cluster, 'squeue', '-h') and time.monotonic() < deadline:
    time.sleep(0.2)


def _experiment(tmp_path, grid=FOUR_CELLS):
  path = tmp_path / 'tiny.py'
  path.write_text(TINY.format(grid=grid))
  return path


def _submit(env, spec, root, tiny_dir, *flags):
  """Runs launch.sweep's Slurm backend; returns the array's job id."""
  out = subprocess.run(
    [
      sys.executable,
      '-m',
      'launch.sweep',
      f'--config={spec}',
      f'--root={root}',
      '--backend=slurm',
      f'--config.data.data_dir={tiny_dir}',
      *flags,
    ],
    cwd=sweep.REPO,
    env=env,
    capture_output=True,
    text=True,
    check=False,
  )
  assert out.returncode == 0, out.stdout + out.stderr[-3000:]
  return re.search(r'Submitted batch job (\d+)', out.stdout).group(1)


def _slurm(env, *command):
  return subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout.strip()


def _task_states(env, job):
  """{array task: Slurm state} of the tasks of `job` that have started, finished ones too
  (tasks still pending together are one line, their range)."""
  lines = _slurm(env, 'squeue', '-h', '-j', job, '--states=all', '-o', '%K %T').splitlines()
  return {int(task): state for task, state in (line.split() for line in lines) if task.isdigit()}


def _wait_until(condition, what, timeout, env, root):
  """Polls `condition` until it holds; otherwise fails, with the cluster's view and logs."""
  deadline = time.monotonic() + timeout
  while not condition():
    if time.monotonic() > deadline:
      logs = '\n'.join(
        f'--- {p}:\n{sweep.tail(str(p), 15)}'
        for p in sorted(pathlib.Path(root).glob('**/*'))
        if p.name == sweep.LOG or p.suffix == '.out'
      )
      pytest.fail(
        f'Not {what} after {timeout} s; squeue:\n{_slurm(env, "squeue", "--states=all")}\n{logs}'
      )
    time.sleep(0.2)


def _wait_for_job(env, job, root, timeout=300):
  """Waits until no task of `job` is pending or running; returns the tasks' states."""
  _wait_until(
    lambda: not _slurm(env, 'squeue', '-h', '-j', job), f'job {job} done', timeout, env, root
  )
  return _task_states(env, job)


def _steps(workdir):
  """The steps of the finished checkpoints in `workdir` (orbax: a directory per step)."""
  path = pathlib.Path(workdir) / 'checkpoints'
  return sorted(int(p.name) for p in path.iterdir() if p.name.isdigit()) if path.is_dir() else []


def _files(workdir):
  """{path: content} of the files in `workdir` but its log.txt."""
  return {
    p.relative_to(workdir): p.read_bytes()
    for p in pathlib.Path(workdir).glob('**/*')
    if p.is_file() and p.name not in (sweep.LOG, 'run.log')  # logs: appended to on each start
  }


def _logged_steps(workdir):
  """The training steps in metrics.jsonl, read while it may be half written."""
  path = pathlib.Path(workdir) / 'metrics.jsonl'
  if not path.exists():
    return []
  complete = path.read_text().split('\n')[:-1]
  return [json.loads(line)['step'] for line in complete if 'train/loss' in line]


def _resumed_from(workdir):
  """The steps launch.train said it resumed this workdir from, in its log.txt."""
  log = (pathlib.Path(workdir) / sweep.LOG).read_text()
  return [int(s) for s in re.findall(rf'Resuming {re.escape(str(workdir))} from step (\d+)', log)]


@pytest.mark.slow
def test_a_sweep_runs_as_an_array_to_the_end_and_its_table_builds(slurm, tmp_path, tiny_dir):
  spec, root = f'{_experiment(tmp_path)}:steps=3', tmp_path / 'root'
  job = _submit(slurm, spec, root, tiny_dir)
  assert _wait_for_job(slurm, job, root) == {
    0: 'COMPLETED',
    1: 'COMPLETED',
    2: 'COMPLETED',
    3: 'COMPLETED',
  }
  cells = sweep.read_index(str(root))['cells']
  assert [c['task'] for c in cells] == [0, 1, 2, 3]
  for cell in cells:
    workdir = root / cell['name']
    assert json.loads((workdir / 'final.json').read_text())['step'] == 3
    assert _logged_steps(workdir) == [1, 2, 3]
    assert (root / 'slurm' / f'{job}_{cell["task"]}.out').exists()

  out = subprocess.run(
    [
      sys.executable,
      '-m',
      'launch.table',
      f'--root={root}',
      '--name=tiny',
      f'--out={tmp_path / "tables"}',
      '--noplots',
    ],
    cwd=sweep.REPO,
    capture_output=True,
    text=True,
    check=False,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  table = (tmp_path / 'tables' / 'tiny.md').read_text()
  rows = [line for line in table.splitlines() if line.startswith('|') and '2/2' in line]
  assert len(rows) == 2 and any('nearest' in r for r in rows) and any('bilinear' in r for r in rows)


@pytest.mark.slow
def test_a_cancelled_task_requeued_resumes_and_no_finished_cell_runs_again(
  slurm, tmp_path, tiny_dir
):
  """The long cell's task is cancelled after its first checkpoint; once the short cell is
  done, requeueing the whole array runs its task again too: launch.train must resume the
  one and leave the other as it was."""
  experiment = _experiment(tmp_path, grid="sweep.axis('num_steps', [3, 60])")
  spec, root = str(experiment), tmp_path / 'root'
  job = _submit(slurm, spec, root, tiny_dir, '--config.checkpoint_every=10')
  finished, cancelled = root / 'num_steps=3', root / 'num_steps=60'
  _wait_until(lambda: _steps(cancelled), 'checkpointed', 120, slurm, root)
  checkpoint = _steps(cancelled)[0]
  _slurm(slurm, 'scancel', f'{job}_1')
  _wait_until(
    lambda: _task_states(slurm, job) == {0: 'COMPLETED', 1: 'CANCELLED'},
    'one done, one cancelled',
    120,
    slurm,
    root,
  )
  assert not (cancelled / 'final.json').exists(), 'the long cell finished before its cancel'
  assert 'Restarts=0' in _slurm(slurm, 'scontrol', 'show', 'job', f'{job}_1'), (
    'a cancelled task must stay cancelled, not requeue itself'
  )
  before = _files(finished)

  _slurm(slurm, 'scontrol', 'requeue', job)
  assert _wait_for_job(slurm, job, root) == {0: 'COMPLETED', 1: 'COMPLETED'}
  for task in (0, 1):
    assert 'Restarts=1' in _slurm(slurm, 'scontrol', 'show', 'job', f'{job}_{task}')
  # From its last checkpoint: the one seen, a later one, or one saved on scancel's SIGTERM.
  [resumed] = _resumed_from(cancelled)
  assert checkpoint <= resumed < 60
  assert json.loads((cancelled / 'final.json').read_text())['step'] == 60
  assert _logged_steps(cancelled) == list(range(1, 61))  # each step once, as one run
  assert _files(finished) == before  # its checkpoints, metrics and final.json untouched
  log = (finished / sweep.LOG).read_text()
  assert log.count('already finished; not training again') == 1 and not _resumed_from(finished)


@pytest.mark.slow
def test_the_preemption_signal_checkpoints_and_requeues(slurm, tmp_path, tiny_dir):
  """Slurm's warning signal (the script's --signal) mid-run: launch.train saves a checkpoint
  at the current step and exits 75, the task requeues itself and the run resumes there.

  The only periodic checkpoint is the last step's, so any earlier one is the preemption's.
  """
  spec, root = f'{_experiment(tmp_path, grid="[{}]")}:steps=100', tmp_path / 'root'
  job = _submit(slurm, spec, root, tiny_dir, '--config.checkpoint_every=100')
  directives = (root / 'sweep.sbatch').read_text()
  assert '#SBATCH --requeue' in directives
  signal = re.search(r'^#SBATCH --signal=(B:)?(\w+)@\d+$', directives, re.MULTILINE)
  assert signal, 'the script asks for no warning signal before its time limit'
  workdir = root / 'default'
  _wait_until(lambda: len(_logged_steps(workdir)) >= 5, 'training', 120, slurm, root)
  # What Slurm sends at the warning time: to the batch shell alone with B:, else to the steps.
  _slurm(
    slurm,
    'scancel',
    f'--signal={signal.group(2)}',
    *(['--batch'] if signal.group(1) else []),
    f'{job}_0',
  )
  _wait_until(
    lambda: 'Restarts=1' in _slurm(slurm, 'scontrol', 'show', 'job', f'{job}_0'),
    'requeued',
    60,
    slurm,
    root,
  )
  assert _wait_for_job(slurm, job, root) == {0: 'COMPLETED'}
  [resumed] = _resumed_from(workdir)
  assert 5 <= resumed < 100
  assert json.loads((workdir / 'final.json').read_text())['step'] == 100
  assert _logged_steps(workdir) == list(range(1, 101))
