r"""Adds a sweep root's finished cells to an archive (research.sweep.archive), e.g. after
a Slurm array or a sweep that was killed; `launch.sweep --archive` does it by itself.
Each finished cell is checked against the experiment as it is now (a stale one is refused).

  python -m launch.archive --root workdirs/benchmark/unet --archive results/runs/benchmark/unet
"""

import os

from absl import app
from absl import flags

from launch import cli
from research import sweep

_ROOT = flags.DEFINE_string('root', None, 'The sweep root.')
_ARCHIVE = flags.DEFINE_string('archive', None, 'The archive directory (created if missing).')
flags.mark_flags_as_required(['root', 'archive'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  index = sweep.read_index(_ROOT.value)
  path, arg = sweep.split_spec(index['config'])
  base = sweep.load_experiment(os.path.join(sweep.REPO, path)).get_config(arg)
  checks = [  # the experiment as it is now: stale cells are refused
    (
      cell['name'],
      sweep.apply_overrides(base, {**index['overrides'], **cell['overrides']}),
      os.path.join(_ROOT.value, cell['name']),
    )
    for cell in index['cells']
    if sweep.status(os.path.join(_ROOT.value, cell['name'])) == 'done'
  ]
  sweep.cells.refuse_stale(checks, _ROOT.value)
  added, kept = sweep.archive.save(_ROOT.value, _ARCHIVE.value)
  print(f'Archived {added} newly finished cells in {_ARCHIVE.value} ({kept} were already).')


if __name__ == '__main__':
  cli.run(main)
