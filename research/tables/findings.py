"""Findings: published claims about decoders set against this lab's paired measurements.

A claim names two configurations of one sweep (the candidate and the reference: rows whose
overrides, seed aside, are exactly the given ones), a metric of tables.paired and what the
paper found: the candidate higher ('greater'), lower ('less'), or no higher ('not_greater',
for a claim that something does not help). The lab's answer is the paired difference over
the seeds both finished, with its 95% hierarchical-bootstrap interval (research.stats), and
a verdict read off the interval only:

  holds here            the interval lies on the claimed side of zero
                        ('not_greater': the interval does not lie above zero)
  does not hold here    the interval lies on the other side of zero
  cannot be told apart  the interval holds zero; the row gives the smallest difference the
                        design could have detected (80% power)

A claim whose sweep, rows or per-image values are missing says so instead of a verdict,
and one measured on fewer than MIN_SEEDS seeds gives none (its interval would be too narrow).
"""

import os
from typing import NamedTuple

from research import stats
from research import workdir as workdir_lib
from research.sweep import archive
from research.sweep import cells as cells_lib
from research.tables import paired
from research.tables import text

EXPECTATIONS = ('greater', 'less', 'not_greater')
# Below this no verdict: with S seeds the bootstrap draws few distinct seed sets and its
# interval is too narrow by about sqrt((S - 1) / S) (research.stats); every part has >= 3.
MIN_SEEDS = 3
METRICS = {m.title: m for m in paired.METRICS}


class Claim(NamedTuple):
  claim: str  # the published statement, as this comparison tests it
  source: str  # paper and table
  published: str  # their numbers
  sweep: str  # sweep root, relative to the findings' root
  metric: str  # a tables.paired metric title
  candidate: dict  # the candidate row's overrides (seed aside)
  reference: dict  # the reference row's overrides
  expect: str  # one of EXPECTATIONS
  init: bool = False  # compare the runs' initial parameters (per_image_init_<split>.npz)


class Finding(NamedTuple):
  claim: Claim
  difference: stats.PairedDifference | None
  verdict: str


def from_dict(spec: dict) -> Claim:
  """A Claim from an experiment's plain dict (experiments hold data, not library types)."""
  claim = Claim(**spec)
  if claim.expect not in EXPECTATIONS:
    raise ValueError(
      f'Claim {claim.claim!r}: expect must be one of {", ".join(EXPECTATIONS)}; '
      f'got {claim.expect!r}.'
    )
  if claim.metric not in METRICS:
    raise ValueError(
      f'Claim {claim.claim!r}: unknown metric {claim.metric!r}; known: {", ".join(METRICS)}.'
    )
  return claim


def verdict(difference: stats.PairedDifference, expect: str) -> str:
  """The verdict the interval gives (see the module docstring)."""
  above, below = difference.low > 0, difference.high < 0
  detectable = f'{100 * difference.detectable:.1f}'
  if expect == 'not_greater':
    if above:
      return 'does not hold here: the candidate is higher'
    if below:
      return 'holds here: the candidate is lower'
    return (
      f'cannot be told apart at this power: no gain detected, but a gain up to '
      f'{100 * difference.high:.1f} points is not ruled out (detectable: {detectable} points)'
    )
  if (above and expect == 'greater') or (below and expect == 'less'):
    return 'holds here'
  if above or below:
    return 'does not hold here: the difference has the other sign'
  return f'cannot be told apart at this power (detectable: {detectable} points)'


def _row(rows: list, overrides: dict):
  return next((r for r in rows if r.label == overrides), None)


def evaluate(claim: Claim, root: str, split: str = 'test', loaded_files=None) -> Finding:
  """The claim's paired difference and verdict from the sweep under ROOT/claim.sweep."""
  sweep_root = os.path.join(root, claim.sweep)
  if not os.path.exists(os.path.join(sweep_root, cells_lib.INDEX)):
    return Finding(claim, None, f'not run yet: no sweep at {sweep_root}')
  _, rows = text.read_sweep(sweep_root)
  cand, ref = _row(rows, claim.candidate), _row(rows, claim.reference)
  for row, overrides in ((cand, claim.candidate), (ref, claim.reference)):
    if row is None:
      return Finding(claim, None, f'no row {_label(overrides)} in {sweep_root}')
  if claim.init and split != 'test':
    return Finding(claim, None, 'runs keep their initial values on the test split only')
  files = {} if loaded_files is None else loaded_files
  seeds, arrays = paired.paired_arrays(cand, ref, split, files, init=claim.init)
  if not seeds:
    return Finding(claim, None, 'not run yet: no seed of both rows has finished')
  if arrays is None:
    return Finding(claim, None, f'{len(seeds)} seeds finished, but without per-image values')
  metric = METRICS[claim.metric]
  mine, theirs = arrays
  if metric.needs not in mine or metric.needs not in theirs:
    return Finding(claim, None, f'the runs kept no {metric.needs!r} per-image values')
  difference = paired.metric_difference(metric, mine, theirs, paired.thin_classes_of(cand))
  if difference.num_seeds < MIN_SEEDS:
    return Finding(
      claim,
      difference,
      f'no verdict yet: {difference.num_seeds} of the {MIN_SEEDS} seeds it needs (the '
      'interval holds too little seed-to-seed spread; so far: '
      f'{verdict(difference, claim.expect)})',
    )
  return Finding(claim, difference, verdict(difference, claim.expect))


def _label(overrides: dict) -> str:
  return ', '.join(f'{k.removeprefix("model.")}={v}' for k, v in overrides.items()) or 'default'


def _sweep_lines(root: str, claims: list[Claim]) -> list[str]:
  """Per sweep the claims read: cells finished / in the grid, and their wall time."""
  lines = []
  for name in dict.fromkeys(c.sweep for c in claims):
    sweep_root = os.path.join(root, name)
    if not os.path.exists(os.path.join(sweep_root, cells_lib.INDEX)):
      lines.append(f'| `{name}` | not run | | | |')
      continue
    index, rows = text.read_sweep(sweep_root)
    done = sum(len(r.done) for r in rows)
    total = sum(len(r.workdirs) for r in rows)
    hours = sum(archive.wall_seconds(w) for r in rows for w in r.done) / 3600
    left = f'{hours / done * (total - done):.1f}' if done else text.MISSING
    lines.append(f'| `{name}` | `{index["config"]}` | {done} / {total} | {hours:.1f} | {left} |')
  return lines


def to_markdown(findings: list[Finding], root: str, split: str, command: str) -> str:
  """FINDINGS.md: provenance, the sweeps read, and one row per claim."""
  lines = [
    text.provenance(command),
    '# Findings: published claims about decoders, measured here',
    '',
    f"Each row sets a published claim against this lab's paired difference ({split} split, "
    'candidate minus reference, points of %; mean over the seeds both finished; 95% interval '
    'of a hierarchical bootstrap over seeds, then test images; n = seeds × images). The '
    'verdict reads the interval only: "holds here" when it lies on the claimed side of '
    'zero, "does not hold here" on the other, "cannot be told apart" when it holds zero, '
    'with the smallest difference the design could have detected (80% power); a claim that '
    'something does not help holds only when the interval lies below zero. About 20 claims '
    'at 95% each: expect about one interval in 20 to miss by chance. Published '
    'numbers are single runs on other data and models (../shared/ANCHORS.md): the lab tests '
    'the direction of a claim, not its size.',
    '',
    '## Sweeps read',
    '',
    'Cell hours: each finished cell from its config.json to its final.json (archived cells '
    'keep that time in timing.json), summed; cells '
    'that ran beside another process count their slower wall time, so the hours left '
    '(remaining cells at the mean so far) are an upper estimate for cells run one at a time.',
    '',
    '| sweep | config | cells finished | cell hours (wall, 2 CPU cores) | hours left (at that '
    'mean) |',
    '|---|---|---|---|---|',
    *_sweep_lines(root, [f.claim for f in findings]),
    '',
    '## Claims',
    '',
    '| claim | source: their numbers | compared here | difference [95% interval], n | verdict |',
    '|---|---|---|---|---|',
  ]
  for f in findings:
    c = f.claim
    compared = (
      f'{c.metric}{" at initialisation" if c.init else ""}, `{c.sweep}`: '
      f'{_label(c.candidate)} − {_label(c.reference)}'
    )
    if f.difference is None:
      measured = text.MISSING
    else:
      d = f.difference
      measured = (
        f'{100 * d.difference:+.2f} [{100 * d.low:+.2f}, {100 * d.high:+.2f}], '
        f'{d.num_seeds}×{d.num_images}'
      )
    lines.append(
      f'| {c.claim} | {c.source}: {c.published} | {compared} | {measured} | {f.verdict} |'
    )
  return '\n'.join(lines) + '\n'


def write(claims: list[dict], root: str, out: str, split: str, command: str) -> str:
  """Evaluates every claim and writes OUT (atomically); returns OUT."""
  parsed = [from_dict(c) for c in claims]
  loaded_files = {}
  findings = [evaluate(c, root, split, loaded_files) for c in parsed]
  workdir_lib.write_text_atomic(out, to_markdown(findings, root, split, command))
  return out
