r"""Three ways to label every pixel: sliding window, full-resolution FCN, U-Net.

  python -m launch.sweep --config experiments/design_costs.py --root workdirs/design_costs
  python -m launch.table --root workdirs/design_costs --name design_costs

What learned upsampling buys: the same quality budget (parameters) spent three ways.
- `sliding_window`: a CNN classifies the 16×16 patch around each pixel (two 3×3 conv
  pairs of 32 and 64 channels with a pool between, a 1536-unit hidden layer): 469.5k
  parameters, one patch classification per pixel.
- `fullres`: the U-Net's 18 3×3 convolutions at full resolution, 54 channels: 449.9k.
- `unet`: U-Net, width 8, nearest upsampling (the decoder ablation's row): 454.0k.
Fairness: the widths are chosen so that all three have 454k ± 4% parameters (checked by
tests/test_models.py), and everything else is experiments/decoder_ablation.py's (800
steps, batch 16, lab_shapes/res64). The table adds forward ms per image and peak memory.

Cost: XLA counts 20.7 GFLOPs per image forward for the sliding window and 3.6 for
fullres against 0.086 for the U-Net (240× and 42×), so on 2 CPU cores the sliding-window cells take
hours each; run this sweep where an accelerator is available, or a CPU smoke test with
`experiments/design_costs.py:steps=2,seeds=1`.
"""
from experiments import decoder_ablation
from research import sweep

DESIGNS = (('sliding_window', 32), ('fullres', 54), ('unet', 8))  # (arch, width): equal params


def get_config(arg=None):
  c = decoder_ablation.get_config(arg)
  c.eval_batch_size = 8  # the sliding window holds B·H·W patches at once
  return c


def get_sweep(arg=None):
  arg = decoder_ablation._args(arg)  # pylint: disable=protected-access
  designs = [{'model.arch': a, 'model.width': w} for a, w in DESIGNS]
  return sweep.product(designs, sweep.axis('seed', range(arg.seeds)))
