"""Findings: verdicts read off paired intervals, claims that point at real rows."""

import json
import os

import numpy as np
import pytest

from experiments import benchmark
from research import stats
from research import sweep
from research.tables import findings

CONFIG = 'experiments/benchmark.py:part=fcn8s'


def _difference(low, high, detectable=0.01):
  return stats.PairedDifference(
    (low + high) / 2,
    low,
    high,
    detectable / 2.8,
    detectable,
    low > 0 or high < 0,
    3,
    20,
    2000,
    0.95,
  )


@pytest.mark.parametrize(
  'low,high,expect,starts',
  [
    (0.01, 0.03, 'greater', 'holds here'),
    (-0.03, -0.01, 'greater', 'does not hold here'),
    (-0.01, 0.02, 'greater', 'cannot be told apart'),
    (-0.03, -0.01, 'less', 'holds here'),
    (0.01, 0.03, 'less', 'does not hold here'),
    (0.01, 0.03, 'not_greater', 'does not hold here'),
    (-0.01, 0.02, 'not_greater', 'cannot be told apart at this power: no gain detected'),
    (-0.03, -0.01, 'not_greater', 'holds here: the candidate is lower'),
  ],
)
def test_verdicts_read_the_interval_only(low, high, expect, starts):
  assert findings.verdict(_difference(low, high), expect).startswith(starts)


def _sweep(root, accuracy: dict, seeds=3, images=20):
  """A finished sweep root: per-image confusions where `accuracy[u]` of each class's pixels
  are right; also their initial-parameter files (checkerboard scores)."""
  rng = np.random.default_rng(0)
  grid = [{'model.upsampler': u, 'seed': s} for u in accuracy for s in range(seeds)]
  cells = sweep.plan(CONFIG, grid, root)
  sweep.write_index(root, CONFIG, {}, cells)
  miou = {}
  for cell in cells:
    os.makedirs(cell.workdir)
    u = cell.overrides['model.upsampler']
    right = rng.binomial(50, accuracy[u], size=(images, 3))
    confusion = np.zeros((images, 3, 3), np.int64)
    for c in range(3):
      confusion[:, c, c], confusion[:, c, (c + 1) % 3] = right[:, c], 50 - right[:, c]
    np.savez(os.path.join(cell.workdir, 'per_image_test.npz'), confusion=confusion)
    board = np.full(images, 0.5 if u == 'carafe' else 0.1)
    np.savez(os.path.join(cell.workdir, 'per_image_init_test.npz'), checkerboard_logits=board)
    total = confusion.sum(0)
    miou[u, cell.overrides['seed']] = np.mean(
      np.diag(total) / (total.sum(0) + total.sum(1) - np.diag(total))
    )
    data = {'name': 'lab_shapes', 'variant': 'res64', 'eval_split': 'validation', 'data_dir': ''}
    with open(os.path.join(cell.workdir, 'config.json'), 'w') as f:
      json.dump({'seed': cell.overrides['seed'], 'data': {**data, 'test_split': 'test'}}, f)
    with open(os.path.join(cell.workdir, 'final.json'), 'w') as f:
      json.dump({'test': {'miou': miou[u, cell.overrides['seed']]}}, f)
  return miou, cells


def _claim(**changes):
  spec = dict(
    claim='carafe beats bilinear',
    source='a paper',
    published='1 vs 2',
    sweep='fcn8s',
    metric='mIoU',
    candidate={'model.upsampler': 'carafe'},
    reference={'model.upsampler': 'bilinear'},
    expect='greater',
  )
  return findings.from_dict({**spec, **changes})


def test_a_claim_is_measured_on_its_sweep_and_judged(tmp_path):
  miou, _ = _sweep(str(tmp_path / 'fcn8s'), {'carafe': 0.8, 'bilinear': 0.7})
  found = findings.evaluate(_claim(), str(tmp_path))
  expected = np.mean([miou['carafe', s] - miou['bilinear', s] for s in range(3)])
  assert found.difference.difference == pytest.approx(expected)
  assert (found.difference.num_seeds, found.difference.num_images) == (3, 20)
  assert found.verdict == 'holds here'
  assert findings.evaluate(_claim(expect='less'), str(tmp_path)).verdict.startswith('does not')
  at_init = _claim(metric='checkerboard (logits)', init=True)
  assert findings.evaluate(at_init, str(tmp_path)).difference.difference == pytest.approx(0.4)


def test_what_is_missing_is_said_not_guessed(tmp_path):
  _, cells = _sweep(str(tmp_path / 'fcn8s'), {'carafe': 0.8, 'bilinear': 0.7})
  assert findings.evaluate(_claim(sweep='unet'), str(tmp_path)).verdict.startswith('not run yet')
  missing_row = _claim(reference={'model.upsampler': 'nearest'})
  assert findings.evaluate(missing_row, str(tmp_path)).verdict.startswith(
    'no row upsampler=nearest'
  )
  no_values = _claim(metric='boundary F1')
  assert 'kept no' in findings.evaluate(no_values, str(tmp_path)).verdict
  at_init_on_val = _claim(metric='checkerboard (logits)', init=True)
  assert 'test split only' in findings.evaluate(at_init_on_val, str(tmp_path), 'val').verdict
  os.remove(os.path.join(cells[0].workdir, 'final.json'))  # carafe, seed 0: not finished
  two_seeds = findings.evaluate(_claim(), str(tmp_path))
  assert two_seeds.difference.num_seeds == 2
  assert two_seeds.verdict.startswith('no verdict yet: 2 of the 3 seeds')
  assert two_seeds.verdict.endswith('so far: holds here)')
  os.remove(os.path.join(cells[3].workdir, 'per_image_test.npz'))  # bilinear, seed 0
  os.remove(os.path.join(cells[4].workdir, 'per_image_test.npz'))  # bilinear, seed 1
  assert findings.evaluate(_claim(), str(tmp_path)).verdict.endswith('without per-image values')


def test_findings_page_names_its_sweeps_and_claims(tmp_path):
  _sweep(str(tmp_path / 'fcn8s'), {'carafe': 0.8, 'bilinear': 0.7})
  claims = [_claim()._asdict(), _claim(sweep='unet')._asdict()]
  out = findings.write(claims, str(tmp_path), str(tmp_path / 'F.md'), 'test', 'cmd')
  page = open(out).read()
  assert '| `fcn8s` | `experiments/benchmark.py:part=fcn8s` | 6 / 6 | 0.0 | 0.0 |' in page
  assert '| `unet` | not run |' in page
  assert page.count('| carafe beats bilinear |') == 2


def test_bad_claims_are_refused():
  with pytest.raises(ValueError, match='expect must be one of greater, less, not_greater'):
    _claim(expect='better')
  with pytest.raises(ValueError, match="unknown metric 'miou'"):
    _claim(metric='miou')


def test_the_benchmark_claims_point_at_rows_of_their_sweeps():
  """Every claim's two rows are rows of the grid its sweep runs (a typo would leave a
  finding 'not run' for ever)."""
  for spec in benchmark.CLAIMS:
    claim = findings.from_dict(spec)
    grid = sweep.get_sweep(benchmark.SWEEPS[claim.sweep])
    rows = [{k: v for k, v in c.items() if k != 'seed'} for c in grid]
    assert claim.candidate in rows and claim.reference in rows, claim.claim
