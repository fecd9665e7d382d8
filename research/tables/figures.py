"""Figures of a sweep's rows: quality against cost, boundary F1 per upsampler, and the
drawing helpers the qualitative figures share."""

import os

from matplotlib import colormaps
from matplotlib import colors
from matplotlib.figure import Figure
import numpy as np

from research.tables import text


def upsampler_name(row: text.Row) -> str:
  return str(row.label.get('model.upsampler', '(fixed)'))


def series_name(row: text.Row) -> str:
  """What a row is besides its upsampler (its architecture, typically): one line per series."""
  rest = [str(v) for k, v in row.label.items() if k != 'model.upsampler']
  return ','.join(rest) or 'all'


def save_figure(fig: Figure, path: str):
  """PNG via a temporary file and a rename, like the tables."""
  tmp = f'{path}.{os.getpid()}.tmp'
  fig.savefig(tmp, format='png', dpi=150, bbox_inches='tight')
  os.replace(tmp, path)


def plot_quality_vs_cost(rows: list[text.Row], split: str, path: str):
  """mIoU against forward GFLOPs, one marker and line style per series."""
  miou, gflops = text.COLUMNS[0], text.COLUMNS[5]
  fig = Figure(figsize=(6, 4.5))
  ax = fig.add_subplot()
  for i, series in enumerate(dict.fromkeys(series_name(r) for r in rows if r.finals)):
    members = [r for r in rows if r.finals and series_name(r) == series]
    x = [text.summarize(r.values(gflops, split))[0] for r in members]
    y, yerr = zip(*[text.summarize(r.values(miou, split))[:2] for r in members])
    ax.errorbar(x, y, yerr=np.nan_to_num(yerr), fmt='osD^v<>'[i % 7], capsize=3, label=series)
    for r, xi, yi in zip(members, x, y):
      ax.annotate(
        upsampler_name(r), (xi, yi), fontsize=7, xytext=(3, 3), textcoords='offset points'
      )
  ax.set_xlabel('forward GFLOPs per image')
  ax.set_ylabel(f'{split} mIoU (%)')
  ax.set_title('Quality against cost (mean ± std over seeds)')
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3)
  save_figure(fig, path)


def plot_boundary_f1(rows: list[text.Row], split: str, path: str):
  """Boundary F1 per upsampler, one bar per series."""
  column = text.COLUMNS[2]
  done = [r for r in rows if r.finals]
  upsamplers = list(dict.fromkeys(upsampler_name(r) for r in done))
  series = list(dict.fromkeys(series_name(r) for r in done))
  width = 0.8 / max(len(series), 1)
  fig = Figure(figsize=(max(6, 0.8 * len(upsamplers) * max(1, len(series) / 2)), 4))
  ax = fig.add_subplot()
  for i, name in enumerate(series):
    stats = {
      upsampler_name(r): text.summarize(r.values(column, split))[:2]
      for r in done
      if series_name(r) == name
    }
    xs = [j for j, u in enumerate(upsamplers) if u in stats]
    ax.bar(
      [x + (i - (len(series) - 1) / 2) * width for x in xs],
      [stats[upsamplers[x]][0] for x in xs],
      width,
      yerr=[np.nan_to_num(stats[upsamplers[x]][1]) for x in xs],
      capsize=2,
      label=name,
    )
  ax.set_xticks(range(len(upsamplers)), upsamplers, rotation=30, ha='right')
  ax.set_ylabel(f'{split} boundary F1 (%)')
  ax.set_title('Boundary F1 per upsampler (mean ± std over seeds)')
  ax.legend(fontsize=8)
  ax.grid(axis='y', alpha=0.3)
  save_figure(fig, path)


def high_pass(p: np.ndarray) -> np.ndarray:
  """p minus its [1, 2, 1]/4 ⊗ [1, 2, 1]/4 blur: gain sin²(ω/2) per axis, 1 at Nyquist,
  where a stride-2 checkerboard lives, and near 0 for smooth content."""
  q = np.pad(p, 1, mode='edge')
  q = (q[:-2] + 2 * q[1:-1] + q[2:]) / 4
  q = (q[:, :-2] + 2 * q[:, 1:-1] + q[:, 2:]) / 4
  return p - q


def label_image(ax, labels, num_classes):
  """A label map in the tab10 colours of every figure here; the ignore label white."""
  cmap = colors.ListedColormap(colormaps['tab10'].colors[:num_classes]).with_extremes(
    bad='white'
  )  # the ignore label
  ax.imshow(
    np.ma.masked_outside(labels, 0, num_classes - 1),
    cmap=cmap,
    vmin=-0.5,
    vmax=num_classes - 0.5,
    interpolation='nearest',
  )


def plot_predictions(images, labels, probs: dict, title: str, path: str):
  """Rows: images; columns: input, ground truth, each model's argmax prediction."""
  k = next(iter(probs.values())).shape[-1]
  cols = 2 + len(probs)
  fig = Figure(figsize=(1.4 * cols, 1.4 * len(images) + 0.4))
  axes = fig.subplots(len(images), cols, squeeze=False)
  for i in range(len(images)):
    axes[i, 0].imshow(np.clip(images[i], 0, 1), interpolation='nearest')
    label_image(axes[i, 1], labels[i], k)
    for j, p in enumerate(probs.values()):
      label_image(axes[i, 2 + j], np.argmax(p[i], axis=-1), k)
  for j, name in enumerate(['input', 'ground truth', *probs]):
    axes[0, j].set_title(name, fontsize=7)
  for ax in axes.flat:
    ax.set_axis_off()
  fig.suptitle(title, fontsize=9)
  save_figure(fig, path)


def plot_checkerboard(image, label, probs: dict, scores: dict, path: str):
  """The probability map of one class and its high-pass part, per model, on one image.

  The high-pass panels share one colour range, the 99.5th percentile of |high-pass| over
  all models: a faint checkerboard shows at full contrast, and the models compare on one
  scale.
  """
  k = next(iter(probs.values())).shape[-1]
  present = np.bincount(label[(label > 0) & (label < k)].ravel(), minlength=k)
  cls = int(np.argmax(present)) if present.any() else 0  # the most frequent foreground class
  maps = {name: p[..., cls] for name, p in probs.items()}
  passes = {name: high_pass(m) for name, m in maps.items()}
  vmax = max(
    float(np.percentile(np.abs(np.concatenate([h.ravel() for h in passes.values()])), 99.5)), 1e-6
  )
  fig = Figure(figsize=(7, 2.4 * len(maps)))
  axes = fig.subplots(len(maps), 3, squeeze=False)
  for i, name in enumerate(maps):
    axes[i, 0].imshow(np.clip(image, 0, 1), interpolation='nearest')
    axes[i, 0].set_title(name, fontsize=8)
    axes[i, 1].imshow(maps[name], vmin=0, vmax=1, cmap='viridis', interpolation='nearest')
    axes[i, 1].set_title(f'p(class {cls})', fontsize=8)
    axes[i, 2].imshow(passes[name], vmin=-vmax, vmax=vmax, cmap='RdBu_r', interpolation='nearest')
    axes[i, 2].set_title(f'high-pass, ±{vmax:.2g}; score {100 * scores[name]:.2f}%', fontsize=8)
  for ax in axes.flat:
    ax.set_axis_off()
  save_figure(fig, path)
