"""CPU-sized demo config: a small U-Net for 200 steps, under a minute on 2 cores.

python -m launch.train --config experiments/quick.py --workdir workdirs/quick
python -m launch.train --config experiments/quick.py:arch=fcn8s,upsampler=max_unpool --workdir ...
"""

from experiments import base
from research import config_utils


def get_config(arg=None):
  arg = config_utils.parse_arg(arg, arch='unet', upsampler='nearest', seed=0, steps=200)
  c = base.get_config()
  c.seed = arg.seed
  c.model.arch = arg.arch
  c.model.upsampler = arg.upsampler
  c.model.width = 8
  c.num_steps = arg.steps
  c.log_every = 25
  c.eval_every = 0
  c.checkpoint_every = 100
  c.optim.warmup_steps = 20
  return c
