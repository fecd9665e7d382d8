"""The training loop end to end: real steps on the embedded dataset, sharding, resume."""

import json
import os
import shutil
import signal
import time

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from experiments import quick
from research import checkpoints
from research import data
from research import preemption
from research import steps
from research import sweep
from research import train

pytestmark = pytest.mark.slow


def tiny_config(tiny_dir, **overrides):
  """A U-Net of depth 2, width 4 on 32-px lab_shapes: real, and cheap to compile."""
  c = quick.get_config()
  c.data.variant = 'res64_tiny'
  c.data.data_dir = str(tiny_dir)
  c.data.image_size = 32
  c.model.options = {'depth': 2}
  c.model.width = 4
  c.batch_size = 8
  c.eval_batch_size = 8
  c.num_steps = 4
  c.log_every = 1
  c.eval_every = 2
  c.checkpoint_every = 2
  c.progress = False
  return sweep.apply_overrides(c, overrides)


def read_jsonl(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def quality(final):
  """The quality metrics of both splits, flat (pytest.approx compares flat mappings)."""
  return {
    f'{split}/{k}': v
    for split in ('val', 'test')
    for k, v in final[split].items()
    if k != 'iou_per_class'
  }


@pytest.fixture(scope='module')
def reference(tiny_dir, tmp_path_factory):
  """One uninterrupted run on all (4 forced) devices; other tests compare against it."""
  workdir = str(tmp_path_factory.mktemp('reference'))
  return workdir, train.train_and_evaluate(tiny_config(tiny_dir), workdir)


def test_one_run_writes_its_workdir(reference):
  workdir, final = reference
  assert jax.device_count() == 4 and final['cost']['devices'] == 4
  for name in ('config.json', 'metrics.jsonl', 'final.json'):
    assert os.path.exists(os.path.join(workdir, name)), name
  assert any(
    f.startswith('events.out.tfevents') for f in os.listdir(os.path.join(workdir, 'tensorboard'))
  )
  lines = read_jsonl(workdir)
  assert [l['step'] for l in lines if 'train/loss' in l] == [1, 2, 3, 4]
  assert [l['step'] for l in lines if 'val/miou' in l] == [2, 4]
  assert lines[-1]['step'] == 4 and 'test/miou' in lines[-1]
  losses = [l['train/loss'] for l in lines if 'train/loss' in l]
  assert all(np.isfinite(losses)) and abs(losses[0] - np.log(6)) < 1.0
  for split in ('val', 'test'):
    m = final[split]
    assert 0 <= m['miou'] <= m['pixel_accuracy'] <= 1
    assert 0 <= m['boundary_f1'] <= 1 and 0 <= m['checkerboard'] <= 1
    assert len(m['iou_per_class']) == 6
  cost = final['cost']
  assert cost['params'] > 0 and cost['gflops_per_image'] > 0
  # Step time: the median of the logged intervals after warm-up (steps 2-4), also on resume.
  timed = [l for l in lines if 'train/step_seconds' in l]
  assert [l['step'] for l in timed] == [2, 3, 4]
  assert cost['step_seconds'] == np.median([l['train/step_seconds'] for l in timed])
  assert sorted(
    int(d) for d in os.listdir(os.path.join(workdir, 'checkpoints')) if d.isdigit()
  ) == [2, 4]


def test_finished_run_is_not_trained_again(reference, tiny_dir, monkeypatch):
  workdir, final = reference
  monkeypatch.setattr(steps, 'make_steps', lambda *a, **k: pytest.fail('trained again'))
  assert train.train_and_evaluate(tiny_config(tiny_dir), workdir) == json.loads(json.dumps(final))


def test_same_seed_same_metrics(reference, tiny_dir, tmp_path):
  final = train.train_and_evaluate(tiny_config(tiny_dir), str(tmp_path))
  np.testing.assert_allclose(
    read_jsonl(str(tmp_path))[0]['train/loss'], read_jsonl(reference[0])[0]['train/loss'], rtol=1e-6
  )
  assert quality(final) == pytest.approx(quality(reference[1]), abs=1e-6)


def test_one_device_matches_four(reference, tiny_dir, tmp_path):
  final = train.train_and_evaluate(tiny_config(tiny_dir, num_devices=1), str(tmp_path))
  assert final['cost']['devices'] == 1
  ref_losses = [l['train/loss'] for l in read_jsonl(reference[0]) if 'train/loss' in l]
  losses = [l['train/loss'] for l in read_jsonl(str(tmp_path)) if 'train/loss' in l]
  np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
  # The cross-device gradient sum adds in another order, so logits differ in the last
  # bits and a few near-tied pixels of the 16 × 32 × 32 flip class: 1e-3 is ~16 pixels.
  assert quality(final) == pytest.approx(quality(reference[1]), abs=1e-3)


class Killed(BaseException):
  """Stands in for SIGKILL: not an Exception, so nothing in the loop can catch it."""


def test_interrupted_run_resumes_to_the_same_result(reference, tiny_dir, tmp_path, monkeypatch):
  real = data.train_batches
  starts = []

  def dies_once_after_step_three(*args, **kwargs):
    starts.append(kwargs['start_step'])
    for i, batch in enumerate(real(*args, **kwargs)):
      if len(starts) == 1 and i == 3:
        # Checkpoints are written asynchronously: die once the step-2 one has landed.
        deadline = time.time() + 60
        while not (tmp_path / 'checkpoints' / '2').exists() and time.time() < deadline:
          time.sleep(0.05)
        raise Killed  # step 3 ran and was logged; step 2 is the latest checkpoint
      yield batch

  monkeypatch.setattr(data, 'train_batches', dies_once_after_step_three)
  with pytest.raises(Killed):
    train.train_and_evaluate(tiny_config(tiny_dir), str(tmp_path))
  assert not os.path.exists(tmp_path / 'final.json')
  assert max(l['step'] for l in read_jsonl(str(tmp_path))) == 3
  final = train.train_and_evaluate(tiny_config(tiny_dir), str(tmp_path))
  assert starts == [0, 2]  # resumed from the checkpoint, not from scratch
  assert np.isfinite(final['cost']['step_seconds'])
  assert quality(final) == pytest.approx(quality(reference[1]), abs=1e-6)
  steps = [l['step'] for l in read_jsonl(str(tmp_path)) if 'train/loss' in l]
  assert steps == [1, 2, 3, 4]  # step 3, logged before the kill, is not duplicated


def test_seeds_trained_together_match_separate_runs(reference, tiny_dir, tmp_path):
  """vmap over seeds: seed 0 trains as in the separate reference run, and each seed's
  workdir reads as a separate run's (a later separate run finds it finished)."""
  workdirs = {0: str(tmp_path / 's0'), 1: str(tmp_path / 's1')}
  finals = train.train_and_evaluate_seeds(tiny_config(tiny_dir), workdirs)
  ref_losses = [l['train/loss'] for l in read_jsonl(reference[0]) if 'train/loss' in l]
  losses = [l['train/loss'] for l in read_jsonl(workdirs[0]) if 'train/loss' in l]
  np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
  assert quality(finals[0]) == pytest.approx(quality(reference[1]), abs=1e-3)
  assert finals[1]['test']['miou'] != pytest.approx(finals[0]['test']['miou'], abs=1e-4)
  for seed, workdir in workdirs.items():
    with open(os.path.join(workdir, 'config.json')) as f:
      assert json.load(f)['seed'] == seed
    assert finals[seed]['cost']['seeds_together'] == 2
    assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['2', '4']
  again = train.train_and_evaluate(tiny_config(tiny_dir, seed=1), workdirs[1])
  assert again == json.loads(json.dumps(finals[1]))


def test_finished_seeds_are_not_trained_again(reference, tiny_dir, tmp_path):
  finals = train.train_and_evaluate_seeds(
    tiny_config(tiny_dir), {0: reference[0], 2: str(tmp_path)}
  )
  assert finals[0] == json.loads(json.dumps(reference[1]))
  assert finals[2]['cost']['seeds_together'] == 1 and finals[2]['step'] == 4


def test_a_seed_going_non_finite_stops_alone(tiny_dir, tmp_path, monkeypatch):
  real = data.train_batches

  def nan_for_seed_one(*args, **kwargs):
    for i, batch in enumerate(real(*args, **kwargs)):
      if kwargs['seed'] == 1 and i == 2:
        batch = dict(batch, image=np.full_like(batch['image'], np.nan))
      yield batch

  monkeypatch.setattr(data, 'train_batches', nan_for_seed_one)
  workdirs = {0: tmp_path / 's0', 1: tmp_path / 's1'}
  with pytest.raises(FloatingPointError, match=r'at step 3 \(seed 1\).*checkpoint \(step 2\)'):
    train.train_and_evaluate_seeds(tiny_config(tiny_dir), {s: str(w) for s, w in workdirs.items()})
  assert json.loads((workdirs[0] / 'final.json').read_text())['step'] == 4
  assert not (workdirs[1] / 'final.json').exists()
  assert sorted(os.listdir(workdirs[1] / 'checkpoints')) == ['2']
  assert max(l['step'] for l in read_jsonl(str(workdirs[1]))) == 2


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tiny_dir, tmp_path, monkeypatch):
  real = data.train_batches

  def nan_at_step_three(*args, **kwargs):
    for i, batch in enumerate(real(*args, **kwargs)):
      if i == 2:
        batch = dict(batch, image=np.full_like(batch['image'], np.nan))
      yield batch

  monkeypatch.setattr(data, 'train_batches', nan_at_step_three)
  with pytest.raises(FloatingPointError, match='at step 3.*last good checkpoint \\(step 2\\)'):
    train.train_and_evaluate(tiny_config(tiny_dir), str(tmp_path))
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['2']
  assert not os.path.exists(tmp_path / 'final.json')


def test_workdir_of_another_config_is_refused(reference, tiny_dir):
  workdir, _ = reference
  before = sorted(os.listdir(os.path.join(workdir, 'checkpoints')))
  with pytest.raises(
    ValueError, match=r'(?s)different config.*model.upsampler: .nearest. -> .bilinear.'
  ):
    train.train_and_evaluate(tiny_config(tiny_dir, **{'model.upsampler': 'bilinear'}), workdir)
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == before
  with open(os.path.join(workdir, 'config.json')) as f:
    assert json.load(f)['model']['upsampler'] == 'nearest'


def test_batch_size_must_divide_the_devices(tiny_dir, tmp_path):
  with pytest.raises(ValueError, match='batch_size=6 is not divisible by the 4 devices'):
    train.train_and_evaluate(tiny_config(tiny_dir, batch_size=6), str(tmp_path))
  # A config that fails its set-up does not claim the workdir: the corrected one may use it.
  assert not os.path.exists(tmp_path / 'config.json')


@pytest.mark.parametrize('key', ['log_every', 'checkpoint_every', 'num_steps'])
def test_counts_must_be_positive(tiny_dir, tmp_path, key):
  with pytest.raises(ValueError, match=f'{key} must be a positive integer; got 0'):
    train.train_and_evaluate(tiny_config(tiny_dir, **{key: 0}), str(tmp_path))


def test_sliding_window_trains_on_the_sampled_pixels(tiny_dir, tmp_path):
  """loss.pixels_per_image: the first logged loss is the cross-entropy of the initial
  patch classifier at exactly the pixels sample_pixels drew for step 1 of this seed, on
  the first batch."""
  c = tiny_config(
    tiny_dir,
    num_steps=2,
    eval_every=0,
    checkpoint_every=2,
    seed=1,
    **{'model.arch': 'sliding_window', 'model.width': 2},
  )
  c.model.options = {'patch': 14, 'hidden': 8}
  c.loss.pixels_per_image = 16
  final = train.train_and_evaluate(c, str(tmp_path))
  assert np.isfinite(final['test']['miou'])
  model = steps.build_model(c, 6)
  params = model.init(jax.random.key(1), np.zeros((1, 32, 32, 3), np.float32))['params']
  batch = next(data.train_batches(c.data, global_batch_size=8, seed=1, start_step=0))
  pixels = steps.sample_pixels(1, 1, 8, 32 * 32, 16)  # [8, 16]
  logits = model.apply({'params': params}, batch['image']).reshape(8, -1, 6)
  expected = steps.pixel_cross_entropy(
    np.take_along_axis(logits, pixels[..., None], axis=1),
    np.take_along_axis(batch['label'].reshape(8, -1), pixels, 1),
  )
  first = next(l['train/loss'] for l in read_jsonl(str(tmp_path)) if 'train/loss' in l)
  assert first == pytest.approx(float(expected), rel=1e-5)


def test_sampled_pixels_are_distinct_and_repeatable():
  a = steps.sample_pixels(3, 7, 4, 100, 30)
  assert a.shape == (4, 30) and a.dtype == np.int32 and a.min() >= 0 and a.max() < 100
  assert all(len(set(row)) == 30 for row in a)  # without replacement within an image
  np.testing.assert_array_equal(a, steps.sample_pixels(3, 7, 4, 100, 30))  # resume draws the same
  assert not np.array_equal(a, steps.sample_pixels(3, 8, 4, 100, 30))
  assert not np.array_equal(a, steps.sample_pixels(4, 7, 4, 100, 30))
  # Two processes keep the rows of the global batch that data.train_batches gives them.
  np.testing.assert_array_equal(steps.sample_pixels(3, 7, 4, 100, 30, 1, 2), a[1::2])


def test_pixel_sampling_is_refused_where_it_cannot_apply(tiny_dir, tmp_path):
  c = tiny_config(tiny_dir)
  c.loss.pixels_per_image = 4
  with pytest.raises(
    ValueError, match="needs an architecture that classifies chosen pixels.*'unet'"
  ):
    train.train_and_evaluate(c, str(tmp_path))
  c.model.arch, c.model.options = 'sliding_window', {}
  c.loss.pixels_per_image = 32 * 32 + 1
  with pytest.raises(ValueError, match=r'pixels_per_image must be in \[0, 1024\]'):
    train.train_and_evaluate(c, str(tmp_path))
  assert not os.path.exists(tmp_path / 'config.json')


def test_one_step_on_mock_pets(tmp_path):
  c = tiny_config('', num_steps=1, eval_every=0, checkpoint_every=1)
  c.data = data.default_config(
    name='oxford_iiit_pet', variant='', image_size=32, eval_split='train[90%:]'
  )
  c.model.upsampler = 'max_unpool'
  with tfds.testing.mock_data(num_examples=8):
    final = train.train_and_evaluate(c, str(tmp_path))
  assert set(final['test']['iou_per_class']) == {'pet', 'background', 'border'}
  assert np.isfinite(final['test']['miou'])


def test_final_evaluation_keeps_every_image_for_paired_statistics(reference):
  workdir, final = reference
  test = final['test']
  for key in (
    'thin_iou',
    'small_object_recall',
    'shift_consistency',
    'shift_consistency_s1',
    'trimap_miou_w2',
    'trimap_miou_w4',
    'checkerboard_logits',
    'checkerboard_features',
  ):
    assert key in test, key
  assert 0 <= test['trimap_miou_w1'] <= 1 and 0 <= test['shift_consistency'] <= 1
  assert set(final['init']) == {'checkerboard', 'checkerboard_logits', 'checkerboard_features'}
  with np.load(os.path.join(workdir, 'per_image_test.npz')) as per_image:
    n = len(per_image['confusion'])
    assert n == 16  # res64_tiny's test split, every image once, padding dropped
    assert per_image['shift_consistency'].shape == (n, 7) and per_image['trimap'].shape[:2] == (
      n,
      5,
    )
    # The split's mIoU is the one of the summed per-image confusions.
    confusion = per_image['confusion'].sum(0)
    iou = np.diag(confusion) / (confusion.sum(0) + confusion.sum(1) - np.diag(confusion))
    assert test['miou'] == pytest.approx(np.nanmean(iou))
  assert os.path.exists(os.path.join(workdir, 'per_image_init_test.npz'))


def test_a_preemption_notice_checkpoints_the_current_step_and_resume_continues(
  reference, tiny_dir, tmp_path, monkeypatch
):
  """SIGTERM mid-run: the run saves at the step it reached (3, between the periodic
  checkpoints at 2 and 4), stops with Preempted, and the same call resumes from there to the
  uninterrupted run's result."""
  real = data.train_batches

  def notice_at_step_three(*args, **kwargs):
    for i, batch in enumerate(real(*args, **kwargs)):
      if kwargs['start_step'] == 0 and i == 2:  # step 2 ran; the notice comes before step 3
        os.kill(os.getpid(), signal.SIGTERM)
      yield batch

  monkeypatch.setattr(data, 'train_batches', notice_at_step_three)
  with pytest.raises(preemption.Preempted, match='Preempted at step 3'):
    train.train_and_evaluate(tiny_config(tiny_dir), str(tmp_path))
  assert sorted(int(d) for d in os.listdir(tmp_path / 'checkpoints') if d.isdigit()) == [2, 3]
  assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone again
  final = train.train_and_evaluate(tiny_config(tiny_dir), str(tmp_path))
  assert quality(final) == pytest.approx(quality(reference[1]), abs=1e-6)


def test_an_unreadable_checkpoint_is_set_aside_and_the_previous_one_restored(
  reference, tiny_dir, tmp_path
):
  workdir = tmp_path / 'run'
  shutil.copytree(reference[0], workdir)
  os.remove(workdir / 'final.json')  # as if killed after saving step 4
  for path in (workdir / 'checkpoints' / '4').rglob('*'):
    if path.is_file():
      path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])  # truncated
  final = train.train_and_evaluate(tiny_config(tiny_dir), str(workdir))
  assert quality(final) == pytest.approx(quality(reference[1]), abs=1e-6)  # retrained 3 and 4
  [kept] = os.listdir(workdir / checkpoints.BROKEN)  # kept for inspection, not deleted
  assert kept.startswith('4-')
