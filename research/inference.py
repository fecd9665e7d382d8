"""A trained model back from its workdir, to look at its predictions (qualitative figures)."""
import functools
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import orbax.checkpoint as ocp

from research import data
from research import train


def load(workdir: str, step: int | None = None):
  """(model, params, config) of the run in `workdir`, at its latest checkpoint or `step`.

  The state is restored onto one device whatever mesh trained it.
  """
  workdir = os.path.abspath(workdir)  # orbax restores from absolute paths only
  with open(os.path.join(workdir, 'config.json')) as f:
    config = ml_collections.ConfigDict(json.load(f))
  info = data.dataset_info(config.data)
  model = train.build_model(config, info.num_classes)
  tx = train.make_optimizer(config)
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  shapes = jax.eval_shape(functools.partial(train.create_state, model, tx, info.image_size),
                          jax.random.key(0))
  abstract = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device), shapes)
  with ocp.CheckpointManager(os.path.join(workdir, 'checkpoints')) as manager:
    steps = manager.all_steps()
    if not steps:
      raise FileNotFoundError(f'{workdir} has no checkpoint to restore.')
    if step is None:
      step = max(steps)
    elif step not in steps:
      raise ValueError(f'{workdir} has no checkpoint at step {step}; it has steps {sorted(steps)}.')
    state = manager.restore(step, args=ocp.args.StandardRestore(abstract))
  return model, state['params'], config


def predict(model, params, images):
  """Class probabilities [B, H, W, K] of images [B, H, W, 3]."""
  return jax.jit(lambda p, x: jax.nn.softmax(model.apply({'params': p}, x), axis=-1))(
      params, jnp.asarray(images, jnp.float32))
