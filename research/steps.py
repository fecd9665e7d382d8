"""The pieces of a training step: mesh, model, optimiser, loss, and the jitted steps.

Shared by the training loop (research.train), inference and the benchmarks, so that what
they run is the same program.
"""

import inspect
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np
import optax

from research import cost
from research import data
from research import decoder_metrics
from research import models
from research import onednn


def make_mesh(config):
  """A 1-D mesh with a 'data' axis over the local devices (all, or `num_devices`)."""
  devices = jax.devices()
  if config.num_devices:
    if config.num_devices > len(devices):
      raise ValueError(f'num_devices={config.num_devices} but only {len(devices)} devices exist.')
    devices = devices[: config.num_devices]
  for name, size in [
    ('batch_size', config.batch_size),
    ('eval_batch_size', config.eval_batch_size),
  ]:
    if size % len(devices):
      raise ValueError(
        f'{name}={size} is not divisible by the {len(devices)} devices; use a '
        f'multiple of {len(devices)} (e.g. {len(devices) * max(1, size // len(devices))}).'
      )
  # Auto axes: XLA propagates the batch sharding through the model (plain data parallelism).
  return jax.make_mesh(
    (len(devices),), ('data',), axis_types=(jax.sharding.AxisType.Auto,), devices=devices
  )


def build_model(config, num_classes: int):
  return models.build(
    config.model.arch,
    upsampler=config.model.upsampler,
    num_classes=num_classes,
    width=config.model.width,
    upsampler_options=config.model.upsampler_options.to_dict(),
    dtype=jnp.dtype(config.model.dtype),
    conv_impl=config.model.get('conv_impl', 'auto'),
    **config.model.options.to_dict(),
  )


def make_optimizer(config) -> optax.GradientTransformation:
  """optax optimiser with warmup followed by a constant or cosine schedule."""
  o = config.optim
  warmup = min(o.warmup_steps, config.num_steps)
  if o.schedule == 'cosine':
    # decay_steps counts the warmup and must exceed it (tiny runs: warmup fills the run).
    lr = optax.warmup_cosine_decay_schedule(
      0.0, o.learning_rate, warmup, max(config.num_steps, warmup + 1)
    )
  elif o.schedule == 'constant':
    lr = optax.join_schedules(
      [
        optax.linear_schedule(0.0, o.learning_rate, warmup),
        optax.constant_schedule(o.learning_rate),
      ],
      [warmup],
    )
  else:
    raise ValueError(f'Unknown schedule {o.schedule!r}; valid: constant, cosine.')
  optimizers = {
    'adam': lambda: optax.adam(lr),
    'adamw': lambda: optax.adamw(lr, weight_decay=o.weight_decay),
    'sgd': lambda: optax.sgd(lr, momentum=o.momentum),
  }
  if o.name not in optimizers:
    raise ValueError(f'Unknown optimizer {o.name!r}; valid: {", ".join(optimizers)}.')
  chain = [optax.clip_by_global_norm(o.grad_clip)] if o.grad_clip else []
  return optax.chain(*chain, optimizers[o.name]())


def pixel_cross_entropy(logits, labels, class_weights=None):
  """Mean cross-entropy over labelled pixels. logits [..., K], labels [...] ([B, H, W], or
  [B, N] for sampled pixels).

  Labels outside [0, K) (the ignore label, padding) weigh nothing; `class_weights` [K]
  reweights pixels by their true class (normalised by the total weight).
  """
  k = logits.shape[-1]
  valid = (labels >= 0) & (labels < k)
  safe = jnp.where(valid, labels, 0)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, safe)
  weights = valid.astype(jnp.float32)
  if class_weights is not None:
    weights = weights * jnp.asarray(class_weights, jnp.float32)[safe]
  return jnp.sum(ce * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def loss_class_weights(config, num_classes: int):
  """config.loss.class_weights as a tuple, or None for uniform weights."""
  class_weights = tuple(config.loss.class_weights) or None
  if class_weights is not None and len(class_weights) != num_classes:
    raise ValueError(
      f'loss.class_weights has {len(class_weights)} entries; the dataset has {num_classes} classes.'
    )
  return class_weights


def pixels_per_image(config, model, image_size: int) -> int:
  """config.loss.pixels_per_image (0: every pixel, the default), checked against the model.

  N > 0 supervises N pixels per image per step, drawn without replacement: the training of
  a patch classifier (sliding_window), which then computes only those pixels' patches.
  """
  n = config.loss.get('pixels_per_image', 0)
  if n < 0 or n > image_size**2:
    raise ValueError(
      f'loss.pixels_per_image must be in [0, {image_size**2}] (0: every pixel '
      f'of the {image_size}×{image_size} images); got {n}.'
    )
  if n and 'pixels' not in inspect.signature(type(model).__call__).parameters:
    raise ValueError(
      f'loss.pixels_per_image={n} needs an architecture that classifies chosen '
      f'pixels (sliding_window); {config.model.arch!r} computes every pixel at '
      f'once, so sampling would save nothing. Use 0.'
    )
  return n


def sample_pixels(
  seed: int,
  step: int,
  global_batch_size: int,
  num_pixels: int,
  n: int,
  process_index: int = 0,
  process_count: int = 1,
) -> np.ndarray:
  """[global_batch_size // process_count, n] int32 flat pixel indices for `step`, without
  replacement per image: the global batch's draw is a pure function of (seed, step), and a
  process keeps its rows as data.train_batches does, so any host count or a resume draws
  what one uninterrupted run would."""
  rng = np.random.default_rng([seed, step])
  drawn = np.argsort(rng.random((global_batch_size, num_pixels)), axis=1)[:, :n]
  return drawn[process_index::process_count].astype(np.int32)


def over_seeds(fn, num_seeds: int):
  """`fn` over a leading seed axis: vmapped for several seeds; for one seed the axis is
  squeezed instead, so that a single run compiles exactly the program it would without it."""
  if num_seeds > 1:
    return jax.vmap(fn)

  def one(*args):
    out = fn(*jax.tree.map(lambda x: x[0], args))
    return jax.tree.map(lambda x: x[None], out)

  return one


class Steps(NamedTuple):
  """What make_steps returns: the jitted steps and the shardings their inputs need."""

  train: Callable  # (state [S, ...], batch [S, B, ...]) -> (state, {loss, grad_norm, param_norm})
  # (params, images [B, H, W, 3]) -> (preds [B, H, W], {probs, logits, features: [B]}): the
  # labels and each image's checkerboard score on the probabilities, the logits and the
  # last decoder feature map (decoder_metrics.checkerboard_scores).
  predict: Callable
  seeds_batch_sharding: NamedSharding  # [S, B, ...]: batch split over 'data'
  batch_sharding: NamedSharding  # [B, ...]
  replicated: NamedSharding


def make_steps(
  model, tx, config, num_classes: int, mesh, num_seeds: int = 1, donate: bool = True
) -> Steps:
  """The per-pixel classification steps (compile_steps): cross-entropy, where a batch has
  'pixels' ([S, B, N], see pixels_per_image) on those pixels only; predictions are the argmax
  labels and each image's checkerboard scores (research.evaluate makes the split's metrics)."""
  class_weights = loss_class_weights(config, num_classes)

  def loss_fn(params, batch):
    if 'pixels' in batch:  # [B, N]: the model classifies these pixels only
      logits = model.apply({'params': params}, batch['image'], pixels=batch['pixels'])
      labels = jnp.take_along_axis(
        batch['label'].reshape(len(batch['label']), -1), batch['pixels'], axis=1
      )
    else:
      logits, labels = model.apply({'params': params}, batch['image']), batch['label']
    return pixel_cross_entropy(logits, labels, class_weights)

  def predict_step(params, images):
    logits, state = model.apply({'params': params}, images, mutable=['intermediates'])
    features = state.get('intermediates', {}).get(models.base.DECODER_FEATURES, (None,))[0]
    return jnp.argmax(logits, axis=-1), decoder_metrics.checkerboard_scores(logits, features)

  return compile_steps(loss_fn, predict_step, tx, mesh, num_seeds, donate)


def compile_steps(loss_fn, predict_step, tx, mesh, num_seeds: int = 1, donate=True) -> Steps:
  """The jitted steps with explicit shardings (batch split over 'data') of a task's
  loss_fn(params, batch [B, ...]) -> scalar and predict_step(params, images [B, ...]) ->
  (preds, {name: [B, ...]}). The train step takes a state and a batch with a leading seed
  axis ([S, ...], [S, B, ...]): `num_seeds` seeds train in one compiled program. The predict
  step takes one seed's params. `donate=False` (benchmarks only) keeps the old state."""
  replicated = NamedSharding(mesh, P())
  batch_sharding = NamedSharding(mesh, P('data'))
  seeds_batch_sharding = NamedSharding(mesh, P(None, 'data'))

  def train_step(state, batch):
    loss, grads = jax.value_and_grad(loss_fn)(state['params'], batch)
    updates, opt_state = tx.update(grads, state['opt_state'], state['params'])
    new_state = {
      'step': state['step'] + 1,
      'params': optax.apply_updates(state['params'], updates),
      'opt_state': opt_state,
    }
    # The parameter norm is non-finite as soon as one parameter is: checked before saving.
    return new_state, {
      'loss': loss,
      'grad_norm': optax.global_norm(grads),
      'param_norm': optax.global_norm(new_state['params']),
    }

  train_step = jax.jit(
    over_seeds(train_step, num_seeds),
    in_shardings=(replicated, seeds_batch_sharding),
    out_shardings=(replicated, replicated),
    donate_argnums=0 if donate else (),
  )
  predict_step = jax.jit(
    predict_step,
    in_shardings=(replicated, batch_sharding),
    out_shardings=(batch_sharding, batch_sharding),
  )
  return Steps(train_step, predict_step, seeds_batch_sharding, batch_sharding, replicated)


def create_state(model, tx, image_size: int, key) -> dict:
  """The train state as it is checkpointed: {'step', 'params', 'opt_state'}."""
  params = model.init(key, jnp.zeros((1, image_size, image_size, 3), jnp.float32))['params']
  return {'step': jnp.zeros((), jnp.int32), 'params': params, 'opt_state': tx.init(params)}


def to_global(batch: dict, sharding) -> dict:
  """Host-local numpy batch -> global jax.Array sharded over the mesh (multi-host safe)."""
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


def local_rows(array) -> np.ndarray:
  """This process's rows of a batch-sharded global array, in batch order."""
  shards = sorted(array.addressable_shards, key=lambda s: s.index[0].start or 0)
  return np.concatenate([np.asarray(s.data) for s in shards])


def seed_keys(seeds):
  """One PRNG key per seed, stacked along a leading seed axis: [S]."""
  return jax.random.wrap_key_data(
    jnp.stack([jax.random.key_data(jax.random.key(s)) for s in seeds])
  )


def seed_slice(tree, i: int):
  return jax.tree.map(lambda x: x[i], tree)


def batch_shapes(config, num_seeds: int, size: int, num_sampled: int, sharding) -> dict:
  """The abstract [S, B, ...] batch the train step is compiled for."""
  shapes = {
    'image': jax.ShapeDtypeStruct(
      (num_seeds, config.batch_size, size, size, 3), jnp.float32, sharding=sharding
    ),
    'label': jax.ShapeDtypeStruct(
      (num_seeds, config.batch_size, size, size), jnp.int32, sharding=sharding
    ),
  }
  if num_sampled:
    shapes['pixels'] = jax.ShapeDtypeStruct(
      (num_seeds, config.batch_size, num_sampled), jnp.int32, sharding=sharding
    )
  return shapes


def batch_source(config, seeds, start: int, size: int, num_sampled: int, sharding, **options):
  """next_batch(step): one batch per seed, each in its own data order, as [S, B, ...] global
  arrays (with the sampled pixels of that step where the loss samples pixels). `options`
  go to data.train_batches (a task's instances and transform)."""
  streams = [
    data.train_batches(
      config.data,
      global_batch_size=config.batch_size,
      seed=s,
      start_step=start,
      process_index=jax.process_index(),
      process_count=jax.process_count(),
      **options,
    )
    for s in seeds
  ]

  def next_batch(step):
    local = [next(stream) for stream in streams]
    if num_sampled:
      local = [
        {
          **b,
          'pixels': sample_pixels(
            s,
            step,
            config.batch_size,
            size * size,
            num_sampled,
            jax.process_index(),
            jax.process_count(),
          ),
        }
        for s, b in zip(seeds, local)
      ]
    return to_global({k: np.stack([b[k] for b in local]) for k in local[0]}, sharding)

  return next_batch


def train_step_flops(
  model,
  tx,
  config,
  info,
  mesh,
  compiled,
  num_seeds,
  abstract_state,
  num_sampled,
  steps_fn=None,
  shapes_fn=None,
) -> float:
  """XLA's FLOP count of one device's train step (all seeds). oneDNN's convolutions are custom
  calls XLA cannot count: then the same step with lax's convolutions is lowered (not run) and
  its global count shared out over the devices. steps_fn, shapes_fn: a task's make_steps and
  batch_shapes (None: this module's)."""
  if onednn.resolve(model.conv_impl, model.dtype) == 'xla':
    return cost.compiled_flops(compiled)
  steps_fn, shapes_fn = steps_fn or make_steps, shapes_fn or batch_shapes
  xla_steps = steps_fn(model.clone(conv_impl='xla'), tx, config, info.num_classes, mesh, num_seeds)
  lowered = xla_steps.train.lower(
    abstract_state,
    shapes_fn(config, num_seeds, info.image_size, num_sampled, xla_steps.seeds_batch_sharding),
  )
  return cost.compiled_flops(lowered) / mesh.devices.size
