"""A sweep's rows and their text tables: Markdown, LaTeX and CSV, mean ± std over seeds.

Reads a sweep root: ROOT/cells.json (written by launch.sweep) for the cells the sweep
should have, and each cell's final.json for those that finished. A cell that has not
finished is never dropped: its row counts it (n = seeds done / seeds in the sweep) and
the table lists it by name and status.
"""

import csv
import dataclasses
import io
import json
import os
import subprocess

import numpy as np

from research import sweep
from research.tables.columns import COLUMNS
from research.tables.columns import OPTIONAL_COLUMNS
from research.tables.columns import Column

SEED_KEY = 'seed'  # the override that rows are aggregated over
SPLITS = ('val', 'test')  # the evaluation sections of final.json
MISSING = '—'


@dataclasses.dataclass
class Row:
  """A configuration: the cells of its seeds, their status, and the finished ones' results."""

  label: dict  # its overrides except the seed (dotted key -> value)
  workdirs: list = dataclasses.field(default_factory=list)
  statuses: list = dataclasses.field(default_factory=list)
  finals: list = dataclasses.field(default_factory=list)  # final.json of the done cells
  seeds: list = dataclasses.field(default_factory=list)  # each workdir's seed (None: not swept)

  @property
  def done(self) -> list[str]:
    return [w for w, s in zip(self.workdirs, self.statuses) if s == 'done']

  def values(self, column: Column, split: str) -> np.ndarray:
    """The column's value for each done seed, scaled for display (NaN where absent)."""
    section = split if column.section == 'split' else column.section
    return np.array(
      [
        np.nan
        if f.get(section, {}).get(column.field) is None
        else float(f[section][column.field]) * column.scale
        for f in self.finals
      ]
    )


def read_sweep(root: str) -> tuple[dict, list[Row]]:
  """The sweep's index and its rows, in the order of the grid."""
  index = sweep.read_index(root)
  rows = {}
  for cell in index['cells']:
    label = {k: v for k, v in cell['overrides'].items() if k != SEED_KEY}
    row = rows.setdefault(json.dumps(label, sort_keys=True), Row(label))
    workdir = os.path.join(root, cell['name'])
    row.workdirs.append(workdir)
    row.seeds.append(cell['overrides'].get(SEED_KEY))
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

  return tuple(c for c in COLUMNS if not finals or reported(c)) + tuple(
    c for c in OPTIONAL_COLUMNS if reported(c)
  )


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
  return (
    [short[k] for k in keys] or ['config'],
    [[str(r.label.get(k, MISSING)) for k in keys] or ['(all)'] for r in rows],
  )


def _unfinished(rows: list[Row]) -> list[str]:
  return [
    f'{os.path.basename(w)} ({s})'
    for r in rows
    for w, s in zip(r.workdirs, r.statuses)
    if s != 'done'
  ]


def to_markdown(rows: list[Row], split: str, header: str) -> str:
  """GitHub markdown: `header`, the table, then the cells that have not finished."""
  names, labels = _label_texts(rows)
  shown = columns(rows)
  titles = names + ['n'] + [c.title for c in shown]
  lines = [
    header.rstrip('\n'),
    '',
    '| ' + ' | '.join(titles) + ' |',
    '|' + '|'.join([':--'] * len(names) + ['--:'] * (1 + len(shown))) + '|',
  ]
  for row, label, texts in zip(rows, labels, _cells(rows, split, lambda t: f'**{t}**', ' ± ')):
    n = f'{len(row.finals)}/{len(row.workdirs)}'
    lines.append('| ' + ' | '.join(label + [n] + texts) + ' |')
  unfinished = _unfinished(rows)
  total = sum(len(r.workdirs) for r in rows)
  lines += [
    '',
    f'Not finished: {len(unfinished)} of {total} cells'
    + (': ' + ', '.join(unfinished) + '.' if unfinished else '.'),
  ]
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
  lines += [
    r'\begin{tabular}{' + 'l' * len(names) + 'r' * (1 + len(shown)) + '}',
    r'\toprule',
    ' & '.join([_tex_escape(n) for n in names] + ['$n$'] + [c.tex for c in shown]) + r' \\',
    r'\midrule',
  ]
  cells = _cells(rows, split, lambda t: r'\textbf{' + t + '}', r' $\pm$ ')
  for row, label, texts in zip(rows, labels, cells):
    n = f'{len(row.finals)}/{len(row.workdirs)}'
    lines.append(
      ' & '.join([_tex_escape(t) for t in label] + [n] + [t.replace(MISSING, '--') for t in texts])
      + r' \\'
    )
  lines += [r'\bottomrule', r'\end{tabular}']
  return '\n'.join(lines) + '\n'


def to_csv(rows: list[Row], split: str) -> str:
  """Machine-readable: full dotted keys, and each metric's mean and std in final.json's
  units (fractions, seconds); empty where undefined."""
  keys = list(dict.fromkeys(k for r in rows for k in r.label))
  class_names = list(
    dict.fromkeys(  # per-class IoU, where the runs report it by name
      name
      for r in rows
      for f in r.finals
      if isinstance(f.get(split, {}).get('iou_per_class'), dict)
      for name in f[split]['iou_per_class']
    )
  )
  out = io.StringIO()
  writer = csv.writer(out, lineterminator='\n')
  writer.writerow(
    keys
    + ['seeds_done', 'seeds_total']
    + [f'{c.name}_{s}' for c in columns(rows) for s in ('mean', 'std')]
    + [f'iou_{name}_{s}' for name in class_names for s in ('mean', 'std')]
  )
  for row in rows:
    stats = []
    for column in columns(rows):
      mean, std, _ = summarize(row.values(column, split) / column.scale)
      stats += ['' if np.isnan(v) else repr(v) for v in (mean, std)]
    for name in class_names:
      per_seed = np.array(
        [
          np.nan if f[split]['iou_per_class'].get(name) is None else f[split]['iou_per_class'][name]
          for f in row.finals
        ]
      )
      mean, std, _ = summarize(per_seed)
      stats += ['' if np.isnan(v) else repr(v) for v in (mean, std)]
    writer.writerow(
      [row.label.get(k, '') for k in keys] + [len(row.finals), len(row.workdirs)] + stats
    )
  return out.getvalue()


def git_commit() -> str:
  """Short HEAD hash, '+dirty' if tracked files changed or untracked ones exist (results/
  and ignored paths aside)."""

  def git(*args):
    return subprocess.run(
      ['git', *args], cwd=sweep.REPO, capture_output=True, text=True, check=True
    ).stdout.strip()

  try:
    head = git('rev-parse', '--short', 'HEAD')
    dirty = git('status', '--porcelain', '--', '.', ':(exclude)results')
  except (OSError, subprocess.CalledProcessError):
    return 'unknown (not a git checkout)'
  return head + ('+dirty' if dirty else '')


# Figures.


def provenance(command: str) -> str:
  return f'Command: `{command}`\nCommit: `{git_commit()}`\n'
