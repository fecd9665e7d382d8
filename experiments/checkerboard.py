r"""The checkerboard study (Odena et al. 2016) in U-Net: how ×2 upsamplers leave artifacts.

  python -m launch.sweep --config experiments/checkerboard.py --root workdirs/checkerboard
  python -m launch.table --root workdirs/checkerboard --name checkerboard --out results

Decoders: transposed convolution with kernel 2 (kernel = stride: no overlap; 'sum' and
'max' coincide, so one row), 3 (uneven overlap: Odena's culprit) and 4 (even overlap),
each with overlapping contributions summed or maxed; resize-convolution (nearest then
3×3, even by design); pixel shuffle with and without ICNR initialisation (Aitken et al.
2017: identical sub-pixel kernels start out as resize-conv). 8 decoders × 3 seeds =
24 U-Net cells, configured as experiments/decoder_ablation.py (width 8, 800 steps on
lab_shapes/res64), so its transpose_conv (k=4, sum), resize_conv and pixel_shuffle rows
must agree with that table's U-Net rows. The table's checkerboard column is
research.metrics.checkerboard_score; launch.table draws the artifact of transpose_conv
(k=4) against resize_conv. 2-6 min per cell on 2 shared CPU cores (max overlap at k=4 is
the slowest: its step is 2.7× the sum's); the 15 cells not shared with the decoder
ablation took about 75 minutes.
Expected (results/checkerboard.md, test %): every decoder 34.7-37.7 mIoU and 43-46 boundary
F1, all within the seed spread (std 1-4.5), and a checkerboard score of 0.00 for all.
Smoke test (2 steps, 1 seed): `experiments/checkerboard.py:steps=2,seeds=1`.
"""

from experiments import decoder_ablation
from research.sweep import grids

DECODERS = (  # (upsampler, its options)
  ('transpose_conv', {'kernel_size': 2}),
  ('transpose_conv', {'kernel_size': 3}),
  ('transpose_conv', {'kernel_size': 3, 'overlap': 'max'}),
  ('transpose_conv', {}),  # kernel 4, sum: the default
  ('transpose_conv', {'overlap': 'max'}),
  ('resize_conv', {}),
  ('pixel_shuffle', {}),
  ('pixel_shuffle', {'icnr': True}),
)


def get_config(arg=None):
  c = decoder_ablation.get_config(arg)
  c.model.arch = 'unet'
  return c


def get_sweep(arg=None):
  arg = decoder_ablation.parse_args(arg, seeds=3)  # the committed grid: 3 seeds
  decoders = [{'model.upsampler': u, 'model.upsampler_options': o} for u, o in DECODERS]
  cells = grids.product(decoders, grids.axis('seed', range(arg.seeds)))
  return sorted(cells, key=lambda cell: cell['seed'])  # stable: seed 0 of every row first
