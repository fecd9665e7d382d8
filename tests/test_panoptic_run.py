"""Issue 20's panoptic task (research.panoptic_run, experiments/panoptic.py): instance ids
through the data layer, the evaluation on constructed predictions, and the runner end to
end on tiny data (its loss going down, final.json, resume after a preemption)."""

import json
import os
import signal

import numpy as np
import pytest

from experiments import panoptic as experiment
from research import data
from research import panoptic
from research import panoptic_metrics
from research import panoptic_run
from research import preemption
from research import runners

INSTANCES = 'res64_instances_tiny'


def tiny_config(shrink_task, **overrides):
  """experiments/panoptic.py on the tiny instances (conftest's shrink_task)."""
  c = experiment.get_config('steps=6,width=4')
  c.optim.warmup_steps = 1
  c.checkpoint_every = 3
  return shrink_task(c, INSTANCES, **overrides)


def test_instance_ids_are_flipped_with_the_image(instances_dir):
  config = data.default_config(variant=INSTANCES, data_dir=str(instances_dir), random_flip=False)
  plain = next(iter(data.train_batches(config, global_batch_size=8, seed=0, instances=True)))
  config.random_flip = True
  flipped = next(iter(data.train_batches(config, global_batch_size=8, seed=0, instances=True)))
  mirrored = [not np.array_equal(a, b) for a, b in zip(plain['label'], flipped['label'])]
  assert any(mirrored)
  for i, m in enumerate(mirrored):
    want = plain['instance'][i][:, ::-1] if m else plain['instance'][i]
    assert np.array_equal(flipped['instance'][i], want)
    assert ((flipped['instance'][i] > 0) == (flipped['label'][i] > 0)).all()


def _scene():
  """A 32×32 scene: background (stuff) and three separated things of classes 1, 2, 5."""
  labels, ids = np.zeros((32, 32), np.int64), np.zeros((32, 32), np.int64)
  for number, (cls, y, x, h, w) in enumerate(
    [(1, 2, 2, 8, 9), (2, 18, 4, 10, 6), (5, 6, 22, 3, 3)]
  ):
    labels[y : y + h, x : x + w], ids[y : y + h, x : x + w] = cls, number + 1
  return labels, ids


def test_perfect_predictions_score_pq_one():
  config = experiment.get_config()
  labels, ids = _scene()
  heatmap, offsets, _ = panoptic.targets(ids, labels, config.panoptic.thing_classes, sigma=2.0)
  batch = {
    'label': np.stack([labels, labels]),
    'instance': np.stack([ids, ids]),
    'valid': np.array([True, False]),
  }
  out = {
    'preds': batch['label'],
    'heatmap': np.stack([heatmap] * 2),
    'offsets': np.stack([offsets] * 2),
  }
  values = panoptic_run.score_batch(batch, out, config, num_classes=6)
  assert values['pq_tp'].shape == (1, 6)  # the valid image's
  assert values['pq_tp'][0].tolist() == [1, 1, 1, 0, 0, 1]
  assert values['pq_fp'].sum() == values['pq_fn'].sum() == 0
  assert values['pq_iou_sum'].sum() == pytest.approx(4.0)
  assert values['confusion'].shape == (1, 6, 6) and values['confusion'].sum() == 32 * 32
  # Everything called background: the things are all missed, the stuff is still found.
  out['preds'] = np.zeros_like(batch['label'])
  values = panoptic_run.score_batch(batch, out, config, num_classes=6)
  assert values['pq_tp'][0].tolist() == [1, 0, 0, 0, 0, 0]
  assert values['pq_fn'][0].tolist() == [0, 1, 1, 0, 0, 1]


def test_the_runner_learns_writes_final_json_and_resumes_after_a_preemption(
  shrink_task, instances_dir, tmp_path, monkeypatch
):
  real = data.train_batches
  starts = []

  def notice_at_step_three(*args, **kwargs):
    starts.append(kwargs['start_step'])
    assert kwargs['instances'] and kwargs['transform'] is not None
    for i, batch in enumerate(real(*args, **kwargs)):
      if kwargs['start_step'] == 0 and i == 2:  # step 2 ran; the notice comes before step 3
        os.kill(os.getpid(), signal.SIGTERM)
      yield batch

  monkeypatch.setattr(data, 'train_batches', notice_at_step_three)
  config = tiny_config(shrink_task)
  with pytest.raises(preemption.Preempted, match='Preempted at step 3'):
    runners.run(config, str(tmp_path))
  final = runners.run(config, str(tmp_path))
  assert starts == [0, 3]
  with open(tmp_path / 'metrics.jsonl') as f:
    losses = [r['train/loss'] for r in map(json.loads, f) if 'train/loss' in r]
  assert len(losses) == 6 and losses[-1] < losses[0]
  test = final['test']
  for name in ('pq', 'sq', 'rq', 'pq_things', 'pq_stuff', 'rq_things', 'sq_stuff', 'miou'):
    assert 0 <= test[name] <= 1 or np.isnan(test[name]), name
  assert set(test['pq_per_class']) == set(data.dataset_info(config.data).class_names)
  for name in ('checkerboard', 'checkerboard_heatmap', 'checkerboard_offsets'):
    assert 0 <= test[name] <= 1 and name in final['init']
  # Each image's values, for paired statistics: their sums give the split's scores.
  with np.load(tmp_path / 'per_image_test.npz') as per_image:
    sums = {k: per_image[f'pq_{k}'].sum(0) for k in ('tp', 'fp', 'fn', 'iou_sum')}
    assert len(per_image['confusion']) == len(per_image['checkerboard_offsets']) == 16
  p = config.panoptic
  assert panoptic_metrics.pq_summary(sums, p.thing_classes, p.stuff_classes)['pq'] == test['pq']
  assert final['step'] == 6 and np.isfinite(final['cost']['step_seconds'])


@pytest.mark.parametrize(
  'overrides, message',
  [
    ({'model.upsampler': 'cubic'}, r"^Unknown upsampler 'cubic'; known upsamplers: .*nearest"),
    ({'data.variant': 'res64_tiny'}, r"^method 'panoptic' needs instance ids; .*res64_instances"),
    ({'data.random_crop': True}, r"^method 'panoptic' cannot take data.random_crop=True"),
  ],
)
def test_a_bad_config_is_refused_in_one_line(
  shrink_task, instances_dir, tmp_path, overrides, message
):
  with pytest.raises(ValueError, match=message) as error:
    runners.run(tiny_config(shrink_task, **overrides), str(tmp_path))
  assert '\n' not in str(error.value) and not os.listdir(tmp_path)
