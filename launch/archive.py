r"""Adds a sweep root's finished cells to an archive (research.sweep.archive), e.g. after
a Slurm array or a sweep that was killed; `launch.sweep --archive` does it by itself.

  python -m launch.archive --root workdirs/benchmark/unet --archive results/runs/benchmark/unet
"""

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
  added, kept = sweep.archive.save(_ROOT.value, _ARCHIVE.value)
  print(f'Archived {added} newly finished cells in {_ARCHIVE.value} ({kept} were already).')


if __name__ == '__main__':
  cli.run(main)
