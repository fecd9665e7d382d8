r"""Trains and evaluates one config; re-running on the same workdir resumes.

  python -m launch.train --config experiments/quick.py --workdir workdirs/quick
  python -m launch.train --config experiments/quick.py:arch=fcn8s,upsampler=max_unpool \
      --workdir workdirs/fcn8s_max_unpool --config.num_steps=100
"""
import json

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from research import train

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file[:args].',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Where checkpoints and metrics go.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.INFO)
  final = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  print(json.dumps({k: final[k] for k in ('step', 'test', 'cost')}, indent=2, default=str))


if __name__ == '__main__':
  app.run(main)
