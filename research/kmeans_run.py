"""The clustering baseline as a run of a sweep (config.method = 'kmeans').

k-means with config.clustering (space, k, compactness, num_iters) on the eval and test
splits, clusters named by Hungarian matching, scored by the shared evaluator like the
networks plus the superpixel scores; config.json and final.json are written as a trained
run writes them, so launch.sweep and launch.table treat it as one.
"""

import functools
import os
import time
from typing import Mapping

import jax
import numpy as np

from research import clustering
from research import data
from research import evaluate
from research import workdir as workdir_lib


def _score_split(config, split: str, info) -> dict:
  """The split's metrics and the images/s of the clustering alone, compilation excluded."""
  c = config.clustering
  segment = jax.jit(
    functools.partial(
      clustering.segment, k=c.k, space=c.space, compactness=c.compactness, num_iters=c.num_iters
    )
  )
  key = jax.random.key(config.seed)  # per image, so results do not depend on the batching
  timing = {'seconds': 0.0, 'images': 0}

  def predict(batch):
    if not timing['images']:
      jax.block_until_ready(segment(batch['image'], key=key))  # compile outside the timing
    start = time.perf_counter()
    ids = np.asarray(segment(batch['image'], key=key)['cluster_ids'])  # [b, H, W]
    timing['seconds'] += time.perf_counter() - start
    valid = batch['valid']
    ids, labels = ids[valid], batch['label'][valid]
    timing['images'] += len(labels)
    preds = np.zeros(batch['label'].shape, np.int32)
    preds[valid] = clustering.match_clusters_to_classes(
      ids, labels, info.num_classes, info.ignore_label
    )
    recall, under = (np.full(len(valid), np.nan) for _ in range(2))
    recall[valid] = clustering.boundary_recall(ids, labels, info.ignore_label)
    under[valid] = clustering.undersegmentation_error(ids, labels, info.ignore_label)
    return {'preds': preds, 'boundary_recall': recall, 'undersegmentation_error': under}

  scores = evaluate.evaluate(predict, config.data, split, info, batch_size=config.eval_batch_size)
  return {**scores, 'images_per_second': timing['images'] / timing['seconds']}


def run(config, workdir: str) -> dict:
  """Clusters, scores and writes one seed's workdir; a finished one is returned as it is."""
  workdir = os.path.abspath(workdir)
  workdir_lib.check_config(config, workdir)
  finished = workdir_lib.read_final(workdir)
  if finished is not None:
    return finished
  info = data.dataset_info(config.data)
  pixels = info.image_size**2  # fail before claiming the workdir: space, k, iterations
  clustering.features(np.zeros((1, 1, 1, 3), np.float32), config.clustering.space, num_segments=1)
  clustering.check_kmeans_args(
    np.zeros((1, pixels, 1)), config.clustering.k, config.clustering.num_iters
  )
  workdir_lib.write_config(config, workdir)
  final = {'step': 0}
  for name, split in [('val', config.data.eval_split), ('test', config.data.test_split)]:
    final[name] = _score_split(config, split, info)
  final['cost'] = {
    'params': 0,
    'images_per_second': final['test'].pop('images_per_second'),
    'platform': jax.devices()[0].platform,
  }
  final['val'].pop('images_per_second')
  workdir_lib.write_json_atomic(os.path.join(workdir, 'final.json'), final)
  return final


def run_seeds(config, workdirs: Mapping[int, str]) -> dict[int, dict]:
  """`run` for each seed in turn (nothing to share: no training)."""
  workdirs = workdir_lib.checked_workdirs(workdirs)
  return {s: run(workdir_lib.with_seed(config, s), w) for s, w in workdirs.items()}
