"""Tables of a sweep against hand-made workdirs (config.json + final.json written here),
and the figures that restore checkpoints."""

import csv
import io
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from experiments import quick
from research import inference
from research import instance_metrics
from research import panoptic_metrics
from research import steps
from research import sweep
from research import tables
from research import workdir as workdir_lib

# (arch, upsampler) -> per seed: None (not finished) or (miou, pixel acc., BF, checkerboard,
# params, GFLOPs, seconds per step).
RESULTS = {
  ('unet', 'nearest'): [
    (0.60, 0.91, 0.50, 0.01, 1000, 0.5, 0.10),
    (0.62, 0.91, 0.52, 0.02, 1000, 0.5, 0.12),
    (0.64, 0.91, 0.54, 0.03, 1000, 0.5, 0.14),
  ],
  ('unet', 'transpose_conv'): [
    (0.70, 0.905, 0.40, 0.05, 2000, 0.4, 0.20),
    (0.66, 0.915, 0.42, 0.07, 2000, 0.4, 0.22),
    None,
  ],
  ('segnet', 'bed_of_nails'): [None, None, None],
}
COMMAND = 'python -m launch.table --root ROOT --name exp'


def _final(miou, pixel_accuracy, boundary_f1, checkerboard, params, gflops, step_seconds):
  split = {
    'miou': miou,
    'pixel_accuracy': pixel_accuracy,
    'mean_class_accuracy': miou,
    'boundary_f1': boundary_f1,
    'checkerboard': checkerboard,
    'iou_per_class': {},
  }
  return {
    'step': 10,
    'val': split,
    'test': split,
    'cost': {
      'params': params,
      'gflops_per_image': gflops,
      'step_seconds': step_seconds,
      'images_per_second': 16 / step_seconds,
      'train_step_gflops': 3 * gflops,
      'compile_seconds': 1.0,
      'devices': 1,
      'platform': 'cpu',
      'peak_device_memory_mb': None,
      'peak_host_memory_mb': 100.0,
    },
  }


@pytest.fixture
def root(tmp_path):
  """A sweep root: one configuration done, one 2/3 done, one with nothing done (one cell
  running, one partial, one never started)."""
  grid = [
    {'model.arch': a, 'model.upsampler': u, 'seed': s}
    for (a, u), seeds in RESULTS.items()
    for s in range(len(seeds))
  ]
  path = str(tmp_path / 'root')
  cells = sweep.plan('experiments/decoder_ablation.py', grid, path)
  sweep.write_index(path, 'experiments/decoder_ablation.py', {}, cells)
  results = [r for seeds in RESULTS.values() for r in seeds]
  for cell, result in zip(cells, results):
    os.makedirs(cell.workdir)
    with open(os.path.join(cell.workdir, 'config.json'), 'w') as f:
      json.dump({'seed': cell.overrides['seed']}, f)
    if result is not None:
      with open(os.path.join(cell.workdir, 'final.json'), 'w') as f:
        json.dump(_final(*result), f)
  assert sweep.acquire_lock(cells[6].workdir)  # running (this live process holds its lock)
  os.remove(os.path.join(cells[8].workdir, 'config.json'))  # never started
  return path


def _stats(values, scale=100):
  values = np.array(values) * scale
  return values.mean(), values.std(ddof=1)


def test_rows_aggregate_seeds(root):
  index, rows = tables.read_sweep(root)
  assert index['config'] == 'experiments/decoder_ablation.py'
  assert [r.label for r in rows] == [{'model.arch': a, 'model.upsampler': u} for a, u in RESULTS]
  assert [len(r.finals) for r in rows] == [3, 2, 0]
  assert rows[1].statuses == ['done', 'done', 'partial']
  assert rows[2].statuses == ['running', 'partial', 'missing']
  mean, std, n = tables.summarize(rows[1].values(tables.COLUMNS[0], 'test'))
  assert n == 2 and (mean, std) == pytest.approx(_stats([0.70, 0.66]))
  assert np.isnan(tables.summarize(rows[2].values(tables.COLUMNS[0], 'test'))[0])
  assert np.isnan(tables.summarize(np.array([0.5]))[1])  # no spread from one seed


def test_markdown_table(root):
  _, rows = tables.read_sweep(root)
  text = tables.to_markdown(rows, 'test', tables.provenance(COMMAND))
  lines = text.splitlines()
  assert lines[0] == f'Command: `{COMMAND}`' and lines[1].startswith('Commit: `')
  header = next(l for l in lines if l.startswith('| arch'))
  assert header.split(' | ')[1:4] == ['upsampler', 'n', 'mIoU (%)']
  table = {
    tuple(c.strip() for c in l.split('|')[1:3]): [c.strip() for c in l.split('|')[3:-1]]
    for l in lines
    if l.startswith('| ') and l is not header
  }
  nearest, transpose, missing = (
    table[k] for k in [('unet', 'nearest'), ('unet', 'transpose_conv'), ('segnet', 'bed_of_nails')]
  )
  m, s = _stats([0.60, 0.62, 0.64])
  assert nearest[:2] == ['3/3', f'{m:.1f} ± {s:.1f}'] == ['3/3', '62.0 ± 2.0']
  m, s = _stats([0.70, 0.66])
  assert transpose[:2] == ['2/3', f'**{m:.1f} ± {s:.1f}**'] == ['2/3', '**68.0 ± 2.8**']
  assert (nearest[2], transpose[2]) == ('**91.0 ± 0.0**', '**91.0 ± 0.7**')  # a tie: both bold
  assert nearest[3] == '**52.0 ± 2.0**' and transpose[3] == '41.0 ± 1.4'  # boundary F1: max
  assert nearest[4] == '**2.00 ± 1.00**' and transpose[4] == '6.00 ± 1.41'  # checkerboard: min
  assert nearest[5:7] == ['**1.0**', '0.500'] and transpose[5:7] == ['2.0', '**0.400**']  # no ±
  assert nearest[7] == '**120.0 ± 20.0**'  # ms/step: min
  ips = tables.summarize(16 / np.array([0.10, 0.12, 0.14]))
  assert nearest[8] == f'**{ips[0]:.0f} ± {ips[1]:.0f}**'  # images/s: max
  assert missing == ['0/3'] + [tables.MISSING] * len(tables.COLUMNS)
  assert (
    'Not finished: 4 of 9 cells: arch=unet,upsampler=transpose_conv,seed=2 (partial), '
    'arch=segnet,upsampler=bed_of_nails,seed=0 (running), '
    'arch=segnet,upsampler=bed_of_nails,seed=1 (partial), '
    'arch=segnet,upsampler=bed_of_nails,seed=2 (missing).'
  ) in text


def test_the_tasks_metrics_get_columns_where_runs_report_them():
  panoptic = {'test': {'miou': 0.5, 'pq': 0.4, 'checkerboard_offsets': 0.01}}
  video = {'test': {'miou': 0.5}, 'video': {'miou': 0.3, 'flicker': 0.02}}
  rows = [tables.Row({'model.upsampler': 'nearest'}, finals=[f]) for f in (panoptic, video)]
  chosen = {c.name: c for c in tables.text.columns(rows)}
  assert {'pq', 'checkerboard_offsets', 'video_miou', 'video_flicker'} <= set(chosen)
  assert 'mask_ap' not in chosen and 'sq' not in chosen  # no run reported them
  assert rows[1].values(chosen['video_flicker'], 'test').tolist() == [2.0]
  assert np.isnan(rows[0].values(chosen['video_flicker'], 'test')).all()


def test_csv_and_latex(root):
  _, rows = tables.read_sweep(root)
  records = list(csv.DictReader(io.StringIO(tables.to_csv(rows, 'test'))))
  assert [(r['model.arch'], r['seeds_done'], r['seeds_total']) for r in records] == [
    ('unet', '3', '3'),
    ('unet', '2', '3'),
    ('segnet', '0', '3'),
  ]
  assert float(records[0]['miou_mean']) == pytest.approx(0.62)
  assert float(records[0]['miou_std']) == pytest.approx(0.02)
  assert float(records[1]['step_seconds_mean']) == pytest.approx(0.21)
  assert records[2]['miou_mean'] == records[2]['miou_std'] == ''

  tex = tables.to_latex(rows, 'val', tables.provenance(COMMAND))
  assert tex.startswith(f'% Command: `{COMMAND}`')
  for command in (r'\toprule', r'\midrule', r'\bottomrule', r'\begin{tabular}{llrrrrrrrrr}'):
    assert command in tex
  assert r'unet & transpose\_conv & 2/3 & \textbf{68.0 $\pm$ 2.8} &' in tex
  assert r'segnet & bed\_of\_nails & 0/3 & -- &' in tex


def test_write_replaces_results_only_when_complete(root, tmp_path):
  out, messages = str(tmp_path / 'results'), []
  written = tables.write(root, out, 'exp', 'test', COMMAND, echo=messages.append)
  names = sorted(os.path.basename(p) for p in written)
  assert names == ['exp.csv', 'exp.md', 'exp.tex', 'exp_boundary_f1.png', 'exp_miou_vs_gflops.png']
  assert 'No checkpoints' in messages[0]  # hand-made cells: no qualitative figures
  for path in written:
    if path.endswith('.png'):
      assert open(path, 'rb').read(8) == b'\x89PNG\r\n\x1a\n'
  before = {p: open(p, 'rb').read() for p in written}
  with pytest.raises(ValueError, match="Unknown split 'train'; valid: val, test"):
    tables.write(root, out, 'exp', 'train', COMMAND)
  other = str(tmp_path / 'smoke_root')  # another sweep of the same experiment
  shutil.copytree(root, other, ignore=shutil.ignore_patterns(sweep.LOCK))
  with pytest.raises(FileExistsError, match='exp.md was made from another sweep.*--force'):
    tables.write(other, out, 'exp', 'test', COMMAND, plots=False)
  os.remove(os.path.join(root, sweep.INDEX))
  with pytest.raises(FileNotFoundError, match='cells.json'):
    tables.write(root, out, 'exp', 'test', COMMAND)
  assert {p: open(p, 'rb').read() for p in written} == before
  assert sorted(os.listdir(out)) == names  # no temporary files left


def test_high_pass_isolates_the_checkerboard():
  y, x = np.mgrid[:16, :16]
  smooth = x / 16.0
  checker = 0.1 * (-1.0) ** (x + y)
  interior = (slice(1, -1),) * 2  # away from the edge padding
  assert np.abs(tables.high_pass(smooth)[interior]).max() < 1e-9
  np.testing.assert_allclose(tables.high_pass(smooth + checker)[interior], checker[interior])


@pytest.mark.slow
def test_inference_restores_checkpoints_and_draws_predictions(tmp_path, tiny_dir):
  """Two hand-made checkpointed runs (no training): load() gives back their parameters,
  and the qualitative and checkerboard figures are drawn from them."""

  root = str(tmp_path / 'root')
  grid = [
    {'model.arch': 'unet', 'model.upsampler': u, 'seed': 0}
    for u in ('transpose_conv', 'resize_conv')
  ]
  cells = sweep.plan('experiments/quick.py', grid, root)
  sweep.write_index(root, 'experiments/quick.py', {}, cells)
  saved = {}
  for cell in cells:
    config = quick.get_config(f'upsampler={cell.overrides["model.upsampler"]}')
    config.data.update(variant='res64_tiny', data_dir=str(tiny_dir), image_size=32)
    config.model.update(width=4, options={'depth': 2})
    workdir_lib.write_config(config, cell.workdir)
    model, tx = steps.build_model(config, 6), steps.make_optimizer(config)
    params = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))['params']
    state = {'step': jnp.array(3, jnp.int32), 'params': params, 'opt_state': tx.init(params)}
    with ocp.CheckpointManager(
      os.path.join(cell.workdir, 'checkpoints'), options=ocp.CheckpointManagerOptions(create=True)
    ) as manager:
      manager.save(3, args=ocp.args.StandardSave(state))
      manager.wait_until_finished()
    with open(os.path.join(cell.workdir, 'final.json'), 'w') as f:
      json.dump(_final(0.5, 0.9, 0.5, 0.01, 1000, 0.5, 0.1), f)
    saved[cell.workdir] = params

  model, params, config = inference.load(cells[0].workdir)
  assert config.model.upsampler == 'transpose_conv'
  jax.tree.map(np.testing.assert_array_equal, params, saved[cells[0].workdir])
  probs = inference.predict(model, params, np.zeros((2, 32, 32, 3), np.float32))
  assert probs.shape == (2, 32, 32, 6)
  np.testing.assert_allclose(np.sum(probs, axis=-1), 1, rtol=1e-5)
  with pytest.raises(ValueError, match=r'no checkpoint at step 7; it has steps \[3\]'):
    inference.load(cells[0].workdir, step=7)
  config_path = os.path.join(cells[0].workdir, 'config.json')
  stored = json.load(open(config_path))
  with open(config_path, 'w') as f:
    json.dump({**stored, 'method': 'panoptic'}, f)
  with pytest.raises(ValueError, match="a 'panoptic' run, whose model has other outputs"):
    inference.load(cells[0].workdir)
  with open(config_path, 'w') as f:
    json.dump(stored, f)

  _, rows = tables.read_sweep(root)
  written = tables.qualitative_figures(rows, 'test', str(tmp_path / 'fig'), num_images=2)
  assert [os.path.basename(p) for p in written] == [
    'fig_qualitative_unet.png',
    'fig_checkerboard_unet.png',
  ]
  for path in written:
    assert open(path, 'rb').read(8) == b'\x89PNG\r\n\x1a\n'
  # An unreadable checkpoint costs its decoder the figure, with a warning, not the table.
  for path in (tmp_path / 'root').rglob('_METADATA'):
    if cells[1].workdir in str(path):
      path.write_text('{"truncated')
  messages = []
  written = tables.qualitative_figures(
    rows, 'test', str(tmp_path / 'fig2'), num_images=2, echo=messages.append
  )
  assert [os.path.basename(p) for p in written] == ['fig2_qualitative_unet.png']
  assert any('leaving resize_conv out' in m for m in messages)


def _per_image(rng, num_images, accuracy, num_classes=6):
  """Per-image confusions where `accuracy` of each class's pixels are right (the rest taken
  for the next class), and boundary F1 scores around it."""
  confusion = np.zeros((num_images, num_classes, num_classes), np.int64)
  right = rng.binomial(50, accuracy, size=(num_images, num_classes))
  for c in range(num_classes):
    confusion[:, c, c], confusion[:, c, (c + 1) % num_classes] = right[:, c], 50 - right[:, c]
  return {'confusion': confusion, 'boundary_f1': rng.uniform(accuracy - 0.1, accuracy, num_images)}


def _paired_root(tmp_path, experiment: str, seeds: int, options: bool = False):
  """A sweep root of `experiment` with nearest and resize_conv × `seeds` seeds, each cell's
  workdir made (its files are the test's); with `options`, an upsampler_options axis ({})."""
  extra = {'model.upsampler_options': {}} if options else {}
  grid = [
    {'model.upsampler': u, **extra, 'seed': s}
    for u in ('nearest', 'resize_conv')
    for s in range(seeds)
  ]
  path = str(tmp_path / 'root')
  cells = sweep.plan(experiment, grid, path)
  sweep.write_index(path, experiment, {}, cells)
  for cell in cells:
    os.makedirs(cell.workdir)
  return path, cells


def test_paired_differences_to_a_reference_decoder(tmp_path):
  rng = np.random.default_rng(0)
  path, cells = _paired_root(tmp_path, 'experiments/decoder_ablation.py', seeds=3)
  miou = {}
  for cell in cells:
    better = cell.overrides['model.upsampler'] == 'resize_conv'
    arrays = _per_image(rng, 20, 0.8 if better else 0.7)
    np.savez(os.path.join(cell.workdir, 'per_image_test.npz'), **arrays)
    c = arrays['confusion'].sum(0)
    miou[cell.overrides['model.upsampler'], cell.overrides['seed']] = np.mean(
      np.diag(c) / (c.sum(0) + c.sum(1) - np.diag(c))
    )
    with open(os.path.join(cell.workdir, 'config.json'), 'w') as f:
      json.dump(
        {
          'seed': cell.overrides['seed'],
          'data': {
            'name': 'lab_shapes',
            'variant': 'res64',
            'eval_split': 'validation',
            'test_split': 'test',
            'data_dir': '',
          },
        },
        f,
      )
    with open(os.path.join(cell.workdir, 'final.json'), 'w') as f:
      json.dump(
        _final(
          miou[cell.overrides['model.upsampler'], cell.overrides['seed']],
          0.9,
          0.5,
          0.01,
          1000,
          0.5,
          0.1,
        ),
        f,
      )
  out = str(tmp_path / 'out')
  written = tables.write(
    path, out, 'exp', 'test', COMMAND, qualitative=False, reference=['nearest', 'bilinear']
  )
  text = open(os.path.join(out, 'exp.md')).read()
  expected = np.mean([miou['resize_conv', s] - miou['nearest', s] for s in range(3)])
  line = next(line for line in text.splitlines() if line.startswith('| model.upsampler=resize'))
  assert f'**{100 * expected:+.1f} [' in line and '| 3×20 |' in line  # excludes zero: bold
  assert 'Smallest difference this design could detect' in text
  assert 'No paired differences to `bilinear`' in text  # the grid has no bilinear row
  assert 'model.upsampler=nearest' not in text.split('## Paired differences')[1]
  assert os.path.join(out, 'exp_diff_nearest_mIoU.png') in written
  assert os.path.exists(os.path.join(out, 'exp_diff_nearest_boundary_F1.png'))
  assert os.path.join(out, 'exp_diff_nearest_mIoU_vs_gflops.png') in written


def test_video_runs_are_paired_clip_by_clip(tmp_path):
  """Clip mIoU and flicker from per_clip_test.npz, beside the stills' per-image values."""
  rng = np.random.default_rng(1)
  path, cells = _paired_root(tmp_path, 'experiments/video.py', seeds=2)
  flicker = {}
  for cell in cells:
    data = {'name': 'lab_shapes', 'variant': 'res64', 'eval_split': 'validation'}
    config = {'seed': cell.overrides['seed'], 'data': {**data, 'test_split': 'test'}}
    with open(os.path.join(cell.workdir, 'config.json'), 'w') as f:
      json.dump({**config, 'video': {'split': 'test'}}, f)
    for split in ('test', 'validation'):
      np.savez(os.path.join(cell.workdir, f'per_image_{split}.npz'), boundary_f1=rng.random(5))
    stable = rng.integers(50, 100, 8)
    changed = rng.binomial(stable, 0.1 if 'resize' in cell.name else 0.3)
    confusion = rng.integers(0, 9, (8, 4, 3, 3))  # 8 clips × 4 frames
    np.savez(
      os.path.join(cell.workdir, 'per_clip_test.npz'),
      confusion=confusion,
      changed=changed,
      stable=stable,
    )
    flicker[cell.name.split(',')[0], cell.overrides['seed']] = changed.sum() / stable.sum()
    with open(os.path.join(cell.workdir, 'final.json'), 'w') as f:
      json.dump({'step': 1, 'test': {'miou': 0.5}}, f)
  _, rows = tables.read_sweep(path)
  [(row, result)] = tables.paired.differences(rows, 'test', 'nearest', (), num_resamples=200)
  assert row.label == {'model.upsampler': 'resize_conv'}
  assert set(result) == {'boundary F1', 'clip mIoU', 'flicker'}
  expected = np.mean(
    [flicker['upsampler=resize_conv', s] - flicker['upsampler=nearest', s] for s in range(2)]
  )
  assert result['flicker'].difference == pytest.approx(expected)
  assert result['flicker'].num_images == 8 and result['boundary F1'].num_images == 5
  [(_, on_val)] = tables.paired.differences(rows, 'val', 'nearest', (), num_resamples=200)
  assert 'flicker' not in on_val  # the clips are the test split's


def test_panoptic_runs_are_paired_on_pq_image_by_image(tmp_path):
  """PQ and PQ over things from each image's counts; the point estimate is the mean over
  seeds of PQ from the split's summed counts (research.panoptic_metrics.pq_summary)."""
  rng = np.random.default_rng(2)
  path, cells = _paired_root(tmp_path, 'experiments/panoptic.py', seeds=2)
  things, stuff, pq = [1, 2], [0], {}
  for cell in cells:
    data = {'name': 'lab_shapes', 'variant': 'res64_instances', 'eval_split': 'validation'}
    config = {'seed': cell.overrides['seed'], 'data': {**data, 'test_split': 'test'}}
    with open(os.path.join(cell.workdir, 'config.json'), 'w') as f:
      json.dump({**config, 'panoptic': {'thing_classes': things}}, f)
    tp = rng.integers(0, 3, (6, 3))
    counts = {'tp': tp, 'fp': rng.integers(0, 2, (6, 3)), 'fn': rng.integers(0, 2, (6, 3))}
    counts['iou_sum'] = tp * rng.uniform(0.5, 1.0, (6, 3))
    np.savez(
      os.path.join(cell.workdir, 'per_image_test.npz'),
      **{f'pq_{k}': v for k, v in counts.items()},
    )
    summary = panoptic_metrics.pq_summary({k: v.sum(0) for k, v in counts.items()}, things, stuff)
    pq[cell.name.split(',')[0], cell.overrides['seed']] = summary['pq'], summary['pq_things']
    with open(os.path.join(cell.workdir, 'final.json'), 'w') as f:
      json.dump({'step': 1, 'test': {'miou': 0.5, 'pq': summary['pq']}}, f)
  _, rows = tables.read_sweep(path)
  [(_, result)] = tables.paired.differences(rows, 'test', 'nearest', (), num_resamples=200)
  assert set(result) == {'PQ', 'PQ things'}
  for i, title in enumerate(('PQ', 'PQ things')):
    by_seed = [pq['upsampler=resize_conv', s][i] - pq['upsampler=nearest', s][i] for s in range(2)]
    assert result[title].difference == pytest.approx(np.mean(by_seed))
    assert result[title].num_images == 6


def test_instance_runs_are_paired_on_mask_ap_and_instance_weighted_means(tmp_path):
  """Mask AP recomputed per resample from each image's detections (its point estimate the mean
  over seeds of mask_ap), and mask IoU / boundary F1 as means over instances, not images."""
  rng = np.random.default_rng(4)
  # The instance grid has an options axis: the reference's default options are {}.
  path, cells = _paired_root(tmp_path, 'experiments/instance.py', seeds=2, options=True)
  ap, iou = {}, {}
  for cell in cells:
    data = {'name': 'lab_shapes', 'variant': 'res64_instances', 'eval_split': 'validation'}
    config = {'seed': cell.overrides['seed'], 'data': {**data, 'test_split': 'test'}}
    with open(os.path.join(cell.workdir, 'config.json'), 'w') as f:
      json.dump(config, f)
    hit = 0.9 if 'resize' in cell.name else 0.5
    matches, ious = [], []
    for _ in range(7):
      boxes = rng.integers(1, 4)
      classes = rng.integers(0, 3, boxes)
      ious.append(rng.uniform(hit - 0.2, hit, boxes))
      matched = ious[-1][:, None] >= instance_metrics.IOU_THRESHOLDS
      matches.append(
        {'scores': rng.random(boxes), 'classes': classes, 'matched': matched, 'gt_classes': classes}
      )
    values = {
      'mask_iou': np.array([i.mean() for i in ious]),
      'mask_iou_weight': np.array([len(i) for i in ious], float),
      **instance_metrics.stack_matches(matches, num_classes=3, width=4),
    }
    np.savez(os.path.join(cell.workdir, 'per_image_test.npz'), **values)
    key = cell.name.split(',')[0], cell.overrides['seed']
    ap[key] = instance_metrics.mask_ap(matches, num_classes=3)['ap']
    iou[key] = np.concatenate(ious).mean()
    with open(os.path.join(cell.workdir, 'final.json'), 'w') as f:
      json.dump({'step': 1, 'test': {'mask_ap': ap[key], 'mask_iou': iou[key]}}, f)
  _, rows = tables.read_sweep(path)
  [(_, result)] = tables.paired.differences(rows, 'test', 'nearest', (), num_resamples=100)
  assert set(result) == {'mask AP', 'mask IoU'}
  for title, by in (('mask AP', ap), ('mask IoU', iou)):
    by_seed = [by['upsampler=resize_conv', s] - by['upsampler=nearest', s] for s in range(2)]
    assert result[title].difference == pytest.approx(np.mean(by_seed))
    assert result[title].num_images == 7 and result[title].difference > 0.2
    assert result[title].standard_error > 0
    assert result[title].low <= result[title].difference <= result[title].high
