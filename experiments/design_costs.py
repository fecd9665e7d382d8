r"""Three ways to label every pixel: sliding window, full-resolution FCN, U-Net.

  python -m launch.sweep --config experiments/design_costs.py --root workdirs/design_costs
  python -m launch.table --root workdirs/design_costs --name design_costs --out results

What learned upsampling buys: the same quality budget (parameters) spent three ways.
- `sliding_window`: a CNN classifies the 16×16 patch around each pixel (two 3×3 conv
  pairs of 32 and 64 channels with a pool between, a 1536-unit hidden layer): 469.5k
  parameters, one patch classification per pixel.
- `fullres`: the U-Net's 18 3×3 convolutions at full resolution, 54 channels: 449.9k.
- `unet`: U-Net, width 8, nearest upsampling (the decoder ablation's row): 454.0k.
Fairness: the widths are chosen so that all three have 454k ± 4% parameters (checked by
tests/test_models.py), and everything else is experiments/decoder_ablation.py's (800
steps, batch 16, lab_shapes/res64). The table adds forward ms per image and peak memory.

Training the sliding window: as patch classifiers were trained, on sampled patches
(`pixels=64`: 64 pixels per image per step, without replacement, so 1024 patches a
step, loss.pixels_per_image). A dense step would classify all 65,536 pixels of the batch
(XLA counts 20.7 GFLOPs per image forward, 240× the U-Net's), hours per cell on this
CPU. So the sliding window sees 1/64 of the labels the other two see per step; its
evaluation is dense, like theirs. `fullres` has no such shortcut: 3.6 GFLOPs per image
(42× the U-Net's), every step.

Time on 2 CPU cores shared with another sweep (cells run at 6801462): sliding window 14-20
min per cell (mostly its dense evaluations), fullres 47-70 min, U-Net 2-3 min.
Expected (results/design_costs.md, test mIoU / boundary F1 %): sliding window 29.2 ± 5.5 /
40.3 ± 8.8, fullres 55.1 ± 2.3 / 68.9 ± 1.7 (2 seeds), U-Net 35.3 ± 7.5 / 40.5 ± 14.4.
Smoke test: `experiments/design_costs.py:steps=2,seeds=1`.
"""

from experiments import decoder_ablation
from research.sweep import grids

DESIGNS = (('sliding_window', 32), ('fullres', 54), ('unet', 8))  # (arch, width): equal params


def _args(arg):
  # decoder_ablation's arguments, plus the sliding window's sampled pixels per image.
  return decoder_ablation.parse_args(arg, pixels=64, seeds=3)


def get_config(arg=None):
  arg = _args(arg)
  c = decoder_ablation.config_from(arg)
  c.eval_batch_size = 8  # the sliding window holds B·H·W patches at once
  # The sliding window trains on sampled pixels' patches (models/baselines.py); the others
  # compute every pixel anyway, so they are supervised at every pixel.
  c.loss.pixels_per_image = arg.pixels if arg.arch == 'sliding_window' else 0
  return c


def get_sweep(arg=None):
  arg = _args(arg)
  if arg.arch != 'unet':  # the default: get_config's pixels_per_image would follow it
    raise ValueError(
      f'design_costs sets the architecture per row; drop arch={arg.arch} from '
      f'the sweep argument (it is for running one cell with launch.train).'
    )
  designs = [
    {
      'model.arch': a,
      'model.width': w,
      **({'loss.pixels_per_image': arg.pixels} if a == 'sliding_window' else {}),
    }
    for a, w in DESIGNS
  ]
  cells = grids.product(designs, grids.axis('seed', range(arg.seeds)))
  return sorted(cells, key=lambda cell: cell['seed'])  # stable: seed 0 of every row first
