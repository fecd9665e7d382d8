"""A trained model as the evaluator sees it: its predict function over eval batches, and the
evaluations a training run makes with it (periodic, and per image at the end)."""

import os
import statistics

import jax

from research import cost
from research import evaluate as evaluate_lib
from research import steps as steps_lib
from research import workdir as workdir_lib

# The checkerboard scores of the predict step, as final.json and the tables name them (a
# task's other outputs keep their names).
_CHECKERBOARD = {
  'probs': 'checkerboard',
  'logits': 'checkerboard_logits',
  'features': 'checkerboard_features',
}


def _predict(steps: steps_lib.Steps, params, images):
  images = steps_lib.to_global({'image': images}, steps.batch_sharding)['image']
  preds, checker = steps.predict(params, images)
  return steps_lib.local_rows(preds), {k: steps_lib.local_rows(v) for k, v in checker.items()}


def predict_fn(steps: steps_lib.Steps, params) -> evaluate_lib.PredictFn:
  """The evaluator's view of a trained model: this process's rows of each eval batch."""

  def predict(batch):
    preds, checker = _predict(steps, params, batch['image'])
    return {'preds': preds, **{_CHECKERBOARD.get(k, k): v for k, v in checker.items()}}

  return predict


def evaluate(steps, params, config, split: str, info) -> dict:
  """The split's scores (what the periodic evaluations log)."""
  return evaluate_lib.evaluate(
    predict_fn(steps, params), config.data, split, info, batch_size=config.eval_batch_size
  )


def evaluate_per_image(
  steps, params, config, split: str, info, workdir: str, prefix: str = '', shifts: bool = True
) -> dict:
  """The split's scores with the metrics where decoders differ; every image's values go to
  workdir/per_image_{prefix}{split}.npz (in the split's order) for paired statistics."""
  labels_fn = (lambda images: _predict(steps, params, images)[0]) if shifts else None
  scores, per_image = evaluate_lib.evaluate_per_image(
    predict_fn(steps, params),
    config.data,
    split,
    info,
    batch_size=config.eval_batch_size,
    labels_fn=labels_fn,
  )
  if jax.process_index() == 0:
    workdir_lib.write_npz_atomic(os.path.join(workdir, f'per_image_{prefix}{split}.npz'), per_image)
  return scores


def prefixed(prefix, d):
  return {f'{prefix}/{k}': v for k, v in d.items() if not isinstance(v, (dict, list))}


def finish(
  steps,
  params,
  init_params,
  config,
  info,
  shared_cost,
  writer,
  workdir,
  evaluate_split=evaluate_per_image,
  extend=None,
) -> dict:
  """Evaluates one seed on the eval and test splits, and its initial parameters on the test
  split (the checkerboard before training), and writes its final.json. `evaluate_split`
  (evaluate_per_image's arguments): a task's evaluation of one split; `extend` (final,
  params, config, info, workdir) -> final: a task's further evaluations, done before
  final.json is written, since a run is finished once it exists."""
  final = {'step': config.num_steps}
  for name, split in [('val', config.data.eval_split), ('test', config.data.test_split)]:
    final[name] = evaluate_split(steps, params, config, split, info, workdir)
  init = evaluate_split(
    steps, init_params, config, config.data.test_split, info, workdir, prefix='init_', shifts=False
  )
  final['init'] = {k: v for k, v in init.items() if k.startswith('checkerboard')}
  # From metrics.jsonl, so that a resumed run's timing covers its earlier part too.
  timings = writer.values('train/step_seconds')
  step_seconds = statistics.median(timings) if timings else float('nan')
  final['cost'] = {
    **shared_cost,
    'step_seconds': step_seconds,
    'images_per_second': config.batch_size / step_seconds,  # per seed
    **cost.peak_memory(),
  }
  writer.write(
    config.num_steps, {**prefixed('val', final['val']), **prefixed('test', final['test'])}
  )
  if extend is not None:
    final = extend(final, params, config, info, workdir)
  if jax.process_index() == 0:
    workdir_lib.write_json_atomic(os.path.join(workdir, 'final.json'), final)
  return final
