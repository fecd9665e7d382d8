r"""Segmentation as clustering: k-means on intensity, colour, colour + position, no learning.

  python -m launch.sweep --config experiments/clustering.py --root workdirs/clustering
  python -m launch.table --root workdirs/clustering --name clustering --noplots --out results
  python -m launch.clustering_figure --out results/clustering.png

The unsupervised baseline of the networks' tables, on the same lab_shapes/res64 splits:
each image's k clusters are named after classes by Hungarian matching (an oracle: the
labels pick the names), then scored with the same mIoU and boundary F1, plus the
superpixel scores (boundary recall, under-segmentation error). Grid: 3 feature spaces ×
k in {2, 4, 8, 16, 64, 256} × 3 seeds (the k-means++ draws), 54 cells of a few seconds.
One cell: `launch.train --config experiments/clustering.py:space=colour_position,k=64`.
Results: results/clustering.md.
"""

import ml_collections

from experiments import base
from research import clustering
from research import config_utils
from research.sweep import grids

KS = (2, 4, 8, 16, 64, 256)


def get_config(arg=None):
  arg = config_utils.parse_arg(arg, space='colour', k=8, seed=0, compactness=10.0, iters=20)
  c = base.get_config()
  c.method = 'kmeans'  # research.runners runs research.kmeans_run
  c.seed = arg.seed
  c.clustering = ml_collections.ConfigDict(
    dict(
      space=arg.space,  # intensity | colour | colour_position (SLIC-like)
      k=arg.k,
      compactness=arg.compactness,  # SLIC's m, colour_position only
      num_iters=arg.iters,
    )
  )
  return c


def get_sweep(arg=None):
  del arg
  return grids.product(
    grids.axis('clustering.space', clustering.SPACES),
    grids.axis('clustering.k', KS),
    grids.axis('seed', range(3)),
  )
