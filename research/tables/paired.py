"""Each decoder's difference to a reference decoder, paired by seed and by test image.

A row is compared with the row whose overrides are the same but for its upsampler (and its
upsampler options), which is the reference decoder: same architecture, data, schedule and
seeds, so that seed s of both saw the same initialisation seed and data order. Only the seeds
both have finished count. Intervals: research.stats' hierarchical bootstrap (seeds, then test
images within a seed; 2000 resamples; percentile 95% interval) over the per-image values each
run keeps in per_image_<split>.npz (video runs: and per clip, in per_clip_<split>.npz);
metrics that no sum over images gives (mask AP) are recomputed on each resample from how
often it drew each image (stats.weighted_difference). A difference is marked where its
interval excludes zero;
each table says the smallest difference its design could detect (80% power).
"""

import functools
import json
import os
from typing import Callable, NamedTuple

import ml_collections
import numpy as np

from research import instance_metrics
from research import panoptic_metrics
from research import stats
from research.data import catalog
from research.tables import stats_figures
from research.tables import text

DECODER_KEY = 'model.upsampler'


class Metric(NamedTuple):
  title: str
  needs: str  # the per-image array it reads
  # per-image arrays [S, N, ...] of one run set -> (confusions [S, N, K, K], None) for IoU
  # metrics, (statistics [S, N, F], None) for `summed` metrics, or (scores [S, N], weights
  # [S, N] | None) for per-image scores; None for `resampled` metrics.
  values: Callable | None
  iou: bool = False
  thin: bool = False  # IoU over the dataset's thin classes only
  # A metric of the statistics summed over images ([..., F] -> [...]), its argument the
  # dataset's thing classes (PQ over things), or None.
  summed: Callable | None = None
  things: bool = False  # needs the dataset's thing classes (left out where it has none)
  # A split metric that no sum over images gives (COCO AP ranks the split's detections):
  # (one run's per-image arrays [N, ...], weights [M, N]) -> [M], the metric with image n
  # counted weights[m, n] times (research.stats.weighted_difference), or None.
  resampled: Callable | None = None


def _recall(a):
  totals = a['small_totals'].sum(-1)
  return np.divide(
    a['small_hits'].sum(-1), totals, out=np.full(totals.shape, np.nan), where=totals > 0
  ), totals


def _pq_statistics(a):  # [S, N, 4 * K]: tp, fp, fn, iou_sum of each class
  stacked = np.stack([a[f'pq_{k}'] for k in ('tp', 'fp', 'fn', 'iou_sum')], -2)
  return stacked.reshape(*stacked.shape[:2], -1), None


def _weighted(name):
  """Per-image scores and, where the run keeps them, their weights (an instance run's image
  means over its instances, weighted by how many: the split's mean over instances)."""
  return lambda a: (a[name], a.get(f'{name}_weight'))


def _flicker(a):
  changed, stable = a['clip_changed'], a['clip_stable']
  return np.divide(changed, stable, out=np.full(stable.shape, np.nan), where=stable > 0), stable


METRICS = (
  Metric('mIoU', 'confusion', lambda a: (a['confusion'], None), iou=True),
  Metric('thin IoU', 'confusion', lambda a: (a['confusion'], None), iou=True, thin=True),
  Metric('trimap 2px', 'trimap', lambda a: (a['trimap'][:, :, 1], None), iou=True),
  Metric('trimap 4px', 'trimap', lambda a: (a['trimap'][:, :, 2], None), iou=True),
  Metric('boundary F1', 'boundary_f1', _weighted('boundary_f1')),
  Metric('small-object recall', 'small_hits', _recall),
  Metric(
    'shift consistency', 'shift_consistency', lambda a: (a['shift_consistency'].mean(-1), None)
  ),
  Metric('checkerboard (logits)', 'checkerboard_logits', _weighted('checkerboard_logits')),
  # The video task's clips (per_clip_<split>.npz; research.video_run), paired clip by clip:
  # mIoU of every frame, and flicker as changed / stable pixel pairs summed over clips.
  Metric('clip mIoU', 'clip_confusion', lambda a: (a['clip_confusion'].sum(2), None), iou=True),
  Metric('flicker', 'clip_changed', _flicker),
  # The panoptic task's PQ (research.panoptic_run), from each image's TP, FP, FN and IoU sums.
  Metric('PQ', 'pq_tp', _pq_statistics, summed=lambda things: panoptic_metrics.panoptic_quality),
  Metric(
    'PQ things',
    'pq_tp',
    _pq_statistics,
    summed=lambda things: functools.partial(panoptic_metrics.panoptic_quality, classes=things),
    things=True,
  ),
  # The instance task's masks (research.instance_run): mean IoU over instances, and COCO
  # mask AP recomputed on each resample from its images' detections.
  Metric('mask IoU', 'mask_iou', _weighted('mask_iou')),
  Metric('mask AP', 'det_matched', None, resampled=instance_metrics.weighted_mask_ap),
  Metric(
    'checkerboard (offsets)',
    'checkerboard_offsets',
    lambda a: (a['checkerboard_offsets'], None),
  ),
  Metric(
    'checkerboard (heatmap)',
    'checkerboard_heatmap',
    lambda a: (a['checkerboard_heatmap'], None),
  ),
)


def _clip_file(workdir: str, split: str) -> str | None:
  """per_clip_<video split>.npz of a video run (research.video_run) for the test table."""
  with open(os.path.join(workdir, 'config.json')) as f:
    video = json.load(f).get('video')
  if video is None or split != 'test':
    return None
  return os.path.join(workdir, f'per_clip_{video["split"]}.npz')


def _split_file(workdir: str, split: str, init: bool = False) -> str:
  """per_image_<data split>.npz of a run, for the table's split ('val' or 'test'); with
  `init`, per_image_init_<data split>.npz (the initial parameters' values)."""
  with open(os.path.join(workdir, 'config.json')) as f:
    data = json.load(f)['data']
  name = data['eval_split'] if split == 'val' else data['test_split']
  return os.path.join(workdir, f'per_image_{"init_" if init else ""}{name}.npz')


def thing_classes_of(row) -> tuple:
  """The thing classes of a panoptic row (its first finished run's config.panoptic), or ()."""
  for workdir in row.done:
    with open(os.path.join(workdir, 'config.json')) as f:
      return tuple(json.load(f).get('panoptic', {}).get('thing_classes', ()))
  return ()


def thin_classes_of(row) -> tuple:
  """The thin classes of a row's dataset (from its first finished run's config)."""
  for workdir in row.done:
    with open(os.path.join(workdir, 'config.json')) as f:
      data_config = json.load(f)['data']
    return catalog.resolve(ml_collections.ConfigDict(data_config)).thin_classes
  return ()


def reference_of(rows: list, row, reference: str):
  """The row that differs from `row` only in its decoder, being `reference`; None if none."""

  def decoder_free(label):
    return {
      k: v
      for k, v in label.items()
      if k != DECODER_KEY and not k.startswith('model.upsampler_options')
    }

  def options(label):  # a grid with an options axis labels the default ones {}
    return {
      k: v
      for k, v in label.items()
      if k.startswith('model.upsampler_options') and v not in ({}, None)
    }

  for other in rows:
    if (
      other.label.get(DECODER_KEY) == reference
      and not options(other.label)
      and decoder_free(other.label) == decoder_free(row.label)
    ):
      return other
  return None


def _read(path: str, loaded_files: dict) -> dict:
  """A run's per-image arrays, read once."""
  if path not in loaded_files:
    with np.load(path) as arrays:
      loaded_files[path] = dict(arrays)
  return loaded_files[path]


def paired_arrays(row, ref, split: str, loaded_files: dict, init: bool = False):
  """The seeds both rows finished, and their per-image arrays stacked [S, N, ...] (None where
  a run kept no per-image values, e.g. one trained before they were kept). `loaded_files`
  keeps what was read, so the reference's runs are read once, not once per row."""
  done = lambda r: {s: w for s, w, st in zip(r.seeds, r.workdirs, r.statuses) if st == 'done'}
  mine, theirs = done(row), done(ref)
  seeds = sorted(set(mine) & set(theirs), key=str)
  files = [(_split_file(mine[s], split, init), _split_file(theirs[s], split, init)) for s in seeds]
  if not seeds or not all(os.path.exists(a) and os.path.exists(b) for a, b in files):
    return seeds, None
  loaded = [(_read(a, loaded_files), _read(b, loaded_files)) for a, b in files]
  clips = [(_clip_file(mine[s], split), _clip_file(theirs[s], split)) for s in seeds]
  if not init and all(a and b and os.path.exists(a) and os.path.exists(b) for a, b in clips):
    loaded = [
      tuple(
        {**arrays, **{f'clip_{k}': v for k, v in _read(clip, loaded_files).items()}}
        for arrays, clip in zip(pair, clip_pair)
      )
      for pair, clip_pair in zip(loaded, clips)
    ]
  stack = lambda side: {k: np.stack([pair[side][k] for pair in loaded]) for k in loaded[0][side]}
  return seeds, (stack(0), stack(1))


def differences(
  rows: list, split: str, reference: str, thin_classes, num_resamples: int = stats.NUM_RESAMPLES
) -> list[tuple]:
  """[(row, {metric title: stats.PairedDifference})] for every row with a reference row and
  paired per-image values (the reference row itself left out)."""
  out, loaded_files = [], {}
  for row in rows:
    ref = reference_of(rows, row, reference)
    if ref is None or ref is row:
      continue
    _, arrays = paired_arrays(row, ref, split, loaded_files)
    if arrays is None:
      continue
    mine, theirs = arrays
    things = thing_classes_of(row)
    result = {
      metric.title: metric_difference(metric, mine, theirs, thin_classes, num_resamples, things)
      for metric in METRICS
      if metric.needs in mine
      and metric.needs in theirs
      and (len(thin_classes) or not metric.thin)
      and (len(things) or not metric.things)
    }
    out.append((row, result))
  return out


def metric_difference(
  metric: Metric,
  mine: dict,
  theirs: dict,
  thin_classes,
  num_resamples=stats.NUM_RESAMPLES,
  thing_classes=(),
) -> stats.PairedDifference:
  """Candidate (`mine`) minus reference (`theirs`) on one metric, paired [S, N] arrays."""
  if metric.resampled is not None:
    runs = (theirs, mine)
    num_seeds, num_images = mine[metric.needs].shape[:2]
    return stats.weighted_difference(
      lambda side, s, weights: metric.resampled({k: v[s] for k, v in runs[side].items()}, weights),
      num_seeds,
      num_images,
      num_resamples,
    )
  (cand, cand_w), (base, base_w) = metric.values(mine), metric.values(theirs)
  if metric.summed is not None:
    pq = metric.summed(thing_classes)
    return stats.sums_difference(
      base, cand, lambda sums: pq(sums.reshape(*sums.shape[:-1], 4, -1)), num_resamples
    )
  if metric.iou:
    classes = list(thin_classes) if metric.thin else None
    return stats.confusion_difference(base, cand, classes=classes, num_resamples=num_resamples)
  return stats.score_difference(base, cand, base_w, cand_w, num_resamples=num_resamples)


def to_markdown(found: list[tuple], reference: str, split: str) -> str:
  """The differences in points (%): `+d [low, high]`, bold where the interval excludes zero;
  and per metric the largest smallest-detectable difference over the rows."""
  if not found:
    return (
      f'No paired differences to `{reference}`: no row has a reference row with '
      'per-image values on both sides.\n'
    )
  titles = list(dict.fromkeys(t for _, result in found for t in result))
  labels = [', '.join(f'{k}={v}' for k, v in row.label.items()) for row, _ in found]
  lines = [
    f'## Paired differences to `{reference}` ({split} split, points of %)',
    '',
    'Candidate minus reference, mean over the seeds both finished; 95% interval of a '
    'hierarchical bootstrap (seeds, then test images within each seed; '
    f'{next(iter(found[0][1].values())).num_resamples} resamples, percentile). Bold: the '
    'interval excludes zero. '
    'n: paired seeds × test images (the clip metrics of video runs resample clips).',
    '',
    '| configuration | n | ' + ' | '.join(titles) + ' |',
    '|---|---|' + '---|' * len(titles),
  ]
  for label, (_, result) in zip(labels, found):
    first = next(iter(result.values()))
    cells = []
    for title in titles:
      d = result.get(title)
      if d is None:
        cells.append(text.MISSING)
        continue
      cell = f'{100 * d.difference:+.1f} [{100 * d.low:+.1f}, {100 * d.high:+.1f}]'
      cells.append(f'**{cell}**' if d.excludes_zero else cell)
    lines.append(f'| {label} | {first.num_seeds}×{first.num_images} | ' + ' | '.join(cells) + ' |')
  detectable = {t: max(r[t].detectable for _, r in found if t in r) for t in titles}
  lines += [
    '',
    'Smallest difference this design could detect (80% power, two-sided α = 0.05; '
    '2.8 bootstrap standard errors, the largest over the rows): '
    + ', '.join(f'{t} {100 * d:.1f}' for t, d in detectable.items())
    + ' points.',
    '',
  ]
  return '\n'.join(lines)


def plot(found: list[tuple], reference: str, prefix: str) -> list[str]:
  """One forest plot per metric: PREFIX_<metric>.png."""
  written = []
  titles = list(dict.fromkeys(t for _, result in found for t in result))
  for title in titles:
    by_row = {
      ', '.join(str(v) for v in row.label.values()): result[title]
      for row, result in found
      if title in result
    }
    stem = title.replace(' ', '_').replace('-', '_').replace('(', '').replace(')', '')
    stats_figures.plot_differences(by_row, reference, title, f'{prefix}_{stem}.png')
    written.append(f'{prefix}_{stem}.png')
  costs = {
    ', '.join(str(v) for v in row.label.values()): (
      row.finals[0]['cost']['gflops_per_image'],
      result['mIoU'],
    )
    for row, result in found
    if 'mIoU' in result and row.finals and 'gflops_per_image' in row.finals[0].get('cost', {})
  }
  if costs:
    stats_figures.plot_difference_vs_cost(costs, reference, 'mIoU', f'{prefix}_mIoU_vs_gflops.png')
    written.append(f'{prefix}_mIoU_vs_gflops.png')
  return written
