"""Panoptic segmentation bottom-up, as Panoptic-DeepLab (Cheng et al. 2020), as a run
(config.method = 'panoptic', experiments/panoptic.py).

One model of the registry (`config.model`: architecture and the upsampler under test) with
K + 3 output channels from its one decoder: K semantic logits, an instance-centre heatmap
and offsets (dy, dx) from each pixel to its instance's centre. Data: a config with instance
ids (lab_shapes/res64_instances), flipped with the image; targets from research.panoptic
(a Gaussian of config.panoptic.sigma px at each thing's mass centre, offsets on thing
pixels), computed per example in the data pipeline.

Loss: cross-entropy on the semantics + heatmap_weight × mean squared error of the heatmap
over labelled pixels + offset_weight × L1 of the offsets (dy and dx summed) over thing
pixels; experiments/panoptic.py sets 10 and 0.1, not the paper's 200 and 0.01 (its docstring
has the measurement: the paper's weights starve the semantic head at this size). Other
departures: plain cross-entropy, not the paper's hard-pixel bootstrapping (top 20% of
pixels) with small instances weighted 3×; one decoder for the three heads (the paper has a
semantic and an instance decoder) so that the upsampler under test makes all three; sigma
2 px by default, not 8: the paper's 8 px is for 1024×2048 Cityscapes, here objects are 2-28
px across at 64 px.

Evaluation (research.panoptic.group, then research.panoptic_metrics, summed over the
split): PQ, SQ, RQ per class, over things and stuff; the semantic head's mIoU; and the
checkerboard score (research.metrics.checkerboard_score) of the offsets, where a dense
regression shows a transposed convolution's artifacts if anything does, and of the heatmap,
beside that of the semantic probabilities. All in final.json's 'val' and 'test' ('init':
the checkerboards of the initial parameters); each image's values (its PQ counts, semantic
confusion, checkerboards) in per_image_<split>.npz, for paired statistics (research.tables).
"""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from research import data
from research import decoder_metrics
from research import evaluate as evaluate_lib
from research import metrics
from research import panoptic
from research import panoptic_metrics
from research import predict
from research import steps
from research import tasks
from research import train
from research import workdir as workdir_lib
from research.data import catalog

EXTRA = 3  # heatmap, dy, dx


def check(config, info):
  """Refuses what cannot run: no config.panoptic, no instance ids, classes out of range."""
  if 'panoptic' not in config:
    raise ValueError("method 'panoptic' needs config.panoptic: see experiments/panoptic.py.")
  if config.data.random_crop:
    raise ValueError(
      "method 'panoptic' cannot take data.random_crop=True: the reflect padding would copy "
      'objects under the same instance id.'
    )
  if not catalog.has_instances(config.data):
    raise ValueError(
      f"method 'panoptic' needs instance ids; data.variant={config.data.variant!r} has none. "
      f'Variants with them: {", ".join(catalog.instance_variants(config.data)) or "none"}.'
    )
  p = config.panoptic
  classes = list(p.thing_classes) + list(p.stuff_classes)
  if sorted(classes) != list(range(info.num_classes)):
    raise ValueError(
      f'panoptic.thing_classes {list(p.thing_classes)} and stuff_classes '
      f'{list(p.stuff_classes)} must split the {info.num_classes} classes 0..'
      f'{info.num_classes - 1} between them.'
    )


def build_model(config, num_classes: int):
  return steps.build_model(config, num_classes + EXTRA)


def split_outputs(outputs, num_classes: int):
  """[..., K + 3] -> (logits [..., K], heatmap [...], offsets [..., 2])."""
  return outputs[..., :num_classes], outputs[..., num_classes], outputs[..., num_classes + 1 :]


def add_targets(example: dict, thing_classes, sigma: float) -> dict:
  """The data pipeline's transform: an example with 'heatmap' [S, S] and 'offsets' [S, S, 2]."""
  heatmap, offsets, _ = panoptic.targets(
    example['instance'], example['label'], thing_classes, sigma
  )
  return {**example, 'heatmap': heatmap, 'offsets': offsets}


def _transform(config):
  p = config.panoptic
  return functools.partial(add_targets, thing_classes=tuple(p.thing_classes), sigma=p.sigma)


def losses(outputs, batch, num_classes: int, thing_classes) -> dict:
  """The three terms, unweighted: 'semantic', 'heatmap', 'offsets' (scalars)."""
  logits, heatmap, offsets = split_outputs(outputs, num_classes)
  labels = batch['label']
  labelled = ((labels >= 0) & (labels < num_classes)).astype(jnp.float32)
  thing = (jnp.isin(labels, jnp.asarray(thing_classes)) & (batch['instance'] > 0)).astype(
    jnp.float32
  )
  return {
    'semantic': steps.pixel_cross_entropy(logits, labels),
    'heatmap': jnp.sum((heatmap - batch['heatmap']) ** 2 * labelled)
    / jnp.maximum(labelled.sum(), 1),
    'offsets': jnp.sum(jnp.abs(offsets - batch['offsets']).sum(-1) * thing)
    / jnp.maximum(thing.sum(), 1),
  }


def make_steps(model, tx, config, num_classes: int, mesh, num_seeds: int = 1, donate=True):
  p = config.panoptic
  things = tuple(p.thing_classes)

  def loss_fn(params, batch):
    terms = losses(model.apply({'params': params}, batch['image']), batch, num_classes, things)
    return (
      terms['semantic'] + p.heatmap_weight * terms['heatmap'] + (p.offset_weight * terms['offsets'])
    )

  def predict_step(params, images):
    logits, heatmap, offsets = split_outputs(model.apply({'params': params}, images), num_classes)
    return jnp.argmax(logits, -1), {
      'heatmap': heatmap,
      'offsets': offsets,
      'probs': metrics.checkerboard_score(jax.nn.softmax(logits)),
      'checkerboard_heatmap': metrics.checkerboard_score(heatmap[..., None]),
      'checkerboard_offsets': metrics.checkerboard_score(offsets),
    }

  return steps.compile_steps(loss_fn, predict_step, tx, mesh, num_seeds, donate)


def batch_shapes(config, num_seeds: int, size: int, num_sampled: int, sharding) -> dict:
  shapes = steps.batch_shapes(config, num_seeds, size, num_sampled, sharding)
  lead = (num_seeds, config.batch_size, size, size)
  for name, shape, dtype in [
    ('instance', lead, jnp.int32),
    ('heatmap', lead, jnp.float32),
    ('offsets', lead + (2,), jnp.float32),
  ]:
    shapes[name] = jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)
  return shapes


def batch_source(config, seeds, start: int, size: int, num_sampled: int, sharding):
  return steps.batch_source(
    config, seeds, start, size, num_sampled, sharding, instances=True, transform=_transform(config)
  )


def score_batch(batch, out, config, num_classes: int) -> dict:
  """Each valid image's values: the semantic 'confusion' [n, K, K] and PQ's 'pq_tp',
  'pq_fp', 'pq_fn', 'pq_iou_sum' [n, K] of its grouped predictions."""
  p, valid = config.panoptic, batch['valid']
  grouped = [
    panoptic.group(s, h, o, p.thing_classes, p.threshold, p.nms_kernel, p.top_k)
    for s, h, o in zip(out['preds'][valid], out['heatmap'][valid], out['offsets'][valid])
  ]
  shape = (0,) + batch['label'].shape[1:]
  pred_labels = np.stack([g[0] for g in grouped]) if grouped else np.zeros(shape, int)
  pred_ids = np.stack([g[1] for g in grouped]) if grouped else np.zeros(shape, int)
  stats = panoptic_metrics.pq_stats(
    batch['label'][valid],
    batch['instance'][valid],
    pred_labels,
    pred_ids,
    num_classes,
    p.thing_classes,
  )
  values = {f'pq_{k}': v for k, v in stats.items()}
  values['confusion'] = decoder_metrics.per_image_confusion(
    batch['label'], np.asarray(out['preds']), num_classes, valid
  )[valid]
  return values


CHECKERBOARDS = ('checkerboard', 'checkerboard_heatmap', 'checkerboard_offsets')


def evaluate(steps_, params, config, split: str, info, workdir=None, prefix='', shifts=True):
  """The split's panoptic scores (predict.finish's evaluate_split), and with a workdir each
  image's values in per_image_<prefix><split>.npz (in the split's order, for paired
  statistics: PQ is a function of their sums). `shifts` is the semantic evaluator's and
  unused here."""
  del shifts
  fn = predict.predict_fn(steps_, params)
  per_image = {}
  for batch in data.eval_batches(
    config.data,
    split,
    global_batch_size=config.eval_batch_size,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
    instances=True,
  ):
    out = dict(fn(batch))
    values = score_batch(batch, out, config, info.num_classes)
    values.update(
      {name: np.asarray(out[name], np.float64)[batch['valid']] for name in CHECKERBOARDS}
    )
    if jax.process_count() > 1:
      values = evaluate_lib.gather_valid_rows(values, batch['valid'])
    for name, value in values.items():
      per_image.setdefault(name, []).append(value)
  per_image = {name: np.concatenate(values) for name, values in per_image.items()}
  if workdir is not None and jax.process_index() == 0:
    path = os.path.join(workdir, f'per_image_{prefix}{split}.npz')
    workdir_lib.write_npz_atomic(path, per_image)
  p = config.panoptic
  totals = {k: per_image[f'pq_{k}'].sum(0) for k in ('tp', 'fp', 'fn', 'iou_sum')}
  summary = panoptic_metrics.pq_summary(totals, p.thing_classes, p.stuff_classes)
  scores = metrics.region_scores(per_image['confusion'].sum(0), info.class_names)
  for name, value in summary.items():
    if name.endswith('_per_class'):
      scores[name] = dict(zip(info.class_names, value.tolist()))
    else:
      scores[name] = value
  for name in CHECKERBOARDS:
    scores[name] = float(np.mean(per_image[name]))
  return scores


PANOPTIC = tasks.Task(
  build_model=build_model,
  make_steps=make_steps,
  batch_shapes=batch_shapes,
  batch_source=batch_source,
  evaluate=evaluate,
  finish=functools.partial(predict.finish, evaluate_split=evaluate),
  check=check,
)


def run_seeds(config, workdirs):
  """research.train's loop (resume, preemption, seeds together, final.json) on this task."""
  return train.train_and_evaluate_seeds(config, workdirs, PANOPTIC)
