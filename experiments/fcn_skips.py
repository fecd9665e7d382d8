r"""FCN skips: {FCN-32s, FCN-16s, FCN-8s} × {nearest, bed_of_nails, max_unpool,
transpose_conv} × 3 seeds: how much the pool4/pool3 skips matter for each upsampler.

  python -m launch.sweep --config experiments/fcn_skips.py --root workdirs/fcn_skips
  python -m launch.table --root workdirs/fcn_skips --name fcn_skips --out results

Every cell is configured exactly as in experiments/decoder_ablation.py, so its FCN-8s
cells repeat those of the decoder ablation: the two tables must agree on them. 36 cells.
Smoke test (2 steps, 1 seed): `experiments/fcn_skips.py:steps=2,seeds=1`.
Results: see results/fcn_skips.md.
"""

from experiments import decoder_ablation
from research.sweep import grids

ARCHS = ('fcn32s', 'fcn16s', 'fcn8s')
UPSAMPLERS = ('nearest', 'bed_of_nails', 'max_unpool', 'transpose_conv')


def get_config(arg=None):
  return decoder_ablation.get_config(arg)


def get_sweep(arg=None):
  arg = decoder_ablation.parse_args(arg, seeds=3)  # the committed grid: 3 seeds
  cells = grids.product(
    grids.axis('model.arch', ARCHS),
    grids.axis('model.upsampler', UPSAMPLERS),
    grids.axis('seed', range(arg.seeds)),
  )
  return sorted(cells, key=lambda cell: cell['seed'])  # stable: seed 0 of every row first
