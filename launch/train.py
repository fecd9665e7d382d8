r"""Trains and evaluates one config; re-running on the same workdir resumes.

  python -m launch.train --config experiments/quick.py --workdir workdirs/quick
  python -m launch.train --config experiments/quick.py:arch=fcn8s,upsampler=max_unpool \
      --workdir workdirs/fcn8s_max_unpool --config.num_steps=100

Several seeds in one compiled program (vmap over seeds), one workdir each:

  python -m launch.train --config experiments/quick.py --seeds=0,1,2 \
      --workdir 'workdirs/quick/seed={seed}'
"""

import json
import os
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from launch import cli
from research import preemption
from research import runners
from research import runtime

_CONFIG = config_flags.DEFINE_config_file(
  'config', None, 'Experiment config file[:args].', lock_config=True
)
_WORKDIR = flags.DEFINE_string(
  'workdir', None, 'Where checkpoints and metrics go; with --seeds, a template holding {seed}.'
)
_SEEDS = flags.DEFINE_list(
  'seeds',
  [],
  'Train these seeds together (vmap over seeds) instead of '
  'config.seed, each in --workdir with {seed} replaced.',
)
flags.mark_flags_as_required(['config', 'workdir'])
_COORDINATOR = flags.DEFINE_string(
  'coordinator_address',
  os.environ.get('JAX_COORDINATOR_ADDRESS', ''),
  'Multi-process runs: host:port of process 0 (default $JAX_COORDINATOR_ADDRESS).',
)
_NUM_PROCESSES = flags.DEFINE_integer(
  'num_processes',
  int(os.environ.get('JAX_NUM_PROCESSES', '1')),
  'Multi-process runs: how many processes (default $JAX_NUM_PROCESSES, else 1).',
)
_PROCESS_ID = flags.DEFINE_integer(
  'process_id',
  int(os.environ.get('JAX_PROCESS_ID', '0')),
  "Multi-process runs: this process's id, 0 .. num_processes - 1 (default $JAX_PROCESS_ID).",
)
LOG_FILE = 'run.log'  # the run's full log (the terminal shows warnings and progress only)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if _NUM_PROCESSES.value > 1:
    runtime.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  preemption.install()  # a notice during set-up or compilation is kept for the first step
  if not _SEEDS.value:
    if '{seed}' in _WORKDIR.value:
      raise app.UsageError(
        f'--workdir={_WORKDIR.value} holds {{seed}}: pass the seeds to train '
        'together with --seeds=0,1,2, or name one workdir.'
      )
    cli.log_to(os.path.join(_WORKDIR.value, LOG_FILE))
    final = _preemptible(runners.run, _CONFIG.value, _WORKDIR.value)
    print(json.dumps({k: final[k] for k in ('step', 'test', 'cost')}, indent=2, default=str))
    return
  try:
    seeds = [int(s) for s in _SEEDS.value]
  except ValueError:
    raise app.UsageError(
      f'--seeds takes integers, e.g. --seeds=0,1,2; got {_SEEDS.value}.'
    ) from None
  if '{seed}' not in _WORKDIR.value or len(set(seeds)) < len(seeds):
    raise app.UsageError(
      'With --seeds, --workdir must hold {seed} (e.g. --workdir '
      f"'runs/seed={{seed}}') and the seeds must differ; got --workdir="
      f'{_WORKDIR.value} --seeds={",".join(_SEEDS.value)}.'
    )
  workdirs = {s: _WORKDIR.value.replace('{seed}', str(s)) for s in seeds}
  cli.log_to(os.path.join(workdirs[seeds[0]], LOG_FILE))
  finals = _preemptible(runners.run_seeds, _CONFIG.value, workdirs)
  print(
    json.dumps(
      {s: {k: f[k] for k in ('step', 'test')} for s, f in finals.items()}, indent=2, default=str
    )
  )


def _preemptible(run, *args):
  """run(*args); on a preemption notice (SIGUSR1, SIGTERM, Ctrl-C) the run has saved a
  checkpoint: say so in one line and exit with preemption.EXIT_CODE (after the Slurm script's
  USR1 warning, the task requeues itself on it)."""
  try:
    return run(*args)
  except preemption.Preempted as e:
    print(str(e), file=sys.stderr)
    sys.exit(preemption.EXIT_CODE)


if __name__ == '__main__':
  cli.run(main)
