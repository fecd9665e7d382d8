"""Tables and figures of a sweep: one row per configuration, mean ± std over its seeds.

Reads a sweep root: ROOT/cells.json (written by launch.sweep) for the cells the sweep
should have, and each cell's final.json for those that finished. A cell that has not
finished is never dropped: its row counts it (n = seeds done / seeds in the sweep) and
the table lists it by name and status. Figures: mIoU against GFLOPs, boundary F1 per
upsampler, and from the checkpoints, predictions of every upsampler on the same images
and the checkerboard of transpose_conv against resize_conv made visible.
"""
import csv
import dataclasses
import io
import json
import os
import subprocess

from matplotlib import colormaps
from matplotlib import colors
from matplotlib.figure import Figure
import numpy as np

from research import sweep
from research import workdir as workdir_lib

SEED_KEY = 'seed'  # the override that rows are aggregated over
SPLITS = ('val', 'test')  # the evaluation sections of final.json
MISSING = '—'


@dataclasses.dataclass(frozen=True)
class Column:
  """One metric: where it is in final.json, how it is shown, and which way is better."""
  title: str
  tex: str
  section: str  # 'split' (the split shown) or 'cost'
  field: str  # its name in final.json, and in the CSV
  scale: float
  decimals: int
  better: str  # 'max' or 'min'
  spread: bool = True  # False: a function of the config, the same for every seed


COLUMNS = (
    Column('mIoU (%)', r'mIoU (\%)', 'split', 'miou', 100, 1, 'max'),
    Column('pixel acc. (%)', r'pixel acc.\ (\%)', 'split', 'pixel_accuracy', 100, 1, 'max'),
    Column('boundary F1 (%)', r'boundary F1 (\%)', 'split', 'boundary_f1', 100, 1, 'max'),
    Column('checkerboard (%)', r'checkerboard (\%)', 'split', 'checkerboard', 100, 2, 'min'),
    Column('params (k)', r'params (k)', 'cost', 'params', 1e-3, 1, 'min', spread=False),
    Column('GFLOPs', r'GFLOPs', 'cost', 'gflops_per_image', 1, 3, 'min', spread=False),
    Column('ms/step', r'ms/step', 'cost', 'step_seconds', 1e3, 1, 'min'),
    Column('images/s', r'images/s', 'cost', 'images_per_second', 1, 0, 'max'),
)


# Shown only when some finished cell has them (the clustering baseline's superpixel scores;
# forward time and peak memory, recorded by runs since commit 8198877).
OPTIONAL_COLUMNS = (
    Column('boundary recall (%)', r'boundary recall (\%)', 'split', 'boundary_recall', 100, 1,
           'max'),
    Column('under-seg. error (%)', r'under-seg.\ error (\%)', 'split', 'undersegmentation_error',
           100, 1, 'min'),
    Column('ms/image (fwd)', r'ms/image (fwd)', 'cost', 'forward_ms_per_image', 1, 2, 'min'),
    Column('peak memory (MB)', r'peak memory (MB)', 'cost', 'peak_memory_mb', 1, 0, 'min'),
)


@dataclasses.dataclass
class Row:
  """A configuration: the cells of its seeds, their status, and the finished ones' results."""
  label: dict  # its overrides except the seed (dotted key -> value)
  workdirs: list = dataclasses.field(default_factory=list)
  statuses: list = dataclasses.field(default_factory=list)
  finals: list = dataclasses.field(default_factory=list)  # final.json of the done cells

  @property
  def done(self) -> list[str]:
    return [w for w, s in zip(self.workdirs, self.statuses) if s == 'done']

  def values(self, column: Column, split: str) -> np.ndarray:
    """The column's value for each done seed, scaled for display (NaN where absent)."""
    section = split if column.section == 'split' else column.section
    return np.array([np.nan if f.get(section, {}).get(column.field) is None
                     else float(f[section][column.field]) * column.scale for f in self.finals])


def read_sweep(root: str) -> tuple[dict, list[Row]]:
  """The sweep's index and its rows, in the order of the grid."""
  index = sweep.read_index(root)
  rows = {}
  for cell in index['cells']:
    label = {k: v for k, v in cell['overrides'].items() if k != SEED_KEY}
    row = rows.setdefault(json.dumps(label, sort_keys=True), Row(label))
    workdir = os.path.join(root, cell['name'])
    row.workdirs.append(workdir)
    row.statuses.append(sweep.status(workdir))
    if row.statuses[-1] == 'done':
      with open(os.path.join(workdir, 'final.json')) as f:
        row.finals.append(json.load(f))
  return index, list(rows.values())


def columns(rows: list[Row]) -> tuple[Column, ...]:
  """The columns some finished cell reports (COLUMNS, all of them while none has finished),
  then the optional ones that some finished cell reports."""
  finals = [f for r in rows for f in r.finals]

  def reported(column):
    sections = SPLITS if column.section == 'split' else (column.section,)
    return any(f.get(s, {}).get(column.field) is not None for f in finals for s in sections)

  return (tuple(c for c in COLUMNS if not finals or reported(c))
          + tuple(c for c in OPTIONAL_COLUMNS if reported(c)))


def summarize(values: np.ndarray) -> tuple[float, float, int]:
  """(mean, sample std with n - 1, n); std is NaN below two values. A NaN value (a metric
  a run could not measure) makes the mean NaN rather than being left out."""
  n = len(values)
  if n == 0:
    return np.nan, np.nan, 0
  std = float(np.std(values, ddof=1)) if n > 1 else np.nan
  return float(np.mean(values)), std, n


def best_means(rows: list[Row], split: str) -> dict[str, float]:
  """Per column, the best mean at display precision (ties are all best)."""
  best = {}
  for column in columns(rows):
    means = [round(summarize(r.values(column, split))[0], column.decimals) for r in rows]
    means = [m for m in means if np.isfinite(m)]
    if means:
      best[column.field] = max(means) if column.better == 'max' else min(means)
  return best


def _cells(rows: list[Row], split: str, bold, pm: str):
  """Display strings of every metric of every row, with `bold` applied to the best."""
  best = best_means(rows, split)
  table = []
  for row in rows:
    texts = []
    for column in columns(rows):
      values = row.values(column, split)
      mean, std, n = summarize(values)
      if n == 0 or np.isnan(values).all():  # not finished, or a metric this run has not
        texts.append(MISSING)
        continue
      text = f'{mean:.{column.decimals}f}'
      if column.spread and n > 1:
        text += f'{pm}{std:.{column.decimals}f}'
      texts.append(bold(text) if round(mean, column.decimals) == best.get(column.field) else text)
    table.append(texts)
  return table


def _label_texts(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
  keys = list(dict.fromkeys(k for r in rows for k in r.label))
  short = sweep.short_keys(keys)
  return ([short[k] for k in keys] or ['config'],
          [[str(r.label.get(k, MISSING)) for k in keys] or ['(all)'] for r in rows])


def _unfinished(rows: list[Row]) -> list[str]:
  return [f'{os.path.basename(w)} ({s})' for r in rows for w, s in zip(r.workdirs, r.statuses)
          if s != 'done']


def to_markdown(rows: list[Row], split: str, header: str) -> str:
  """GitHub markdown: `header`, the table, then the cells that have not finished."""
  names, labels = _label_texts(rows)
  shown = columns(rows)
  titles = names + ['n'] + [c.title for c in shown]
  lines = [header.rstrip('\n'), '',
           '| ' + ' | '.join(titles) + ' |',
           '|' + '|'.join([':--'] * len(names) + ['--:'] * (1 + len(shown))) + '|']
  for row, label, texts in zip(rows, labels, _cells(rows, split, lambda t: f'**{t}**', ' ± ')):
    n = f'{len(row.finals)}/{len(row.workdirs)}'
    lines.append('| ' + ' | '.join(label + [n] + texts) + ' |')
  unfinished = _unfinished(rows)
  total = sum(len(r.workdirs) for r in rows)
  lines += ['', f'Not finished: {len(unfinished)} of {total} cells'
            + (': ' + ', '.join(unfinished) + '.' if unfinished else '.')]
  return '\n'.join(lines) + '\n'


def _tex_escape(text: str) -> str:
  for char in '\\&%$#_{}':
    text = text.replace(char, '\\' + char)
  return text.replace(MISSING, '--')


def to_latex(rows: list[Row], split: str, header: str) -> str:
  """A booktabs tabular; `header` goes in as % comments."""
  names, labels = _label_texts(rows)
  shown = columns(rows)
  lines = [f'% {line}' for line in header.splitlines()]
  lines += [r'\begin{tabular}{' + 'l' * len(names) + 'r' * (1 + len(shown)) + '}', r'\toprule',
            ' & '.join([_tex_escape(n) for n in names] + ['$n$'] + [c.tex for c in shown])
            + r' \\', r'\midrule']
  cells = _cells(rows, split, lambda t: r'\textbf{' + t + '}', r' $\pm$ ')
  for row, label, texts in zip(rows, labels, cells):
    n = f'{len(row.finals)}/{len(row.workdirs)}'
    lines.append(' & '.join([_tex_escape(t) for t in label] + [n]
                            + [t.replace(MISSING, '--') for t in texts]) + r' \\')
  lines += [r'\bottomrule', r'\end{tabular}']
  return '\n'.join(lines) + '\n'


def to_csv(rows: list[Row], split: str) -> str:
  """Machine-readable: full dotted keys, and each metric's mean and std in final.json's
  units (fractions, seconds); empty where undefined."""
  keys = list(dict.fromkeys(k for r in rows for k in r.label))
  out = io.StringIO()
  writer = csv.writer(out, lineterminator='\n')
  writer.writerow(keys + ['seeds_done', 'seeds_total']
                  + [f'{c.field}_{s}' for c in columns(rows) for s in ('mean', 'std')])
  for row in rows:
    stats = []
    for column in columns(rows):
      mean, std, _ = summarize(row.values(column, split) / column.scale)
      stats += ['' if np.isnan(v) else repr(v) for v in (mean, std)]
    writer.writerow([row.label.get(k, '') for k in keys] + [len(row.finals), len(row.workdirs)]
                    + stats)
  return out.getvalue()


def git_commit() -> str:
  """Short HEAD hash, '+dirty' if tracked files changed or untracked ones exist (results/
  and ignored paths aside)."""
  def git(*args):
    return subprocess.run(['git', *args], cwd=sweep.REPO, capture_output=True, text=True,
                          check=True).stdout.strip()

  try:
    head = git('rev-parse', '--short', 'HEAD')
    dirty = git('status', '--porcelain', '--', '.', ':(exclude)results')
  except (OSError, subprocess.CalledProcessError):
    return 'unknown (not a git checkout)'
  return head + ('+dirty' if dirty else '')


# Figures.


def _upsampler(row: Row) -> str:
  return str(row.label.get('model.upsampler', '(fixed)'))


def _series(row: Row) -> str:
  """What a row is besides its upsampler (its architecture, typically): one line per series."""
  rest = [str(v) for k, v in row.label.items() if k != 'model.upsampler']
  return ','.join(rest) or 'all'


def save_figure(fig: Figure, path: str):
  """PNG via a temporary file and a rename, like the tables."""
  tmp = f'{path}.{os.getpid()}.tmp'
  fig.savefig(tmp, format='png', dpi=150, bbox_inches='tight')
  os.replace(tmp, path)


def plot_quality_vs_cost(rows: list[Row], split: str, path: str):
  """mIoU against forward GFLOPs, one marker and line style per series."""
  miou, gflops = COLUMNS[0], COLUMNS[5]
  fig = Figure(figsize=(6, 4.5))
  ax = fig.add_subplot()
  for i, series in enumerate(dict.fromkeys(_series(r) for r in rows if r.finals)):
    members = [r for r in rows if r.finals and _series(r) == series]
    x = [summarize(r.values(gflops, split))[0] for r in members]
    y, yerr = zip(*[summarize(r.values(miou, split))[:2] for r in members])
    ax.errorbar(x, y, yerr=np.nan_to_num(yerr), fmt='osD^v<>'[i % 7], capsize=3, label=series)
    for r, xi, yi in zip(members, x, y):
      ax.annotate(_upsampler(r), (xi, yi), fontsize=7, xytext=(3, 3), textcoords='offset points')
  ax.set_xlabel('forward GFLOPs per image')
  ax.set_ylabel(f'{split} mIoU (%)')
  ax.set_title('Quality against cost (mean ± std over seeds)')
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3)
  save_figure(fig, path)


def plot_boundary_f1(rows: list[Row], split: str, path: str):
  """Boundary F1 per upsampler, one bar per series."""
  column = COLUMNS[2]
  done = [r for r in rows if r.finals]
  upsamplers = list(dict.fromkeys(_upsampler(r) for r in done))
  series = list(dict.fromkeys(_series(r) for r in done))
  width = 0.8 / max(len(series), 1)
  fig = Figure(figsize=(max(6, 0.8 * len(upsamplers) * max(1, len(series) / 2)), 4))
  ax = fig.add_subplot()
  for i, name in enumerate(series):
    stats = {_upsampler(r): summarize(r.values(column, split))[:2]
             for r in done if _series(r) == name}
    xs = [j for j, u in enumerate(upsamplers) if u in stats]
    ax.bar([x + (i - (len(series) - 1) / 2) * width for x in xs],
           [stats[upsamplers[x]][0] for x in xs], width,
           yerr=[np.nan_to_num(stats[upsamplers[x]][1]) for x in xs], capsize=2, label=name)
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
      bad='white')  # the ignore label
  ax.imshow(np.ma.masked_outside(labels, 0, num_classes - 1), cmap=cmap, vmin=-0.5,
            vmax=num_classes - 0.5, interpolation='nearest')


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
  vmax = max(float(np.percentile(np.abs(np.concatenate([h.ravel() for h in passes.values()])),
                                 99.5)), 1e-6)
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


def _eval_images(config, split: str, num_images: int):
  """The first `num_images` images and labels of a split, the same for every model."""
  from research import data  # pylint: disable=g-import-not-at-top
  split_name = config.data.eval_split if split == 'val' else config.data.test_split
  batch = next(iter(data.eval_batches(config.data, split_name, global_batch_size=num_images)))
  valid = batch['valid']
  return batch['image'][valid], batch['label'][valid]


def qualitative_figures(rows: list[Row], split: str, prefix: str, num_images: int,
                        echo=print) -> list[str]:
  """Per series: predictions of each upsampler on the same images, and where it has both
  transpose_conv and resize_conv, the checkerboard figure. Needs the runs' checkpoints."""
  from research import inference  # pylint: disable=g-import-not-at-top
  from research import metrics  # pylint: disable=g-import-not-at-top
  written = []
  for series in dict.fromkeys(_series(r) for r in rows if r.finals):
    members = [r for r in rows if r.finals and _series(r) == series]
    workdirs = {_upsampler(r): r.done[0] for r in members
                if os.path.isdir(os.path.join(r.done[0], 'checkpoints'))}
    if not workdirs:
      echo(f'No checkpoints in the finished cells of {series}: no qualitative figure.')
      continue
    probs, images = {}, None
    for upsampler, workdir in workdirs.items():
      model, params, config = inference.load(workdir)
      if images is None:
        images, labels = _eval_images(config, split, num_images)
      probs[upsampler] = np.asarray(inference.predict(model, params, images))
    path = f'{prefix}_qualitative_{sweep.safe(series)}.png'
    plot_predictions(images, labels, probs, f'{series}: {split} images, one seed each', path)
    written.append(path)
    pair = ('transpose_conv', 'resize_conv')
    if all(u in probs for u in pair):
      chosen = {u: probs[u][:1] for u in pair}
      scores = {u: float(metrics.checkerboard_score(p)[0]) for u, p in chosen.items()}
      path = f'{prefix}_checkerboard_{sweep.safe(series)}.png'
      plot_checkerboard(images[0], labels[0], {u: p[0] for u, p in chosen.items()}, scores, path)
      written.append(path)
  return written


def provenance(command: str) -> str:
  return f'Command: `{command}`\nCommit: `{git_commit()}`\n'


def write(root: str, out: str, name: str, split: str, command: str, plots: bool = True,
          qualitative: bool = True, num_images: int = 4, echo=print,
          force: bool = False) -> list[str]:
  """OUT/NAME.md, .csv, .tex and the figures; returns the paths written.

  Everything is rendered before the first file is replaced, and each file is replaced by
  a rename, so an error leaves the previous results as they were. Tables made from
  another sweep (a smoke test of the same experiment, say) are not replaced unless
  `force`.
  """
  if split not in SPLITS:
    raise ValueError(f'Unknown split {split!r}; valid: {", ".join(SPLITS)}.')
  index, rows = read_sweep(root)
  md_path = os.path.join(out, f'{name}.md')
  if not force and os.path.exists(md_path):
    with open(md_path) as f:
      if f'Sweep `{index["config"]}` in `{root}`' not in f.read():
        raise FileExistsError(f'{md_path} was made from another sweep; not replacing it. Pass '
                              '--force to replace it, or choose another --name or --out.')
  header = provenance(command)
  overrides = ', '.join(f'{k}={v}' for k, v in index['overrides'].items()) or 'none'
  intro = (f'\n# {name}: {split} split\n\n'
           f'Sweep `{index["config"]}` in `{root}` (command-line overrides: {overrides}). '
           'One row per configuration: mean ± sample std (n − 1) over its finished seeds, '
           'n = seeds done / seeds in the sweep (one seed: its value alone). Bold: best per '
           'column (highest quality and images/s; lowest checkerboard score, parameters, '
           'GFLOPs and ms/step). Quality and checkerboard scores in %; params and GFLOPs '
           '(forward, one image) do not depend on the seed.\n')
  together = sorted({f.get('cost', {}).get('seeds_together', 1) for r in rows for f in r.finals})
  if together != [1] and together:
    intro += ('\nSome cells trained several seeds in one program (seeds_together = '
              f'{", ".join(map(str, together))}): their ms/step and images/s are those of the '
              'joint step, per seed.\n')
  texts = {'md': to_markdown(rows, split, header + intro), 'csv': to_csv(rows, split),
           'tex': to_latex(rows, split, header)}
  os.makedirs(out, exist_ok=True)
  written = []
  for ext, text in texts.items():
    path = os.path.join(out, f'{name}.{ext}')
    workdir_lib.write_text_atomic(path, text)
    written.append(path)
  if plots and any(r.finals for r in rows):
    prefix = os.path.join(out, name)
    plot_quality_vs_cost(rows, split, f'{prefix}_miou_vs_gflops.png')
    plot_boundary_f1(rows, split, f'{prefix}_boundary_f1.png')
    written += [f'{prefix}_miou_vs_gflops.png', f'{prefix}_boundary_f1.png']
    if qualitative:
      written += qualitative_figures(rows, split, prefix, num_images, echo)
  return written
