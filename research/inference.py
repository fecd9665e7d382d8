"""A trained model back from its workdir, to look at its predictions (qualitative figures).

Only the parameters are restored: inference needs no optimiser state, so a run's checkpoint
loads whatever optimiser trained it.
"""

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import orbax.checkpoint as ocp

from research import data
from research import steps

SEMANTIC_METHODS = ('train', 'video')  # config.method of runs whose model gives class scores


def load(workdir: str, step: int | None = None):
  """(model, params, config) of the run in `workdir`, at its latest checkpoint or `step`.

  The parameters are restored onto one device whatever mesh trained them.
  """
  workdir = os.path.abspath(workdir)  # orbax restores from absolute paths only
  with open(os.path.join(workdir, 'config.json')) as f:
    config = ml_collections.ConfigDict(json.load(f))
  method = config.get('method', 'train')
  if method not in SEMANTIC_METHODS:
    raise ValueError(
      f'{workdir} is a {method!r} run, whose model has other outputs than class scores; '
      f'this restores the semantic models of methods {", ".join(SEMANTIC_METHODS)}.'
    )
  info = data.dataset_info(config.data)
  model = steps.build_model(config, info.num_classes)
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  image = jnp.zeros((1, info.image_size, info.image_size, 3), jnp.float32)
  shapes = jax.eval_shape(lambda key: model.init(key, image)['params'], jax.random.key(0))
  abstract = {
    'params': jax.tree.map(
      lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device), shapes
    )
  }
  with ocp.CheckpointManager(os.path.join(workdir, 'checkpoints')) as manager:
    saved = manager.all_steps()
    if not saved:
      raise FileNotFoundError(f'{workdir} has no checkpoint to restore.')
    if step is None:
      step = max(saved)
    elif step not in saved:
      raise ValueError(f'{workdir} has no checkpoint at step {step}; it has steps {sorted(saved)}.')
    restored = manager.restore(
      step,
      args=ocp.args.PyTreeRestore(
        item=abstract,
        restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
        partial_restore=True,
      ),
    )
  return model, restored['params'], config


def predict(model, params, images):
  """Class probabilities [B, H, W, K] of images [B, H, W, 3]."""
  return jax.jit(lambda p, x: jax.nn.softmax(model.apply({'params': p}, x), axis=-1))(
    params, jnp.asarray(images, jnp.float32)
  )
