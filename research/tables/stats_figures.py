"""Figures for issue 18: paired differences to a reference decoder, trimap IoU and shift curves.

Plain inputs (dicts keyed by decoder name, arrays), so the sweep tables can call them with
whatever they aggregate. Figures are matplotlib `Figure`s (no pyplot, no display backend),
written as PNG through a temporary file and a rename (figures.save_figure); each function
also returns its Figure.
"""

import dataclasses

from matplotlib.figure import Figure
import numpy as np

from research import decoder_metrics
from research.sweep import naming
from research.tables import figures
from research.tables import text


def _save(fig: Figure, path: str) -> Figure:
  figures.save_figure(fig, path)
  return fig


def plot_differences(
  differences: dict, reference: str, metric: str, path: str, scale: float = 100
) -> Figure:
  """Dot-and-whisker (forest) plot of each decoder's difference to `reference`.

  differences: decoder -> stats.PairedDifference (or a dict with its 'difference', 'low',
  'high', 'excludes_zero'), drawn top to bottom in dict order, times `scale` (100: points of
  %). Filled dots: the interval excludes zero; hollow: it does not. A line marks zero.
  """
  if not differences:
    raise ValueError('differences must name at least one decoder')
  rows = [
    dataclasses.asdict(d) if dataclasses.is_dataclass(d) else dict(d) for d in differences.values()
  ]
  names = list(differences)
  y = -np.arange(len(names))  # first decoder on top
  fig = Figure(figsize=(6, 1 + 0.4 * len(names)))
  ax = fig.add_subplot()
  ax.axvline(0, color='0.5', lw=1)
  for yi, row in zip(y, rows):
    diff, low, high = (scale * row[k] for k in ('difference', 'low', 'high'))
    ax.errorbar(
      diff,
      yi,
      xerr=[[max(diff - low, 0)], [max(high - diff, 0)]],
      fmt='o',
      color='C0',
      capsize=3,
      markerfacecolor='C0' if row['excludes_zero'] else 'white',
    )
  ax.set_yticks(y, names)
  level = rows[0].get('level', 0.95)
  ax.set_xlabel(f'{metric}: difference to {reference}' + (' (points)' if scale == 100 else ''))
  ax.set_title(
    f'Paired difference to {reference}, {100 * level:g}% hierarchical bootstrap '
    'interval\n(filled: interval excludes zero)',
    fontsize=9,
  )
  ax.grid(axis='x', alpha=0.3)
  return _save(fig, path)


def plot_difference_vs_cost(points: dict, reference: str, metric: str, path: str) -> Figure:
  """Each decoder's paired difference to `reference` (points of %, 95% interval) against
  its forward GFLOPs per image: what a decoder buys for what it costs.

  points: decoder -> (GFLOPs, stats.PairedDifference). Filled: the interval excludes zero.
  """
  if not points:
    raise ValueError('points must name at least one decoder')
  fig = Figure(figsize=(6, 4.5))
  ax = fig.add_subplot()
  ax.axhline(0, color='0.5', lw=1)
  for name, (gflops, d) in points.items():
    diff, low, high = 100 * d.difference, 100 * d.low, 100 * d.high
    ax.errorbar(
      gflops,
      diff,
      yerr=[[max(diff - low, 0)], [max(high - diff, 0)]],
      fmt='o',
      color='C0',
      capsize=3,
      markerfacecolor='C0' if d.excludes_zero else 'white',
    )
    ax.annotate(name, (gflops, diff), fontsize=7, xytext=(3, 3), textcoords='offset points')
  ax.set_xlabel('forward GFLOPs per image')
  ax.set_ylabel(f'{metric}: difference to {reference} (points)')
  ax.set_title(
    f'Gain against cost: paired difference to {reference}, 95% interval\n'
    '(filled: interval excludes zero)',
    fontsize=9,
  )
  ax.grid(alpha=0.3)
  return _save(fig, path)


def _curves(x, values, spread, xlabel, ylabel, title, path, log2_x):
  """One line per decoder through values[decoder] (float [len(x)]), optional error bars."""
  x = np.asarray(x, np.float64)
  if (
    not values
    or any(np.shape(v) != x.shape for v in values.values())
    or (spread is not None and any(np.shape(spread[k]) != x.shape for k in values))
  ):
    raise ValueError(
      f'values (and spread) must map each decoder to {len(x)} numbers, one per {xlabel}'
    )
  fig = Figure(figsize=(6, 4))
  ax = fig.add_subplot()
  for i, (name, v) in enumerate(values.items()):
    ax.errorbar(
      x,
      v,
      yerr=None if spread is None else spread[name],
      fmt='osD^v<>'[i % 7] + '-',
      capsize=2,
      label=name,
    )
  if log2_x:
    ax.set_xscale('log', base=2)
  ax.set_xticks(x, [f'{v:g}' for v in x])
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(title, fontsize=9)
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3)
  return _save(fig, path)


def plot_trimap(widths, iou: dict, path: str, spread: dict | None = None) -> Figure:
  """Trimap mIoU against band width w per decoder (log2 axis), e.g. in % with std over seeds.

  widths: [W]; iou, spread: decoder -> float [W] (spread None: no error bars).
  """
  return _curves(
    widths,
    iou,
    spread,
    'band width w (px from a ground-truth boundary)',
    'mIoU within the band',
    'Trimap IoU per decoder',
    path,
    log2_x=True,
  )


def plot_shift_consistency(
  shifts, agreement: dict, path: str, spread: dict | None = None
) -> Figure:
  """Shift consistency (agreement on the overlap) against the shift s per decoder.

  shifts: [S]; agreement, spread: decoder -> float [S] (spread None: no error bars).
  """
  return _curves(
    shifts,
    agreement,
    spread,
    'shift s (px, down and right)',
    'predicted labels that agree',
    'Shift consistency per decoder',
    path,
    log2_x=False,
  )


def _curve_means(members, split: str, fields) -> tuple[dict, dict]:
  """Per upsampler, the mean and std over seeds of each field: ({upsampler: [F]}, same)."""
  means, spreads = {}, {}
  for row in members:
    values = np.array([[f[split].get(k, np.nan) for k in fields] for f in row.finals], float)
    means[figures.upsampler_name(row)] = values.mean(0)
    spreads[figures.upsampler_name(row)] = (
      values.std(0, ddof=1) if len(values) > 1 else np.zeros(len(fields))
    )
  return means, spreads


def plot_curves(rows: list[text.Row], split: str, prefix: str) -> list[str]:
  """Per series, trimap mIoU against the band width and shift consistency against the shift
  (mean ± std over seeds), where the runs recorded them: PREFIX_{trimap,shift}_<series>.png."""
  written = []
  done = [r for r in rows if r.finals]
  for series in dict.fromkeys(figures.series_name(r) for r in done):
    members = [r for r in done if figures.series_name(r) == series]
    for kind, xs, fields, plot in [
      (
        'trimap',
        decoder_metrics.TRIMAP_WIDTHS,
        [f'trimap_miou_w{w}' for w in decoder_metrics.TRIMAP_WIDTHS],
        plot_trimap,
      ),
      (
        'shift',
        decoder_metrics.SHIFTS,
        [f'shift_consistency_s{s}' for s in decoder_metrics.SHIFTS],
        plot_shift_consistency,
      ),
    ]:
      if not all(fields[0] in f[split] for r in members for f in r.finals):
        continue
      means, spreads = _curve_means(members, split, fields)
      path = f'{prefix}_{kind}_{naming.safe(series)}.png'
      plot(xs, means, path, spread=spreads)
      written.append(path)
  return written
