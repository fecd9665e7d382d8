"""Issue 20's video task (research.video_run, experiments/video.py): clips through the data
layer, the evaluation on constructed predictions, and the runner end to end on tiny data."""

import json
import os

import numpy as np
import pytest

from experiments import decoder_ablation
from experiments import video
from research import data
from research import runners
from research import video_run
from research import workdir as workdir_lib

CLIPS = 'res64_clips_tiny'  # 8 / 4 / 4 clips of 8 frames


def tiny_config(shrink_task, **overrides):
  """experiments/video.py on tiny stills and clips (conftest's shrink_task)."""
  c = video.get_config('steps=3,width=4')
  c.video.variant = CLIPS
  c.checkpoint_every = 3
  return shrink_task(c, 'res64_tiny', **overrides)


def test_clips_are_read_as_stacked_frames(clips_dir):
  config = data.default_config(variant=CLIPS, data_dir=str(clips_dir), image_size=32)
  batches = list(data.eval_clips(config, 'test', global_batch_size=3))
  assert [b['valid'].tolist() for b in batches] == [[True] * 3, [True, False, False]]
  assert batches[0]['image'].shape == (3, 8, 32, 32, 3)
  assert batches[0]['label'].shape == (3, 8, 32, 32)
  assert (batches[1]['label'][1:] == 255).all()  # padding is ignored everywhere


def test_perfect_labels_score_miou_one_and_no_flicker(clips_dir):
  config = data.default_config(variant=CLIPS, data_dir=str(clips_dir), image_size=32)
  info = data.dataset_info(config)
  truth = {}
  for batch in data.eval_clips(config, 'test', global_batch_size=4):
    for images, labels in zip(batch['image'], batch['label']):
      truth.update({f.tobytes(): l for f, l in zip(images, labels)})

  def oracle(frames):  # the ground truth of each frame
    return np.stack([truth[f.tobytes()] for f in frames])

  scores, per_clip = video_run.evaluate_clips(oracle, config, 'test', info, batch_size=16)
  assert scores['miou'] == pytest.approx(1.0) and scores['flicker'] == 0.0
  assert scores['per_frame_miou'] == pytest.approx([1.0] * 8)
  assert per_clip['confusion'].shape == (4, 8, 6, 6) and (per_clip['stable'] > 0).all()

  def constant(frames):  # one label everywhere: never flickers, background IoU only
    return np.zeros(frames.shape[:3], np.int64)

  scores, _ = video_run.evaluate_clips(constant, config, 'test', info, batch_size=16)
  assert scores['flicker'] == 0.0 and scores['miou'] < 0.2

  def alternating(frames):  # frame parity flips every label: everything stable flickers
    return np.stack([truth[f.tobytes()] + (i % 2) * 10 for i, f in enumerate(frames)])

  scores, _ = video_run.evaluate_clips(alternating, config, 'test', info, batch_size=8)
  assert scores['flicker'] == 1.0


def test_the_runner_scores_clips_before_final_json_and_from_a_checkpoint_alike(
  shrink_task, clips_dir, tmp_path, monkeypatch
):
  config = tiny_config(shrink_task)
  finals_written, write = [], workdir_lib.write_json_atomic

  def noting_finals(path, obj):
    if os.path.basename(path) == 'final.json':
      finals_written.append(obj)
    write(path, obj)

  monkeypatch.setattr(workdir_lib, 'write_json_atomic', noting_finals)
  final = runners.run(config, str(tmp_path))
  assert len(finals_written) == 1 and 'video' in finals_written[0]  # finished only with clips
  v = final['video']
  assert set(v) >= {'miou', 'per_frame_miou', 'flicker', 'shift_consistency', 'still_miou'}
  assert 0 <= v['flicker'] <= 1 and len(v['per_frame_miou']) == 8 and v['clips'] == 4
  assert v['shift_consistency'] == final['test']['shift_consistency']
  assert os.path.exists(tmp_path / 'per_clip_test.npz')
  with open(tmp_path / 'final.json') as f:
    assert json.load(f)['video'] == json.loads(json.dumps(v))
  # A final.json without the clips (an earlier version, killed between the stills' and the
  # clips' evaluations): not trained again, scored from the checkpoint to the same values.
  written = {k: x for k, x in final.items() if k != 'video'}
  with open(tmp_path / 'final.json', 'w') as f:
    json.dump(written, f)
  again = runners.run(config, str(tmp_path))
  assert json.dumps(again['video'], sort_keys=True) == json.dumps(v, sort_keys=True)


def test_a_config_without_clips_is_refused_in_one_line(shrink_task, tmp_path):
  with pytest.raises(ValueError, match=r"^config.video.variant='res64_tiny' is not .* res64_clips"):
    runners.run(tiny_config(shrink_task, **{'video.variant': 'res64_tiny'}), str(tmp_path))
  assert not os.listdir(tmp_path)


def test_the_sweep_is_seed_major_over_the_upsamplers():
  cells = video.get_sweep('decoders=classic,seeds=2')
  assert [c['seed'] for c in cells] == [0] * 8 + [1] * 8
  assert {c['model.upsampler'] for c in cells} == set(decoder_ablation.CLASSIC)
  assert len(video.get_sweep('seeds=1')) == 14
