"""One evaluator for every method: a predict function over a split -> the split's metrics.

Kept apart from the training loop (big_vision's evaluators, scenic's confusion matrix summed
over the whole split): training, the clustering baseline and anything else that labels pixels
hand it a `predict_fn`, and the same code scores them all.

`evaluate` gives the split's numbers (what periodic evaluations log); `evaluate_per_image`
also keeps every image's values (per-image confusions, trimap bands, small objects, boundary
F1, shift consistency, the predict_fn's scores), in the order of the split, so that paired
statistics can resample images (research.stats) and runs of the same split pair by image.
"""

from typing import Callable, Optional

import jax
from jax.experimental import multihost_utils
import numpy as np

from research import data
from research import decoder_metrics
from research import metrics

# predict_fn(batch) -> {'preds': int [b, H, W], name: float [b], ...}, for this process's rows of
# an eval batch {'image': [b, H, W, 3], 'label': [b, H, W], 'valid': bool [b]}. Every entry but
# 'preds' is a per-image score, averaged over the split's images.
PredictFn = Callable[[dict], dict]
# labels_fn(images [b, H, W, 3]) -> labels int [b, H, W]: for shift consistency.
LabelsFn = Callable[[np.ndarray], np.ndarray]

NOT_OBJECTS = ('background', 'border')  # classes small-object recall does not count


def object_classes(info) -> list[int]:
  """The classes whose connected components are objects (every class but background, and the
  pets' uncertain border band)."""
  return [c for c, name in enumerate(info.class_names) if name not in NOT_OBJECTS]


def evaluate(predict_fn: PredictFn, data_config, split: str, info, *, batch_size: int) -> dict:
  """mIoU etc. from the confusion matrix summed over the whole split; boundary F1 and the
  predict_fn's per-image scores averaged over images (NaN images left out); padded examples
  count nowhere. Every process passes its own rows; the sums are shared across processes."""
  confusion = np.zeros((info.num_classes,) * 2, np.int64)
  per_image = {'boundary_f1': []}
  for batch, out in _predictions(predict_fn, data_config, split, batch_size):
    valid, preds = batch['valid'], out.pop('preds')
    confusion += np.asarray(
      metrics.confusion_matrix(batch['label'], preds, info.num_classes, valid), np.int64
    )
    per_image['boundary_f1'].append(
      metrics.boundary_f1(batch['label'], preds, info.num_classes, valid, info.ignore_label)[valid]
    )
    for name, values in out.items():
      per_image.setdefault(name, []).append(np.asarray(values)[valid])
  scores = {name: np.concatenate(values) for name, values in per_image.items()}
  if jax.process_count() > 1:  # each host holds its own images: add up the sums
    confusion = _allgather(confusion).sum(0)
    sums = _allgather(
      np.array([(np.nansum(v), np.sum(~np.isnan(v))) for v in scores.values()], np.float64)
    )
    means = dict(zip(scores, (float(total / count) for total, count in sums.sum(0))))
  else:
    means = {name: float(np.nanmean(v)) for name, v in scores.items()}
  return {**metrics.region_scores(confusion, info.class_names), **means}


def evaluate_per_image(
  predict_fn: PredictFn,
  data_config,
  split: str,
  info,
  *,
  batch_size: int,
  labels_fn: Optional[LabelsFn] = None,
) -> tuple[dict, dict]:
  """(scores, per_image): `evaluate`'s scores plus the metrics where decoders differ, and
  every image's values ({name: [N, ...]}, N images of the split in order).

  Added scores: thin-structure IoU (the dataset's thin classes), trimap mIoU for bands of
  w px around ground-truth boundaries (trimap_miou_w1 … _w16), small-object recall, and with
  `labels_fn` shift consistency (the mean over shifts, and shift_consistency_s1 … _s7). With
  several processes the per-image arrays are gathered in the split's order, bit for bit.
  """
  per_image = {}
  for batch, out in _predictions(predict_fn, data_config, split, batch_size):
    valid, preds = batch['valid'], out.pop('preds')
    values = decoder_metrics.batch_metrics(
      batch['label'], preds, info.num_classes, object_classes(info), valid, info.ignore_label
    )
    if labels_fn is not None:
      values['shift_consistency'] = decoder_metrics.shift_consistency(
        labels_fn, batch['image'], valid
      )[valid]
    values.update({name: np.asarray(v)[valid] for name, v in out.items()})
    if jax.process_count() > 1:
      values = gather_valid_rows(values, valid)
    for name, value in values.items():
      per_image.setdefault(name, []).append(value)
  per_image = {name: np.concatenate(values) for name, values in per_image.items()}
  return summarize(per_image, info), per_image


def summarize(per_image: dict, info) -> dict:
  """A split's scores from its per-image values (evaluate_per_image's arrays)."""
  confusion = per_image['confusion'].sum(0)
  summary = decoder_metrics.split_summary(per_image, info.thin_classes)
  scores = metrics.region_scores(confusion, info.class_names)
  scores['boundary_f1'] = float(np.nanmean(per_image['boundary_f1']))
  for name, value in per_image.items():
    if name.startswith('checkerboard'):
      scores[name] = float(np.nanmean(value))
  for w, miou in zip(decoder_metrics.TRIMAP_WIDTHS, summary['trimap_miou']):
    scores[f'trimap_miou_w{w}'] = miou
  for name in ('thin_iou', 'small_object_recall', 'shift_consistency'):
    if name in summary:
      scores[name] = summary[name]
  for s, agreement in zip(decoder_metrics.SHIFTS, summary.get('shift_consistency_per_shift', ())):
    scores[f'shift_consistency_s{s}'] = agreement
  return scores


def _predictions(predict_fn, data_config, split, batch_size):
  """(batch, predict_fn(batch) with 'preds' as numpy) for this process's rows of each batch."""
  for batch in data.eval_batches(
    data_config,
    split,
    global_batch_size=batch_size,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
  ):
    out = dict(predict_fn(batch))
    out['preds'] = np.asarray(out['preds'])
    yield batch, out


def _allgather(array: np.ndarray) -> np.ndarray:
  """[P, ...]: every process's `array`, bit for bit (64-bit values travel as two 32-bit
  words: the gather goes through JAX arrays, which hold 32 bits without x64)."""
  if array.dtype.itemsize != 8:
    return np.asarray(multihost_utils.process_allgather(array, tiled=False))
  words = np.ascontiguousarray(array).view(np.uint32)
  gathered = np.asarray(multihost_utils.process_allgather(words, tiled=False))
  return np.ascontiguousarray(gathered).view(array.dtype)


def gather_valid_rows(values: dict, valid: np.ndarray) -> dict:
  """Every process's valid rows of each [V, ...] array, in the split's order. Process p holds
  examples p, p + P, p + 2P, ... (data.eval_batches), so row j of process p in a batch is
  example (batch · b + j) · P + p: the split's order is row-major over (j, p)."""
  all_valid = _allgather(valid).T.reshape(-1)  # [b · P], in the split's order
  gathered = {}
  for name, value in values.items():
    full = np.zeros(valid.shape + value.shape[1:], value.dtype)
    full[valid] = value  # back at their rows, so that every process sends [b, ...]
    rows = np.swapaxes(_allgather(full), 0, 1)  # [b, P, ...]
    gathered[name] = rows.reshape((-1,) + value.shape[1:])[all_valid]
  return gathered
