"""Figures that need the models or the data: predictions of trained runs loaded from their
checkpoints, the checkerboard made visible, and the clustering baseline's picture."""

import os

import jax
from matplotlib.figure import Figure
import numpy as np

from research import clustering
from research import data
from research import inference
from research import metrics
from research import sweep
from research.tables import figures
from research.tables import text


def _eval_images(config, split: str, num_images: int):
  """The first `num_images` images and labels of a split, the same for every model."""
  split_name = config.data.eval_split if split == 'val' else config.data.test_split
  batch = next(iter(data.eval_batches(config.data, split_name, global_batch_size=num_images)))
  valid = batch['valid']
  return batch['image'][valid], batch['label'][valid]


def qualitative_figures(
  rows: list[text.Row], split: str, prefix: str, num_images: int, echo=print
) -> list[str]:
  """Per series: predictions of each upsampler on the same images, and where it has both
  transpose_conv and resize_conv, the checkerboard figure. Needs the runs' checkpoints."""
  written = []
  for series in dict.fromkeys(figures.series_name(r) for r in rows if r.finals):
    members = [r for r in rows if r.finals and figures.series_name(r) == series]
    workdirs = {}  # upsampler -> its first finished seed with checkpoints (archived: none)
    for r in members:
      with_checkpoints = [w for w in r.done if os.path.isdir(os.path.join(w, 'checkpoints'))]
      if with_checkpoints:
        workdirs[figures.upsampler_name(r)] = with_checkpoints[0]
    if not workdirs:
      echo(f'No checkpoints in the finished cells of {series}: no qualitative figure.')
      continue
    probs, images = {}, None
    for upsampler, workdir in workdirs.items():
      try:
        model, params, config = inference.load(workdir)
      except Exception as e:  # any unreadable checkpoint: this figure goes without it
        echo(
          f'Warning: leaving {upsampler} out of the qualitative figure of {series}: its '
          f'checkpoint in {workdir} could not be read ({type(e).__name__}: '
          f'{" ".join(str(e).split())[:160]}).'
        )
        continue
      if images is None:
        images, labels = _eval_images(config, split, num_images)
      probs[upsampler] = np.asarray(inference.predict(model, params, images))
    if not probs:
      continue
    path = f'{prefix}_qualitative_{sweep.safe(series)}.png'
    figures.plot_predictions(
      images, labels, probs, f'{series}: {split} images, one seed each', path
    )
    written.append(path)
    pair = ('transpose_conv', 'resize_conv')
    if all(u in probs for u in pair):
      chosen = {u: probs[u][:1] for u in pair}
      scores = {u: float(metrics.checkerboard_score(p)[0]) for u, p in chosen.items()}
      path = f'{prefix}_checkerboard_{sweep.safe(series)}.png'
      figures.plot_checkerboard(
        images[0], labels[0], {u: p[0] for u, p in chosen.items()}, scores, path
      )
      written.append(path)
  return written


def plot_clustering_examples(
  data_config,
  path: str,
  num_images: int = 4,
  seed: int = 0,
  quantise=('colour', 8),
  superpixels=('colour_position', 64, 30.0),
):
  """The classic pictures, one test image per row: input, the image quantised to its k-means
  colours, SLIC-like superpixel boundaries over the input, and the ground truth."""
  batch = next(
    iter(data.eval_batches(data_config, data_config.test_split, global_batch_size=num_images))
  )
  images, labels = batch['image'][batch['valid']], batch['label'][batch['valid']]
  key = jax.random.key(seed)
  quantised = np.asarray(clustering.segment(images, quantise[1], quantise[0], key)['quantised'])
  space, k, m = superpixels
  ids = np.asarray(clustering.segment(images, k, space, key, compactness=m)['cluster_ids'])
  edges = metrics.boundary_map(ids, np.ones(ids.shape, bool))
  overlay = images.copy()
  overlay[edges] = (1.0, 0.0, 0.0)
  num_classes = data.dataset_info(data_config).num_classes
  titles = [
    'input',
    f'quantised\n{quantise[0]}, k={quantise[1]}',
    f'superpixel boundaries\n{space}, k={k}, m={m:g}',
    'ground truth',
  ]
  fig = Figure(figsize=(8, 2 * len(images)))
  axes = fig.subplots(len(images), 4, squeeze=False)
  for row, (image, q, o, label) in enumerate(zip(images, quantised, overlay, labels)):
    for col, (picture, title) in enumerate(zip([image, q, o, None], titles)):
      ax = axes[row, col]
      if picture is None:
        figures.label_image(ax, label, num_classes)
      else:
        ax.imshow(np.clip(picture, 0, 1), interpolation='nearest')
      ax.set_xticks([])
      ax.set_yticks([])
      if row == 0:
        ax.set_title(title, fontsize=8)
  figures.save_figure(fig, path)
