"""Defaults every experiment starts from: U-Net with nearest upsampling on lab_shapes/res64.

  python -m launch.train --config experiments/base.py --workdir workdirs/base

Variants import `get_config` from here and override a few fields.
"""

import ml_collections

from research import data


def get_config(arg=None):
  del arg
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.method = 'train'  # research.runners: train | kmeans

  c.data = data.default_config()  # lab_shapes/res64; fields documented there

  c.model = ml_collections.ConfigDict(
    dict(
      arch='unet',
      upsampler='nearest',
      width=16,
      upsampler_options={},  # e.g. {'kernel_size': 3} for transpose_conv
      options={},  # architecture options, e.g. {'depth': 3}
      dtype='float32',
      # Convolutions: 'auto' (oneDNN on CPU where `make` built it, XLA elsewhere), 'xla',
      # 'onednn' (research/onednn). How, not what: a run may resume with another.
      conv_impl='auto',
    )
  )

  c.optim = ml_collections.ConfigDict(
    dict(
      name='adamw',  # adam | adamw | sgd (with momentum)
      learning_rate=3e-3,
      weight_decay=1e-4,
      momentum=0.9,
      schedule='cosine',  # constant | cosine
      warmup_steps=50,
      grad_clip=1.0,
    )
  )
  c.loss = ml_collections.ConfigDict(dict(class_weights=()))  # () for uniform

  c.batch_size = 16  # global; must be divisible by the number of devices
  c.eval_batch_size = 64
  c.num_steps = 2000
  c.log_every = 50
  c.eval_every = 500  # on data.eval_split; the final eval also runs on data.test_split
  c.checkpoint_every = 250
  c.keep_checkpoints = 2
  c.num_devices = 0  # 0: every local device
  c.distributed = False  # jax.distributed.initialize() (also when JAX_COORDINATOR_ADDRESS is set)
  c.progress = True
  c.compilation_cache = True  # persistent, in <workdir>/../.jax_cache
  # Sweeps: cells that differ only in `seed` train together, up to this many in one compiled
  # program (vmap over seeds; see research.train.train_and_evaluate_seeds). 1: one per run.
  c.seeds_together = 1
  return c
