r"""Decoder ablation, U-Net rows trained 3× longer: do the decoders separate once training converges?

  python -m launch.sweep --config experiments/decoder_ablation_long.py \
      --root workdirs/decoder_ablation_long --parallel 2
  python -m launch.table --root workdirs/decoder_ablation_long --name decoder_ablation_long

At 800 steps (experiments/decoder_ablation.py) the U-Net's seed decides which thin classes
are learned before the cosine schedule ends: seed 0 reaches ~43 mIoU with every decoder,
seed 2 ~27-29, so the seed std (up to 7.9) swamps the decoders' 2.3-point span. This
variant changes nothing but the length of the run (and how often it evaluates): 2400
steps, same width 8, batch 16, schedule shape and seeds. 8 upsamplers × 3 seeds = 24 cells.
Smoke test (2 steps, 1 seed): `experiments/decoder_ablation_long.py:steps=2,seeds=1`.
Results: see results/decoder_ablation_long.md.
"""
from experiments import decoder_ablation
from research import config_utils
from research import sweep

ARCHS = ('unet',)


def _args(arg):
  return config_utils.parse_arg(arg, arch='unet', upsampler='nearest', seed=0, steps=2400,
                                width=8, seeds=3)


def get_config(arg=None):
  arg = _args(arg)
  c = decoder_ablation.get_config(','.join(f'{k}={v}' for k, v in arg.items()))
  c.eval_every = 600
  c.checkpoint_every = 600
  return c


def get_sweep(arg=None):
  arg = _args(arg)
  cells = sweep.product(sweep.axis('model.arch', ARCHS),
                        sweep.axis('model.upsampler', decoder_ablation.UPSAMPLERS),
                        sweep.axis('seed', range(arg.seeds)))
  return sorted(cells, key=lambda cell: cell['seed'])  # stable: seed 0 of every row first
