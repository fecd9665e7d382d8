r"""The `make demo` ablation: {U-Net, FCN-8s} × the four unpooling-style decoders, one seed.

  python -m launch.sweep --config experiments/demo.py --root workdirs/demo
  python -m launch.table --root workdirs/demo --name demo --out workdirs/demo

8 cells of 200 steps at width 8, batch 16, 64 px: minutes on two CPU cores. Numbers
from one seed and a short schedule show the mechanics, not a finding; the committed
ablations are experiments/decoder_ablation.py and experiments/fcn_skips.py.
"""
from experiments import base
from research import config_utils
from research import sweep

ARCHS = ('unet', 'fcn8s')
UPSAMPLERS = ('nearest', 'bed_of_nails', 'max_unpool', 'transpose_conv')


def get_config(arg=None):
  arg = config_utils.parse_arg(arg, arch='unet', upsampler='nearest', seed=0, steps=200)
  c = base.get_config()
  c.seed = arg.seed
  c.model.arch = arg.arch
  c.model.upsampler = arg.upsampler
  c.model.width = 8
  c.num_steps = arg.steps
  c.optim.warmup_steps = 20
  c.log_every = 25
  c.eval_every = 0
  c.checkpoint_every = 100
  return c


def get_sweep(arg=None):
  del arg
  return sweep.product(sweep.axis('model.arch', ARCHS), sweep.axis('model.upsampler', UPSAMPLERS))
