"""Training and evaluation: one jit-compiled, sharded code path for any number of devices.

`train_and_evaluate(config, workdir)` trains `config.model` on `config.data`, evaluates
on the validation split during training and on the test split at the end, and returns
the final metrics (also written to `workdir/final.json`). Running it again on the same
workdir resumes from the latest checkpoint, or returns the finished run's metrics.
"""
import functools
import inspect
import os
import statistics
import time
from typing import Mapping

from absl import logging
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
import tqdm

from research import cost
from research import data
from research import metrics
from research import models
from research import workdir as workdir_lib


def maybe_initialize_distributed(config):
  """Multi-host: join the other processes when the config or the environment asks for it."""
  # is_initialized, not process_count(): the latter starts the backend, after which
  # initialize() refuses to run.
  if ((config.distributed or 'JAX_COORDINATOR_ADDRESS' in os.environ)
      and not jax.distributed.is_initialized()):
    jax.distributed.initialize()


def validate(config):
  """Refuses counts that would fail later (division by zero, empty runs) with what is valid."""
  for key in ('num_steps', 'log_every', 'checkpoint_every', 'keep_checkpoints', 'batch_size',
              'eval_batch_size'):
    if config[key] < 1:
      raise ValueError(f'{key} must be a positive integer; got {config[key]}.')
  if config.eval_every < 0:
    raise ValueError(f'eval_every must be >= 0 (0: only the final eval); got {config.eval_every}.')


def dataset_info(config):
  """Builds or verifies the dataset on process 0 first, then on the others: concurrent
  builds into one shared data dir are not safe on every filesystem."""
  info = data.dataset_info(config.data) if jax.process_index() == 0 else None
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices('research.train: dataset ready')
    info = info or data.dataset_info(config.data)
  return info


def enable_compilation_cache(workdir: str):
  """JAX's persistent compilation cache, shared by the runs under the workdir's parent
  (a sweep root): the cells of a sweep compile many identical programs."""
  if jax.config.jax_compilation_cache_dir is None:
    jax.config.update('jax_compilation_cache_dir',
                      os.path.join(os.path.dirname(workdir), '.jax_cache'))


def make_mesh(config):
  """A 1-D mesh with a 'data' axis over the local devices (all, or `num_devices`)."""
  devices = jax.devices()
  if config.num_devices:
    if config.num_devices > len(devices):
      raise ValueError(f'num_devices={config.num_devices} but only {len(devices)} devices exist.')
    devices = devices[:config.num_devices]
  for name, size in [('batch_size', config.batch_size), ('eval_batch_size', config.eval_batch_size)]:
    if size % len(devices):
      raise ValueError(f'{name}={size} is not divisible by the {len(devices)} devices; use a '
                       f'multiple of {len(devices)} (e.g. {len(devices) * max(1, size // len(devices))}).')
  # Auto axes: XLA propagates the batch sharding through the model (plain data parallelism).
  return jax.make_mesh((len(devices),), ('data',), axis_types=(jax.sharding.AxisType.Auto,),
                       devices=devices)


def build_model(config, num_classes: int):
  return models.build(config.model.arch, upsampler=config.model.upsampler,
                      num_classes=num_classes, width=config.model.width,
                      upsampler_options=config.model.upsampler_options.to_dict(),
                      dtype=jnp.dtype(config.model.dtype), **config.model.options.to_dict())


def make_optimizer(config) -> optax.GradientTransformation:
  """optax optimiser with warmup followed by a constant or cosine schedule."""
  o = config.optim
  warmup = min(o.warmup_steps, config.num_steps)
  if o.schedule == 'cosine':
    # decay_steps counts the warmup and must exceed it (tiny runs: warmup fills the run).
    lr = optax.warmup_cosine_decay_schedule(0.0, o.learning_rate, warmup,
                                            max(config.num_steps, warmup + 1))
  elif o.schedule == 'constant':
    lr = optax.join_schedules([optax.linear_schedule(0.0, o.learning_rate, warmup),
                               optax.constant_schedule(o.learning_rate)], [warmup])
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
    raise ValueError(f'loss.class_weights has {len(class_weights)} entries; the dataset has '
                     f'{num_classes} classes.')
  return class_weights


def pixels_per_image(config, model, image_size: int) -> int:
  """config.loss.pixels_per_image (0: every pixel, the default), checked against the model.

  N > 0 supervises N pixels per image per step, drawn without replacement: the training of
  a patch classifier (sliding_window), which then computes only those pixels' patches.
  """
  n = config.loss.get('pixels_per_image', 0)
  if n < 0 or n > image_size ** 2:
    raise ValueError(f'loss.pixels_per_image must be in [0, {image_size ** 2}] (0: every pixel '
                     f'of the {image_size}×{image_size} images); got {n}.')
  if n and 'pixels' not in inspect.signature(type(model).__call__).parameters:
    raise ValueError(f'loss.pixels_per_image={n} needs an architecture that classifies chosen '
                     f'pixels (sliding_window); {config.model.arch!r} computes every pixel at '
                     f'once, so sampling would save nothing. Use 0.')
  return n


def sample_pixels(seed: int, step: int, global_batch_size: int, num_pixels: int, n: int,
                  process_index: int = 0, process_count: int = 1) -> np.ndarray:
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


def make_steps(model, tx, config, num_classes: int, mesh, num_seeds: int = 1,
               donate: bool = True):
  """The jitted train and eval steps with explicit shardings (batch split over 'data').

  The train step takes a state and a batch with a leading seed axis ([S, ...] and
  [S, B, H, W, ·]): `num_seeds` seeds train in one compiled program. A batch with
  'pixels' ([S, B, N], see pixels_per_image) supervises only those pixels. The eval step takes
  one seed's params. `donate=False` (benchmarks only) keeps the old state's buffers.
  """
  replicated = NamedSharding(mesh, P())
  batch_sharding = NamedSharding(mesh, P('data'))
  seeds_batch_sharding = NamedSharding(mesh, P(None, 'data'))
  class_weights = loss_class_weights(config, num_classes)

  def train_step(state, batch):
    def loss_fn(params):
      if 'pixels' in batch:  # [B, N]: the model classifies these pixels only
        logits = model.apply({'params': params}, batch['image'], pixels=batch['pixels'])
        labels = jnp.take_along_axis(batch['label'].reshape(len(batch['label']), -1),
                                     batch['pixels'], axis=1)
      else:
        logits, labels = model.apply({'params': params}, batch['image']), batch['label']
      return pixel_cross_entropy(logits, labels, class_weights)

    loss, grads = jax.value_and_grad(loss_fn)(state['params'])
    updates, opt_state = tx.update(grads, state['opt_state'], state['params'])
    new_state = {'step': state['step'] + 1, 'params': optax.apply_updates(state['params'], updates),
                 'opt_state': opt_state}
    # The parameter norm is non-finite as soon as one parameter is: checked before saving.
    return new_state, {'loss': loss, 'grad_norm': optax.global_norm(grads),
                       'param_norm': optax.global_norm(new_state['params'])}

  def eval_step(params, batch):
    logits = model.apply({'params': params}, batch['image'])
    preds = jnp.argmax(logits, axis=-1)
    confusion = metrics.confusion_matrix(batch['label'], preds, num_classes, batch['valid'])
    checker = metrics.checkerboard_score(jax.nn.softmax(logits), batch['valid'])
    return confusion, preds, checker

  train_step = jax.jit(over_seeds(train_step, num_seeds),
                       in_shardings=(replicated, seeds_batch_sharding),
                       out_shardings=(replicated, replicated),
                       donate_argnums=0 if donate else ())
  eval_step = jax.jit(eval_step, in_shardings=(replicated, batch_sharding),
                      out_shardings=(replicated, batch_sharding, batch_sharding))
  return train_step, eval_step, seeds_batch_sharding, batch_sharding, replicated


def create_state(model, tx, image_size: int, key) -> dict:
  """The train state as it is checkpointed: {'step', 'params', 'opt_state'}."""
  params = model.init(key, jnp.zeros((1, image_size, image_size, 3), jnp.float32))['params']
  return {'step': jnp.zeros((), jnp.int32), 'params': params, 'opt_state': tx.init(params)}


def to_global(batch: dict, sharding) -> dict:
  """Host-local numpy batch -> global jax.Array sharded over the mesh (multi-host safe)."""
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


def _local_rows(array) -> np.ndarray:
  """This process's rows of a batch-sharded global array, in batch order."""
  shards = sorted(array.addressable_shards, key=lambda s: s.index[0].start or 0)
  return np.concatenate([np.asarray(s.data) for s in shards])


def evaluate(eval_step, params, config, split: str, info, batch_sharding) -> dict:
  """mIoU etc. from the confusion matrix summed over the whole split; BF and the
  checkerboard score averaged over images; padded examples count nowhere."""
  confusion = np.zeros((info.num_classes,) * 2, np.int64)
  bf, checker = [], []
  for batch in data.eval_batches(config.data, split, global_batch_size=config.eval_batch_size,
                                 process_index=jax.process_index(),
                                 process_count=jax.process_count()):
    conf, preds, cb = eval_step(params, to_global(batch, batch_sharding))
    confusion += np.asarray(jax.device_get(conf), np.int64)
    preds, cb = _local_rows(preds), _local_rows(cb)
    bf.append(metrics.boundary_f1(batch['label'], preds, info.num_classes, batch['valid'],
                                  info.ignore_label))
    checker.append(cb[batch['valid']])
  bf, checker = np.concatenate(bf), np.concatenate(checker)
  if jax.process_count() > 1:  # per-image scores live on their own hosts: sum them up
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    sums = multihost_utils.process_allgather(
        np.array([np.nansum(bf), np.sum(~np.isnan(bf)), checker.sum(), checker.size]))
    bf_mean, cb_mean = sums[:, 0].sum() / sums[:, 1].sum(), sums[:, 2].sum() / sums[:, 3].sum()
  else:
    bf_mean, cb_mean = float(np.nanmean(bf)), float(np.mean(checker))
  return {**metrics.region_scores(confusion, info.class_names),
          'boundary_f1': float(bf_mean), 'checkerboard': float(cb_mean)}


def _prefixed(prefix, d):
  return {f'{prefix}/{k}': v for k, v in d.items() if not isinstance(v, dict)}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains and evaluates; resumes from `workdir` if it holds this config's checkpoints.

  A config with `method='kmeans'` (experiments/clustering.py) runs the unsupervised
  clustering baseline instead, written to the workdir the same way.
  """
  return train_and_evaluate_seeds(config, {config.seed: workdir})[config.seed]


def with_seed(config, seed: int):
  c = config.copy_and_resolve_references()
  c.seed = seed
  return c


def train_and_evaluate_seeds(config: ml_collections.ConfigDict,
                             workdirs: Mapping[int, str]) -> dict[int, dict]:
  """Trains several seeds of `config` together in one compiled program (vmap over a
  leading seed axis); returns {seed: final metrics}.

  Each seed's workdir ends up as `train_and_evaluate(config with that seed, workdir)`
  would leave it (its config.json, metrics, checkpoints and final.json), so sweeps,
  tables and later separate runs treat the seeds as separate runs; only the timings
  differ (those of the joint step, marked by cost.seeds_together). Finished seeds are
  not trained again; the others train in groups of those resuming from the same step.
  A seed that goes non-finite stops alone: the others finish, then the error is raised.
  """
  maybe_initialize_distributed(config)
  if not workdirs:
    raise ValueError('No seeds to train: workdirs is empty.')
  workdirs = {int(s): os.path.abspath(w) for s, w in workdirs.items()}
  if len(set(workdirs.values())) < len(workdirs):
    raise ValueError(f'Each seed needs its own workdir; got {workdirs}.')
  configs = {s: with_seed(config, s) for s in workdirs}
  if config.get('method', 'train') == 'kmeans':  # no training: one seed at a time
    from research import clustering  # pylint: disable=g-import-not-at-top
    return {s: clustering.run(configs[s], w) for s, w in workdirs.items()}
  results = {}
  for seed, workdir in workdirs.items():
    workdir_lib.check_config(configs[seed], workdir)
    finished = workdir_lib.read_final(workdir)
    if finished is not None:
      logging.info('%s already finished; not training again.', workdir)
      results[seed] = finished
  pending = [s for s in workdirs if s not in results]
  errors = []
  if pending:
    validate(config)
    if config.compilation_cache:
      enable_compilation_cache(workdirs[pending[0]])
    info = dataset_info(config)
    mesh = make_mesh(config)
    model = build_model(config, info.num_classes)
    tx = make_optimizer(config)
    loss_class_weights(config, info.num_classes)
    pixels_per_image(config, model, info.image_size)
    groups = {}
    for seed in pending:
      groups.setdefault(_latest_step(workdirs[seed]) or 0, []).append(seed)
    for start, seeds in sorted(groups.items()):
      try:
        results.update(_train_together(configs, {s: workdirs[s] for s in seeds}, start, info,
                                       mesh, model, tx))
      except FloatingPointError as e:  # the group's good seeds finished; go on with the rest
        finals = {s: workdir_lib.read_final(workdirs[s]) for s in seeds}
        results.update({s: f for s, f in finals.items() if f is not None})
        errors.append(str(e))
  if errors:
    raise FloatingPointError('\n'.join(errors))
  return {s: results[s] for s in workdirs}


def _latest_step(workdir: str):
  """The step of the workdir's latest checkpoint, or None; creates nothing."""
  path = os.path.join(workdir, 'checkpoints')
  if not os.path.isdir(path):
    return None
  manager = ocp.CheckpointManager(path)
  try:
    return manager.latest_step()
  finally:
    manager.close()


def seed_keys(seeds):
  """One PRNG key per seed, stacked along a leading seed axis: [S]."""
  return jax.random.wrap_key_data(jnp.stack([jax.random.key_data(jax.random.key(s))
                                             for s in seeds]))


def _seed_slice(tree, i: int):
  return jax.tree.map(lambda x: x[i], tree)


def _train_together(configs, workdirs, start, info, mesh, model, tx) -> dict:
  """Trains the seeds in `workdirs` (all at step `start`) to the end; writes their workdirs.

  A seed whose loss or parameters go non-finite stops there (its last good checkpoint is
  kept) while the others go on; FloatingPointError names it once the others have finished.
  """
  seeds = list(workdirs)
  config = configs[seeds[0]]  # the same but for `seed`
  num_seeds = len(seeds)
  train_step, eval_step, seeds_batch_sharding, batch_sharding, replicated = make_steps(
      model, tx, config, info.num_classes, mesh, num_seeds)

  size = info.image_size
  init = jax.jit(over_seeds(functools.partial(create_state, model, tx, size), num_seeds),
                 out_shardings=replicated)
  keys = seed_keys(seeds)  # [S]
  abstract_state = jax.eval_shape(init, keys)  # traces the model: its errors surface here
  abstract_state = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated),
                                abstract_state)
  # Only a config that got this far (model, optimiser, mesh and data all valid) claims the
  # workdir: a typo must not lock it against the corrected config.
  for seed in seeds:
    workdir_lib.write_config(configs[seed], workdirs[seed])
  managers = {s: ocp.CheckpointManager(
      os.path.join(workdirs[s], 'checkpoints'),
      options=ocp.CheckpointManagerOptions(max_to_keep=config.keep_checkpoints, create=True))
              for s in seeds}

  if start == 0:
    state = init(keys)
  else:
    logging.info('Resuming %s from step %d.', ', '.join(workdirs.values()), start)
    one = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape[1:], s.dtype, sharding=replicated),
                       abstract_state)
    restored = [managers[s].restore(start, args=ocp.args.StandardRestore(one)) for s in seeds]
    state = jax.device_put(jax.tree.map(lambda *xs: jnp.stack(xs), *restored), replicated)
  writers = {s: workdir_lib.MetricWriter(workdirs[s], resume_step=start) for s in seeds}

  batch_shapes = {
      'image': jax.ShapeDtypeStruct((num_seeds, config.batch_size, size, size, 3), jnp.float32,
                                    sharding=seeds_batch_sharding),
      'label': jax.ShapeDtypeStruct((num_seeds, config.batch_size, size, size), jnp.int32,
                                    sharding=seeds_batch_sharding)}
  num_sampled = pixels_per_image(config, model, size)
  if num_sampled:
    batch_shapes['pixels'] = jax.ShapeDtypeStruct((num_seeds, config.batch_size, num_sampled),
                                                  jnp.int32, sharding=seeds_batch_sharding)
  t0 = time.perf_counter()
  compiled_train_step = train_step.lower(abstract_state, batch_shapes).compile()
  compile_seconds = time.perf_counter() - t0

  if start < config.num_steps:
    streams = [data.train_batches(config.data, global_batch_size=config.batch_size, seed=s,
                                  start_step=start, process_index=jax.process_index(),
                                  process_count=jax.process_count()) for s in seeds]

    def next_batch(step):  # one batch per seed, each seed's own data order: [S, B, ...]
      local = [next(stream) for stream in streams]
      if num_sampled:
        local = [{**b, 'pixels': sample_pixels(s, step, config.batch_size, size * size, num_sampled,
                                               jax.process_index(), jax.process_count())}
                 for s, b in zip(seeds, local)]
      return to_global({k: np.stack([b[k] for b in local]) for k in local[0]},
                       seeds_batch_sharding)
    batch = next_batch(start + 1)
  alive = dict(enumerate(seeds))  # index in the seed axis -> seed, for seeds still training
  failures = []
  bar = tqdm.tqdm(total=config.num_steps, initial=start, disable=not config.progress
                  or jax.process_index() != 0, dynamic_ncols=True, unit='step')
  tick, tick_step, paused = time.perf_counter(), start, 0.0  # paused: eval and save time
  for step in range(start + 1, config.num_steps + 1):
    state, train_metrics = compiled_train_step(state, batch)
    is_log = step % config.log_every == 0 or step == config.num_steps
    is_ckpt = step % config.checkpoint_every == 0 or step == config.num_steps
    if is_log or is_ckpt:
      values = jax.device_get(train_metrics)  # [S] each
      for i, seed in list(alive.items()):
        if not (np.isfinite(values['loss'][i]) and np.isfinite(values['param_norm'][i])):
          managers[seed].wait_until_finished()
          failures.append(f'Non-finite loss ({values["loss"][i]}) or parameters at step {step} '
                          f'(seed {seed}); stopping it. The last good checkpoint (step '
                          f'{managers[seed].latest_step()}) is kept in {workdirs[seed]}.')
          del alive[i]
      if not alive:
        break
    if is_log:
      now = time.perf_counter()
      seconds = (now - tick - paused) / (step - tick_step)
      for i, seed in alive.items():
        logged = {'train/loss': float(values['loss'][i]),
                  'train/grad_norm': float(values['grad_norm'][i]),
                  'train/images_per_second': config.batch_size / seconds}  # per seed
        if tick_step > start:  # the first interval after a (re)start includes warm-up
          logged['train/step_seconds'] = seconds
        writers[seed].write(step, logged)
      tick, tick_step, paused = now, step, 0.0
      bar.set_postfix(loss=f'{float(np.mean(values["loss"][list(alive)])):.4f}',
                      img_s=f'{num_seeds * config.batch_size / seconds:.0f}')
    pause_start = time.perf_counter()
    if config.eval_every and step % config.eval_every == 0 and step < config.num_steps:
      for i, seed in alive.items():
        writers[seed].write(step, _prefixed('val', evaluate(
            eval_step, _seed_slice(state['params'], i), config, config.data.eval_split, info,
            batch_sharding)))
    if is_ckpt:
      for i, seed in alive.items():
        managers[seed].save(step, args=ocp.args.StandardSave(_seed_slice(state, i)))
    paused += time.perf_counter() - pause_start
    bar.update(1)
    if step < config.num_steps:  # between log steps, this overlaps with the async step
      batch = next_batch(step + 1)
  bar.close()

  results = {}
  if alive:
    params0 = _seed_slice(state['params'], next(iter(alive)))
    shared_cost = {
        'params': cost.count_params(params0),
        'gflops_per_image': cost.forward_gflops_per_image(
            lambda p, x: model.apply({'params': p}, x), params0, (size, size, 3)),
        # XLA's count for one device's SPMD program (1/devices of the global step), per seed.
        'train_step_gflops': cost.compiled_flops(compiled_train_step) / 1e9 / num_seeds,
        'forward_ms_per_image': cost.forward_ms_per_image(
            lambda p, x: model.apply({'params': p}, x), params0, (size, size, 3),
            max(1, config.eval_batch_size // mesh.devices.size)),  # a device's share of a batch
        'compile_seconds': compile_seconds,
        'seeds_together': num_seeds,  # > 1: step_seconds is the joint step of all of them
        'devices': mesh.devices.size, 'platform': jax.devices()[0].platform,
    }
  for i, seed in alive.items():
    managers[seed].wait_until_finished()
    params = _seed_slice(state['params'], i)
    final = {'step': config.num_steps}
    for name, split in [('val', config.data.eval_split), ('test', config.data.test_split)]:
      final[name] = evaluate(eval_step, params, config, split, info, batch_sharding)
    # From metrics.jsonl, so that a resumed run's timing covers its earlier part too.
    timings = writers[seed].values('train/step_seconds')
    step_seconds = statistics.median(timings) if timings else float('nan')
    final['cost'] = {**shared_cost, 'step_seconds': step_seconds,
                     'images_per_second': config.batch_size / step_seconds,  # per seed
                     **cost.peak_memory()}
    writers[seed].write(config.num_steps,
                        {**_prefixed('val', final['val']), **_prefixed('test', final['test'])})
    if jax.process_index() == 0:
      workdir_lib.write_json_atomic(os.path.join(workdirs[seed], 'final.json'), final)
    results[seed] = final
  for seed in seeds:
    writers[seed].close()
    managers[seed].close()
  if failures:
    raise FloatingPointError('\n'.join(failures))
  return results
