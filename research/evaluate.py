"""One evaluator for every method: a predict function over a split -> the split's metrics.

Kept apart from the training loop (big_vision's evaluators, scenic's confusion matrix summed
over the whole split): training, the clustering baseline and anything else that labels pixels
hand it a `predict_fn`, and the same code scores them all.
"""
from typing import Callable

import jax
from jax.experimental import multihost_utils
import numpy as np

from research import data
from research import metrics

# predict_fn(batch) -> {'preds': int [b, H, W], name: float [b], ...}, for this process's rows of
# an eval batch {'image': [b, H, W, 3], 'label': [b, H, W], 'valid': bool [b]}. Every entry but
# 'preds' is a per-image score, averaged over the split's images.
PredictFn = Callable[[dict], dict]


def evaluate(predict_fn: PredictFn, data_config, split: str, info, *, batch_size: int) -> dict:
  """mIoU etc. from the confusion matrix summed over the whole split; boundary F1 and the
  predict_fn's per-image scores averaged over images (NaN images left out); padded examples
  count nowhere. Every process passes its own rows; the sums are shared across processes."""
  num_classes = info.num_classes
  confusion = np.zeros((num_classes,) * 2, np.int64)
  per_image = {'boundary_f1': []}
  for batch in data.eval_batches(data_config, split, global_batch_size=batch_size,
                                 process_index=jax.process_index(),
                                 process_count=jax.process_count()):
    out = dict(predict_fn(batch))
    valid = batch['valid']
    preds = np.asarray(out.pop('preds'))
    confusion += np.asarray(metrics.confusion_matrix(batch['label'], preds, num_classes, valid),
                            np.int64)
    per_image['boundary_f1'].append(metrics.boundary_f1(
        batch['label'], preds, num_classes, valid, info.ignore_label)[valid])
    for name, values in out.items():
      per_image.setdefault(name, []).append(np.asarray(values)[valid])
  scores = {name: np.concatenate(values) for name, values in per_image.items()}
  if jax.process_count() > 1:  # each host holds its own images: add up the sums
    confusion = multihost_utils.process_allgather(confusion).sum(0)
    sums = multihost_utils.process_allgather(
        np.array([(np.nansum(v), np.sum(~np.isnan(v))) for v in scores.values()], np.float64))
    means = dict(zip(scores, (float(total / count) for total, count in sums.sum(0))))
  else:
    means = {name: float(np.nanmean(v)) for name, v in scores.items()}
  return {**metrics.region_scores(confusion, info.class_names), **means}
