r"""The `make demo` ablation: {U-Net, FCN-8s} × the four unpooling-style decoders, one seed.

  python -m launch.sweep --config experiments/demo.py --root workdirs/demo
  python -m launch.table --root workdirs/demo --name demo --out workdirs/demo

8 cells of 200 steps at width 8, batch 16, 64 px: minutes on two CPU cores. Numbers
from one seed and a short schedule show the mechanics, not a finding; the committed
ablations are experiments/decoder_ablation.py and experiments/fcn_skips.py.
"""

from experiments import quick
from research.sweep import grids

ARCHS = ('unet', 'fcn8s')
UPSAMPLERS = ('nearest', 'bed_of_nails', 'max_unpool', 'transpose_conv')

get_config = quick.get_config  # each cell is the quick config of its arch and upsampler


def get_sweep(arg=None):
  del arg
  return grids.product(grids.axis('model.arch', ARCHS), grids.axis('model.upsampler', UPSAMPLERS))
