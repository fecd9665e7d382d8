"""Training and evaluation: one jit-compiled, sharded code path for any number of devices.

`train_and_evaluate(config, workdir)` trains `config.model` on `config.data`, evaluates
on the validation split during training and on the test split at the end, and returns
the final metrics (also written to `workdir/final.json`). Running it again on the same
workdir resumes from the latest checkpoint, or returns the finished run's metrics.
"""

import functools
import time
from typing import Mapping

import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import tqdm

from research import checkpoints
from research import cost
from research import data
from research import predict
from research import preemption
from research import runtime
from research import steps as steps_lib
from research import tasks
from research import workdir as workdir_lib


def validate(config):
  """Refuses counts that would fail later (division by zero, empty runs) with what is valid."""
  for key in (
    'num_steps',
    'log_every',
    'checkpoint_every',
    'keep_checkpoints',
    'batch_size',
    'eval_batch_size',
  ):
    if config[key] < 1:
      raise ValueError(f'{key} must be a positive integer; got {config[key]}.')
  if config.eval_every < 0:
    raise ValueError(f'eval_every must be >= 0 (0: only the final eval); got {config.eval_every}.')


def dataset_info(config):
  """Builds or verifies the dataset on process 0 first, then on the others: concurrent
  builds into one shared data dir are not safe on every filesystem."""
  info = data.dataset_info(config.data) if jax.process_index() == 0 else None
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices('research.train: dataset ready')
    info = info or data.dataset_info(config.data)
  return info


def train_and_evaluate(
  config: ml_collections.ConfigDict, workdir: str, task: tasks.Task = tasks.SEMANTIC
) -> dict:
  """Trains and evaluates; resumes from `workdir` if it holds this config's checkpoints."""
  return train_and_evaluate_seeds(config, {config.seed: workdir}, task)[config.seed]


def train_and_evaluate_seeds(
  config: ml_collections.ConfigDict,
  workdirs: Mapping[int, str],
  task: tasks.Task = tasks.SEMANTIC,
) -> dict[int, dict]:
  """Trains several seeds of `config` together in one compiled program (vmap over a
  leading seed axis); returns {seed: final metrics}. `task` says what is learnt (model,
  loss, batches, evaluations; research.tasks): per-pixel classes by default.

  Each seed's workdir ends up as `train_and_evaluate(config with that seed, workdir)`
  would leave it (its config.json, metrics, checkpoints and final.json), so sweeps,
  tables and later separate runs treat the seeds as separate runs; only the timings
  differ (those of the joint step, marked by cost.seeds_together). Finished seeds are
  not trained again; the others train in groups of those resuming from the same step.
  A seed that goes non-finite stops alone: the others finish, then the error is raised.
  """
  runtime.maybe_initialize_distributed(config)
  workdirs = workdir_lib.checked_workdirs(workdirs)
  configs = {s: workdir_lib.with_seed(config, s) for s in workdirs}
  results = {}
  for seed, workdir in workdirs.items():
    workdir_lib.check_config(configs[seed], workdir)
    finished = workdir_lib.read_final(workdir)
    if finished is not None:
      _say(f'{workdir} already finished; not training again.')
      results[seed] = finished
  pending = [s for s in workdirs if s not in results]
  errors = []
  if pending:
    validate(config)
    if config.compilation_cache:
      runtime.enable_compilation_cache(workdirs[pending[0]])
    info = dataset_info(config)
    task.check(config, info)
    mesh = steps_lib.make_mesh(config)
    model = task.build_model(config, info.num_classes)
    tx = steps_lib.make_optimizer(config)
    steps_lib.loss_class_weights(config, info.num_classes)
    steps_lib.pixels_per_image(config, model, info.image_size)
    while True:  # again after a broken checkpoint was set aside: regroup from what is left
      pending = [s for s in workdirs if s not in results]
      groups = {}
      for seed in pending:
        groups.setdefault(checkpoints.latest_step(workdirs[seed]) or 0, []).append(seed)
      try:
        for start, seeds in sorted(groups.items()):
          results.update(
            _train_group(
              configs, {s: workdirs[s] for s in seeds}, start, info, mesh, model, tx, errors, task
            )
          )
        break
      except checkpoints.SetAside:
        continue
  if errors:
    raise FloatingPointError('\n'.join(errors))
  return {s: results[s] for s in workdirs}


def _train_group(configs, workdirs, start, info, mesh, model, tx, errors, task) -> dict:
  """_train_together; a non-finite seed's message goes to `errors` while the group's good
  seeds' results are kept."""
  try:
    return _train_together(configs, workdirs, start, info, mesh, model, tx, task)
  except FloatingPointError as e:  # the group's good seeds finished; go on with the rest
    errors.append(str(e))
    finals = {s: workdir_lib.read_final(w) for s, w in workdirs.items()}
    return {s: f for s, f in finals.items() if f is not None}


def _initial_state(configs, workdirs, start, steps, model, tx, size):
  """The stacked state of the seeds [S, ...] at `start` (initialised, or restored from each
  workdir's checkpoint), a checkpoint manager per seed, the state's shapes, and a function
  giving the seeds' initial parameters [S, ...] again (with the one jitted init: an eager
  `model.init` compiles each initialiser on its own, ~20 s a process). Traces the model
  first, so that a config that fails does not claim the workdirs."""
  seeds = list(workdirs)
  config = configs[seeds[0]]
  replicated = steps.replicated
  init = jax.jit(
    steps_lib.over_seeds(functools.partial(steps_lib.create_state, model, tx, size), len(seeds)),
    out_shardings=replicated,
  )
  keys = steps_lib.seed_keys(seeds)  # [S]
  abstract = jax.eval_shape(init, keys)  # traces the model: its errors surface here
  abstract = jax.tree.map(
    lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated), abstract
  )
  # Only a config that got this far (model, optimiser, mesh and data all valid) claims the
  # workdir: a typo must not lock it against the corrected config.
  for seed in seeds:
    workdir_lib.write_config(configs[seed], workdirs[seed])
  managers = {s: checkpoints.manager(workdirs[s], config.keep_checkpoints) for s in seeds}

  def initial_params():
    return init(keys)['params']

  if start == 0:
    return init(keys), managers, abstract, initial_params
  _say(f'Resuming {", ".join(workdirs.values())} from step {start}.')
  one = jax.tree.map(
    lambda s: jax.ShapeDtypeStruct(s.shape[1:], s.dtype, sharding=replicated), abstract
  )
  restored = []
  for s in seeds:
    try:
      restored.append(checkpoints.restore(managers[s], workdirs[s], start, one))
    except checkpoints.SetAside:
      for m in managers.values():
        m.close()
      raise
  state = jax.device_put(jax.tree.map(lambda *xs: jnp.stack(xs), *restored), replicated)
  return state, managers, abstract, initial_params


def _stop_non_finite(values, alive: dict, managers, workdirs, step: int) -> list[str]:
  """Drops from `alive` ({seed index: seed}) the seeds whose loss or parameter norm is not
  finite; returns a message for each, naming the checkpoint that is kept."""
  failures = []
  for i, seed in list(alive.items()):
    if not (np.isfinite(values['loss'][i]) and np.isfinite(values['param_norm'][i])):
      managers[seed].wait_until_finished()
      failures.append(
        f'Non-finite loss ({values["loss"][i]}) or parameters at step {step} '
        f'(seed {seed}); stopping it. The last good checkpoint (step '
        f'{managers[seed].latest_step()}) is kept in {workdirs[seed]}.'
      )
      del alive[i]
  return failures


def _train_together(configs, workdirs, start, info, mesh, model, tx, task) -> dict:
  """Trains the seeds in `workdirs` (all at step `start`) to the end; writes their workdirs.

  A seed whose loss or parameters go non-finite stops there (its last good checkpoint is
  kept) while the others go on; FloatingPointError names it once the others have finished.
  """
  seeds = list(workdirs)
  config = configs[seeds[0]]  # the same but for `seed`
  num_seeds, size = len(seeds), info.image_size
  steps = task.make_steps(model, tx, config, info.num_classes, mesh, num_seeds)
  state, managers, abstract_state, initial_params = _initial_state(
    configs, workdirs, start, steps, model, tx, size
  )
  writers = {s: workdir_lib.MetricWriter(workdirs[s], resume_step=start) for s in seeds}
  num_sampled = steps_lib.pixels_per_image(config, model, size)
  _say(f'Compiling the train step ({num_seeds} seed{"s" * (num_seeds > 1)})…')
  t0 = time.perf_counter()
  compiled_train_step = steps.train.lower(
    abstract_state,
    task.batch_shapes(config, num_seeds, size, num_sampled, steps.seeds_batch_sharding),
  ).compile()
  compile_seconds = time.perf_counter() - t0
  _say(f'Compiled in {compile_seconds:.1f} s.')

  if start < config.num_steps:
    next_batch = task.batch_source(
      config, seeds, start, size, num_sampled, steps.seeds_batch_sharding
    )
    batch = next_batch(start + 1)
  alive = dict(enumerate(seeds))  # index in the seed axis -> seed, for seeds still training
  failures = []
  bar = tqdm.tqdm(
    total=config.num_steps,
    initial=start,
    disable=not config.progress or jax.process_index() != 0,
    dynamic_ncols=True,
    unit='step',
  )
  tick, tick_step, paused = time.perf_counter(), start, 0.0  # paused: eval and save time
  with preemption.Watcher() as watcher:
    for step in range(start + 1, config.num_steps + 1):
      state, train_metrics = compiled_train_step(state, batch)
      is_log = step % config.log_every == 0 or step == config.num_steps
      is_ckpt = step % config.checkpoint_every == 0 or step == config.num_steps
      if is_log or is_ckpt:
        values = jax.device_get(train_metrics)  # [S] each
        failures += _stop_non_finite(values, alive, managers, workdirs, step)
        if not alive:
          break
      if is_log:
        now = time.perf_counter()
        seconds = (now - tick - paused) / (step - tick_step)
        for i, seed in alive.items():
          logged = {
            'train/loss': float(values['loss'][i]),
            'train/grad_norm': float(values['grad_norm'][i]),
            'train/images_per_second': config.batch_size / seconds,
          }  # per seed
          if tick_step > start:  # the first interval after a (re)start includes warm-up
            logged['train/step_seconds'] = seconds
          writers[seed].write(step, logged)
        tick, tick_step, paused = now, step, 0.0
        bar.set_postfix(
          loss=f'{float(np.mean(values["loss"][list(alive)])):.4f}',
          img_s=f'{num_seeds * config.batch_size / seconds:.0f}',
        )
        bar.update(step - bar.n)  # here the step has run (its loss is read): a true rate
      pause_start = time.perf_counter()
      if config.eval_every and step % config.eval_every == 0 and step < config.num_steps:
        for i, seed in alive.items():
          writers[seed].write(
            step,
            predict.prefixed(
              'val',
              task.evaluate(
                steps,
                steps_lib.seed_slice(state['params'], i),
                config,
                config.data.eval_split,
                info,
              ),
            ),
          )
      if is_ckpt:
        for i, seed in alive.items():
          managers[seed].save(step, args=ocp.args.StandardSave(steps_lib.seed_slice(state, i)))
      if watcher.reached(step):
        _save_and_stop(state, step, alive, managers, writers, workdirs, saved=is_ckpt)
      paused += time.perf_counter() - pause_start
      if step < config.num_steps:  # between log steps, this overlaps with the async step
        batch = next_batch(step + 1)
  bar.close()

  results = {}
  if alive:
    shared_cost = cost.run_cost(
      model.clone(conv_impl='xla'),  # lax's convolutions: XLA counts their FLOPs
      steps_lib.seed_slice(state['params'], next(iter(alive))),
      (size, size, 3),
      max(1, config.eval_batch_size // mesh.devices.size),  # a device's share of a batch
      steps_lib.train_step_flops(
        model,
        tx,
        config,
        info,
        mesh,
        compiled_train_step,
        num_seeds,
        abstract_state,
        num_sampled,
        task.make_steps,
        task.batch_shapes,
      )
      / 1e9
      / num_seeds,
      compile_seconds,
      num_seeds,
      mesh.devices.size,
      timed_apply=lambda p, x: model.apply({'params': p}, x),
    )
  init_params = initial_params() if alive else None  # [S, ...]
  for i, seed in alive.items():
    managers[seed].wait_until_finished()
    results[seed] = task.finish(
      steps,
      steps_lib.seed_slice(state['params'], i),
      steps_lib.seed_slice(init_params, i),
      config,
      info,
      shared_cost,
      writers[seed],
      workdirs[seed],
    )
  for seed in seeds:
    writers[seed].close()
    managers[seed].close()
  if failures:
    raise FloatingPointError('\n'.join(failures))
  return results


def _say(message: str):
  """A line on the terminal (process 0), beside the progress bar; library logs stay off it."""
  if jax.process_index() == 0:
    tqdm.tqdm.write(message)


def _save_and_stop(state, step, alive, managers, writers, workdirs, saved: bool):
  """On a preemption notice: every seed still training saved at `step`, then Preempted."""
  for i, seed in alive.items():
    if not saved:
      managers[seed].save(
        step, args=ocp.args.StandardSave(steps_lib.seed_slice(state, i)), force=True
      )
  for seed in workdirs:
    managers[seed].wait_until_finished()
    managers[seed].close()
    writers[seed].close()
  raise preemption.Preempted(step, [workdirs[s] for s in alive.values()])
