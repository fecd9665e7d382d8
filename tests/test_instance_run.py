"""Issue 20's instance-mask task (research.instance_run, research.models.mask_head,
experiments/instance.py): padded boxes, the evaluation on constructed predictions, and the
runner end to end on tiny data (its loss going down, final.json, no second training)."""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from experiments import instance as experiment
from research import instance_metrics
from research import instance_run
from research import runners
from research import steps

INSTANCES = 'res64_instances_tiny'


def tiny_config(shrink_task, **overrides):
  """experiments/instance.py on the tiny instances (conftest's shrink_task), head width 8."""
  c = experiment.get_config('steps=5,width=4')
  c.instance.head_width = 8
  c.optim.warmup_steps = 1
  c.checkpoint_every = 5
  return shrink_task(c, INSTANCES, **overrides)


def _scene():
  labels, ids = np.zeros((16, 16), np.int32), np.zeros((16, 16), np.int32)
  for number, (cls, y, x, h, w) in enumerate([(1, 1, 1, 5, 6), (3, 9, 2, 1, 9), (5, 10, 12, 3, 3)]):
    labels[y : y + h, x : x + w], ids[y : y + h, x : x + w] = cls, number + 1
  return {'image': np.zeros((16, 16, 3), np.uint8), 'label': labels, 'instance': ids}


def test_boxes_are_padded_to_a_fixed_size_with_a_valid_mask():
  example = instance_run.add_boxes(_scene(), max_instances=5)
  assert example['boxes'].shape == (5, 4) and example['box_valid'].tolist() == [1, 1, 1, 0, 0]
  assert example['boxes'][:3].tolist() == [[1, 1, 6, 7], [9, 2, 10, 11], [10, 12, 13, 15]]
  assert example['box_classes'].tolist() == [1, 3, 5, 0, 0]
  assert (example['boxes'][3:, 2:] > example['boxes'][3:, :2]).all()  # padding: no empty box
  with pytest.raises(ValueError, match='3 instances, more than instance.max_instances=2'):
    instance_run.add_boxes(_scene(), max_instances=2)


def test_ground_truth_masks_roialigned_and_pasted_back_score_one():
  example = instance_run.add_boxes(_scene(), max_instances=5)
  batch = {k: jnp.asarray(v)[None] for k, v in example.items() if k != 'image'}
  targets = np.asarray(instance_run.mask_targets(batch))  # [5, 28, 28]
  # A mask filling its box is 1 inside; bilinear samples by the box's corners (aligned
  # RoIAlign, as detectron2 crops its ground-truth masks) fall below 0.5 there.
  assert targets[:3, 2:-2, 2:-2].min() == 1.0 and targets[:3, 0, 0].max() == 0.0
  # Perfect probabilities: each instance's own mask.
  pasted = np.stack([example['instance'] == i for i in example['box_ids']]).astype(np.float32)
  image = instance_run.score_image(
    pasted, example['box_valid'], example['box_ids'], example['box_classes'], example['instance']
  )
  assert image['iou'].tolist() == [1.0, 1.0, 1.0] and image['boundary_f1'].tolist() == [1.0] * 3
  assert instance_metrics.mask_ap([image['match']], num_classes=6)['ap'] == 1.0
  # The blob's mask a row short: IoU 24/30 = 0.8, a match at 7 of the 10 thresholds.
  pasted[0, 5] = 0
  image = instance_run.score_image(
    pasted, example['box_valid'], example['box_ids'], example['box_classes'], example['instance']
  )
  assert image['iou'][0] == pytest.approx(0.8)
  ap = instance_metrics.mask_ap([image['match']], num_classes=6)
  assert ap['ap50'] == ap['ap75'] == 1.0 and ap['per_class'][1] == pytest.approx(0.7)


def test_the_runner_learns_writes_final_json_and_is_not_trained_again(
  shrink_task, instances_dir, tmp_path, monkeypatch
):
  config = tiny_config(shrink_task)
  final = runners.run(config, str(tmp_path))
  with open(tmp_path / 'metrics.jsonl') as f:
    losses = [r['train/loss'] for r in map(json.loads, f) if 'train/loss' in r]
  assert len(losses) == 5 and losses[-1] < losses[0]
  test = final['test']
  assert test['instances'] > 0 and final['step'] == 5
  for name in ('mask_iou', 'boundary_f1', 'mask_ap', 'mask_ap50', 'mask_ap75', 'checkerboard'):
    assert 0 <= test[name] <= 1, name
  assert final['cost']['params'] > 0
  # Each image's values (for paired tables): their weighted means are the split's scores.
  with np.load(tmp_path / f'per_image_{config.data.test_split}.npz') as f:
    per_image = dict(f)
  for name, value in (('mask_iou', 'mask_iou'), ('boundary_f1', 'boundary_f1')):
    scores, weights = np.nan_to_num(per_image[name]), per_image[f'{name}_weight']
    assert (scores * weights).sum() / weights.sum() == pytest.approx(test[value]), name
  assert per_image['mask_iou_weight'].sum() == test['instances']
  ones = np.ones((1, len(per_image['mask_iou'])))
  assert instance_metrics.weighted_mask_ap(per_image, ones)[0] == pytest.approx(test['mask_ap'])
  monkeypatch.setattr(steps, 'compile_steps', lambda *a, **k: pytest.fail('trained again'))
  assert runners.run(config, str(tmp_path)) == json.loads(json.dumps(final))


@pytest.mark.parametrize(
  'overrides, message',
  [
    ({'model.upsampler': 'max_unpool'}, r"^Upsampler 'max_unpool' needs switches, .* takes: "),
    ({'model.upsampler': 'cubic'}, r"^Unknown upsampler 'cubic'; known upsamplers: "),
    ({'data.variant': 'res64_tiny'}, r"^method 'instance' needs instance ids; .*res64_instances"),
    ({'data.random_crop': True}, r"^method 'instance' cannot take data.random_crop=True"),
  ],
)
def test_a_bad_config_is_refused_in_one_line(
  shrink_task, instances_dir, tmp_path, overrides, message
):
  with pytest.raises(ValueError, match=message) as error:
    runners.run(tiny_config(shrink_task, **overrides), str(tmp_path))
  assert '\n' not in str(error.value) and not os.listdir(tmp_path)


def test_the_sweep_starts_with_mask_rcnn_s_upsampler_and_is_seed_major():
  cells = experiment.get_sweep('decoders=classic,seeds=2')
  assert cells[0] == {
    'model.upsampler': 'transpose_conv',
    'model.upsampler_options': {'kernel_size': 2},
    'seed': 0,
  }
  assert [c['seed'] for c in cells] == [0] * 8 + [1] * 8
  assert 'max_unpool' not in {c['model.upsampler'] for c in cells}
