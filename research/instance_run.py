"""Instance masks, the mask head's upsampler (Mask R-CNN, He et al. 2017), as a run
(config.method = 'instance', experiments/instance.py).

No detector: the head runs on ground-truth boxes (the question is the head, not the boxes).
Model: research.models.mask_head (U-Net backbone at full resolution, RoIAlign to 14×14,
four 3×3 convolutions, the ×2 upsampler under test, per-class 28×28 mask logits). Data: a
config with instance ids (lab_shapes/res64_instances); each example gets the tight boxes of
its instances (research.instance_metrics.instance_boxes) padded to a fixed
config.instance.max_instances with a valid mask, so that every batch has one shape.

Loss (Mask R-CNN's): per-pixel sigmoid cross-entropy of the ground-truth class's 28×28
logits against the ground-truth mask RoIAligned to 28×28 and thresholded at 0.5, averaged
over the valid boxes' pixels.

Evaluation: the class's mask probabilities pasted back into the image (research.roi_align,
threshold 0.5); per instance the mask IoU and boundary F1 (research.instance_metrics) with
its ground truth, averaged over the split's instances; COCO mask AP over IoU 0.50:0.95 (and
AP50, AP75, per class), each mask scored by its mean probability inside the predicted mask
(0 for an empty mask): boxes from ground truth carry no detector score, so the mask's own
confidence orders them. Also the checkerboard score of the 28×28 logits of each box's class
(what the upsampler made), averaged over boxes. Evaluation runs on one process; each image's
values go to per_image_<split>.npz, so that tables pair decoders by seed and image (mask AP
by research.stats.weighted_difference, the rest as weighted means).
"""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from research import data
from research import instance_metrics
from research import metrics
from research import predict
from research import roi_align
from research import steps
from research import tasks
from research import train
from research import workdir as workdir_lib
from research.data import catalog
from research.models import mask_head

BOX_FIELDS = ('boxes', 'box_ids', 'box_classes', 'box_valid')


def check(config, info):
  """Refuses what cannot run, in one line each."""
  del info
  if 'instance' not in config:
    raise ValueError("method 'instance' needs config.instance: see experiments/instance.py.")
  if config.data.random_crop:
    raise ValueError(
      "method 'instance' cannot take data.random_crop=True: the reflect padding would copy "
      'objects under the same instance id.'
    )
  if not catalog.has_instances(config.data):
    raise ValueError(
      f"method 'instance' needs instance ids; data.variant={config.data.variant!r} has none. "
      f'Variants with them: {", ".join(catalog.instance_variants(config.data)) or "none"}.'
    )
  if jax.process_count() > 1:
    raise ValueError("method 'instance' evaluates on one process; run it on one.")


def build_model(config, num_classes: int):
  mask_head.check_upsampler(config.model.upsampler)
  options = config.model.options.to_dict()
  unknown = sorted(set(options) - {'depth'})
  if unknown:
    raise ValueError(f'The mask head model has no option(s) {unknown}; its options are: depth.')
  return mask_head.MaskHeadModel(
    num_classes=num_classes,
    upsampler=config.model.upsampler,
    upsampler_options=config.model.upsampler_options.to_dict(),
    width=config.model.width,
    head_width=config.instance.head_width,
    backbone_upsampler=config.instance.backbone_upsampler,
    dtype=jnp.dtype(config.model.dtype),
    conv_impl=config.model.get('conv_impl', 'auto'),
    **options,
  )


def add_boxes(example: dict, max_instances: int) -> dict:
  """The data pipeline's transform: the example's instance boxes, padded to max_instances:
  'boxes' float32 [R, 4] (padding: a 1-px box), 'box_ids', 'box_classes' int32 [R],
  'box_valid' bool [R]."""
  ids, boxes = instance_metrics.instance_boxes(example['instance'])
  if len(ids) > max_instances:
    raise ValueError(
      f'An example has {len(ids)} instances, more than instance.max_instances={max_instances}.'
    )
  padded = {
    'boxes': np.tile(np.array([[0, 0, 1, 1]], np.float32), (max_instances, 1)),
    'box_ids': np.zeros(max_instances, np.int32),
    'box_classes': np.zeros(max_instances, np.int32),
    'box_valid': np.zeros(max_instances, bool),
  }
  padded['boxes'][: len(ids)] = boxes
  padded['box_ids'][: len(ids)] = ids
  padded['box_classes'][: len(ids)] = [example['label'][example['instance'] == i][0] for i in ids]
  padded['box_valid'][: len(ids)] = True
  return {**example, **padded}


def _flat(batch):
  """Boxes [B * R, 4] and the image of each, for RoIAlign and paste-back."""
  b, r = batch['box_ids'].shape
  return batch['boxes'].reshape(b * r, 4), jnp.repeat(jnp.arange(b), r)


def class_logits(model, params, batch):
  """Each box's 28×28 logits of its class: [B * R, 28, 28]."""
  boxes, image = _flat(batch)
  logits = model.apply({'params': params}, batch['image'], boxes, image)  # [B * R, 28, 28, K]
  classes = batch['box_classes'].reshape(-1)
  return jnp.take_along_axis(logits, classes[:, None, None, None], axis=-1)[..., 0]


def mask_targets(batch):
  """Each box's ground-truth mask RoIAligned to 28×28, >= 0.5: float32 [B * R, 28, 28]."""
  b, r = batch['box_ids'].shape
  masks = batch['instance'][:, None] == batch['box_ids'][:, :, None, None]  # [B, R, H, W]
  boxes, _ = _flat(batch)
  aligned = roi_align.roi_align(
    masks.reshape(b * r, *masks.shape[2:], 1).astype(jnp.float32),
    boxes,
    jnp.arange(b * r),
    output_size=roi_align.MASK_SIZE,
  )
  return (aligned[..., 0] >= 0.5).astype(jnp.float32)


def mask_loss(logits, targets, valid):
  """Mean sigmoid cross-entropy over the valid boxes' pixels (Mask R-CNN's mask loss)."""
  weights = valid.reshape(-1).astype(jnp.float32)[:, None, None]
  ce = optax.sigmoid_binary_cross_entropy(logits, targets) * weights
  return ce.sum() / jnp.maximum(weights.sum() * logits.shape[1] * logits.shape[2], 1.0)


def make_steps(model, tx, config, num_classes: int, mesh, num_seeds: int = 1, donate=True):
  del config, num_classes

  def loss_fn(params, batch):
    return mask_loss(class_logits(model, params, batch), mask_targets(batch), batch['box_valid'])

  def predict_step(params, inputs):  # inputs: 'image' and the box fields, [B, ...] each
    b, r = inputs['box_ids'].shape
    logits = class_logits(model, params, inputs)  # [B * R, 28, 28]
    boxes, _ = _flat(inputs)
    pasted = roi_align.paste_probabilities(
      jax.nn.sigmoid(logits), boxes, *inputs['image'].shape[1:3]
    )
    checker = metrics.checkerboard_score(logits[..., None])  # [B * R]
    return pasted.reshape(b, r, *pasted.shape[1:]), {'checkerboard': checker.reshape(b, r)}

  return steps.compile_steps(loss_fn, predict_step, tx, mesh, num_seeds, donate)


def batch_shapes(config, num_seeds: int, size: int, num_sampled: int, sharding) -> dict:
  shapes = steps.batch_shapes(config, num_seeds, size, num_sampled, sharding)
  lead, r = (num_seeds, config.batch_size), config.instance.max_instances
  for name, shape, dtype in [
    ('instance', (size, size), jnp.int32),
    ('boxes', (r, 4), jnp.float32),
    ('box_ids', (r,), jnp.int32),
    ('box_classes', (r,), jnp.int32),
    ('box_valid', (r,), jnp.bool_),
  ]:
    shapes[name] = jax.ShapeDtypeStruct(lead + shape, dtype, sharding=sharding)
  return shapes


def _transform(config):
  return functools.partial(add_boxes, max_instances=config.instance.max_instances)


def batch_source(config, seeds, start: int, size: int, num_sampled: int, sharding):
  return steps.batch_source(
    config, seeds, start, size, num_sampled, sharding, instances=True, transform=_transform(config)
  )


def score_image(pasted, valid, box_ids, box_classes, instance) -> dict:
  """One image's instances: 'iou', 'boundary_f1' [N] and match_image's matches, from the
  pasted probabilities [R, H, W] of its boxes (valid [R]) and its id map [H, W]."""
  probs, ids = np.asarray(pasted)[valid], np.asarray(box_ids)[valid]
  classes = np.asarray(box_classes)[valid]
  pred = probs >= roi_align.MASK_THRESHOLD
  gt = np.asarray(instance)[None] == ids[:, None, None]
  area = pred.sum((1, 2))
  scores = np.where(area > 0, (probs * pred).sum((1, 2)) / np.maximum(area, 1), 0.0)
  union = (pred | gt).sum((1, 2))
  return {
    'iou': np.where(union > 0, (pred & gt).sum((1, 2)) / np.maximum(union, 1), 0.0),
    'boundary_f1': instance_metrics.boundary_f1(pred, gt),
    'match': instance_metrics.match_image(pred, scores, classes, gt, classes),
  }


def _image_mean(values) -> tuple[float, int]:
  """The mean of an image's defined (non-NaN) per-instance values, and how many there are."""
  defined = np.asarray(values, np.float64)[~np.isnan(values)]
  return (float(defined.mean()) if defined.size else float('nan')), defined.size


def per_image_values(images: list, checker: list, num_classes: int, width: int) -> dict:
  """The split's per-image arrays (per_image_<split>.npz) from score_image of each image and
  its boxes' checkerboard scores: per-instance means as scores with their counts as weights
  ('mask_iou', 'boundary_f1', 'checkerboard_logits', each with '<name>_weight'), so that
  weighted means over images are the means over the split's instances; and
  instance_metrics.stack_matches of the matches, for mask AP."""
  values = {}
  for name, per_instance in (
    ('mask_iou', [image['iou'] for image in images]),
    ('boundary_f1', [image['boundary_f1'] for image in images]),
    ('checkerboard_logits', checker),
  ):
    means, counts = zip(*map(_image_mean, per_instance))
    values[name], values[f'{name}_weight'] = np.array(means), np.array(counts, np.float64)
  matches = [image['match'] for image in images]
  return {**values, **instance_metrics.stack_matches(matches, num_classes, width)}


def evaluate(steps_, params, config, split: str, info, workdir=None, prefix='', shifts=True):
  """The split's instance-mask scores (predict.finish's evaluate_split), and with a workdir
  each image's values in per_image_<prefix><split>.npz (in the split's order, for paired
  statistics; per_image_values). `shifts` is the semantic evaluator's and unused here."""
  del shifts
  images, checker = [], []
  for batch in data.eval_batches(
    config.data,
    split,
    global_batch_size=config.eval_batch_size,
    instances=True,
    transform=_transform(config),
  ):
    inputs = steps.to_global({k: batch[k] for k in ('image',) + BOX_FIELDS}, steps_.batch_sharding)
    pasted, extra = steps_.predict(params, inputs)
    pasted, boxes_checker = np.asarray(pasted), np.asarray(extra['checkerboard'])
    for i in np.flatnonzero(batch['valid']):
      valid = batch['box_valid'][i]
      images.append(
        score_image(
          pasted[i], valid, batch['box_ids'][i], batch['box_classes'][i], batch['instance'][i]
        )
      )
      checker.append(boxes_checker[i][valid])
  if images and workdir is not None and jax.process_index() == 0:
    path = os.path.join(workdir, f'per_image_{prefix}{split}.npz')
    per_image = per_image_values(images, checker, info.num_classes, config.instance.max_instances)
    workdir_lib.write_npz_atomic(path, per_image)
  ap = instance_metrics.mask_ap([image['match'] for image in images], info.num_classes)
  ious = np.concatenate([image['iou'] for image in images])
  f1s = np.concatenate([image['boundary_f1'] for image in images])
  checker = np.concatenate(checker)
  return {
    'mask_iou': float(ious.mean()) if len(ious) else float('nan'),
    'boundary_f1': float(np.nanmean(f1s)) if len(f1s) else float('nan'),
    'mask_ap': ap['ap'],
    'mask_ap50': ap['ap50'],
    'mask_ap75': ap['ap75'],
    'mask_ap_per_class': dict(zip(info.class_names, ap['per_class'].tolist())),
    'instances': len(ious),
    'checkerboard': float(np.nanmean(checker)) if len(ious) else float('nan'),
  }


INSTANCE = tasks.Task(
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
  return train.train_and_evaluate_seeds(config, workdirs, INSTANCE)
