r"""Tables (markdown, CSV, LaTeX) and figures of a sweep root written by launch.sweep.

  python -m launch.table --root workdirs/decoder_ablation               # into the sweep root
  python -m launch.table --root workdirs/decoder_ablation --reference nearest,bilinear --out results
  python -m launch.table --root workdirs/decoder_ablation --split val --noqualitative

Writes OUT/NAME.md (headed by this command and the git commit), NAME.csv, NAME.tex and
NAME_*.png: mIoU against GFLOPs, boundary F1 per upsampler, and from the checkpoints
predictions on the same images and the checkerboard of transpose_conv vs resize_conv.
"""

import os
import shlex
import sys

from absl import app
from absl import flags

from launch import cli
from research import sweep
from research import tables

_ROOT = flags.DEFINE_string('root', None, 'Sweep root (holds cells.json).')
_NAME = flags.DEFINE_string('name', None, 'Output file stem; default: the experiment file name.')
_OUT = flags.DEFINE_string(
  'out',
  None,
  'Output directory; default: the sweep root (committed '
  'results go to results/ when asked: --out results).',
)
_SPLIT = flags.DEFINE_enum('split', 'test', list(tables.SPLITS), 'Split the table reports.')
_PLOTS = flags.DEFINE_bool('plots', True, 'Write the figures.')
_QUALITATIVE = flags.DEFINE_bool(
  'qualitative', True, 'Also the figures that load checkpoints and run the models.'
)
_NUM_IMAGES = flags.DEFINE_integer('num_images', 4, 'Images in the qualitative figures.')
_FORCE = flags.DEFINE_bool('force', False, 'Replace tables that were made from another sweep.')
_REFERENCE = flags.DEFINE_list(
  'reference',
  [],
  "Decoders (e.g. nearest,bilinear): add each row's paired difference to the row "
  'with that decoder, with 95% hierarchical-bootstrap intervals, and its forest plots.',
)
flags.mark_flags_as_required(['root'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  name = (
    _NAME.value
    or os.path.splitext(
      os.path.basename(sweep.split_spec(sweep.read_index(_ROOT.value)['config'])[0])
    )[0]
  )
  command = shlex.join(['python', '-m', 'launch.table', *sys.argv[1:]])
  for path in tables.write(
    _ROOT.value,
    _OUT.value or _ROOT.value,
    name,
    _SPLIT.value,
    command,
    plots=_PLOTS.value,
    qualitative=_QUALITATIVE.value,
    num_images=_NUM_IMAGES.value,
    force=_FORCE.value,
    reference=_REFERENCE.value,
  ):
    print(f'Wrote {path}')


if __name__ == '__main__':
  cli.run(main)
