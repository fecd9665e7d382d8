"""The run's files: a resumed run's metrics read as one clean run, in metrics.jsonl and
TensorBoard."""

import json
import os

import pytest
from tensorboardX.proto import event_pb2

from experiments import base
from research import workdir as workdir_lib


def tensorboard_steps(workdir, tag):
  """The steps of scalar `tag` as TensorBoard shows them: event files in name (= time)
  order, and a SessionLog START at step S hides the earlier events at steps >= S."""
  directory = os.path.join(workdir, 'tensorboard')
  steps = []
  for name in sorted(os.listdir(directory)):
    with open(os.path.join(directory, name), 'rb') as f:
      data = f.read()
    offset = 0
    while offset < len(data):  # TFRecord: u64 length, u32 crc, payload, u32 crc
      length = int.from_bytes(data[offset : offset + 8], 'little')
      event = event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length])
      offset += 16 + length
      if event.session_log.status == event_pb2.SessionLog.START:
        steps = [s for s in steps if s < event.step]
      steps += [event.step for v in event.summary.value if v.tag == tag]
  return steps


def test_resumed_run_logs_each_step_once(tmp_path):
  workdir = str(tmp_path)
  first = workdir_lib.MetricWriter(workdir, resume_step=0)
  for step in (1, 2, 3):  # step 3 is logged, then the run dies before checkpointing it
    first.write(step, {'train/loss': float(step)})
  first.close()
  with open(os.path.join(workdir, 'metrics.jsonl'), 'a') as f:
    f.write('{"step": 4, "train/lo')  # a line the kill cut short
  # Resumed from the step-2 checkpoint, in the same second: its event file is a new one.
  resumed = workdir_lib.MetricWriter(workdir, resume_step=2)
  assert resumed.values('train/loss') == [1.0, 2.0]
  for step in (3, 4):
    resumed.write(step, {'train/loss': 10.0 * step})
  resumed.close()
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    assert [json.loads(line)['train/loss'] for line in f] == [1.0, 2.0, 30.0, 40.0]
  assert len(os.listdir(os.path.join(workdir, 'tensorboard'))) == 2
  assert tensorboard_steps(workdir, 'train/loss') == [1, 2, 3, 4]


def test_run_restarted_from_scratch_hides_its_first_attempt(tmp_path):
  workdir = str(tmp_path)
  first = workdir_lib.MetricWriter(workdir, resume_step=0)
  for step in (1, 2, 3):  # killed before its first checkpoint
    first.write(step, {'train/loss': 1.0})
  first.close()
  again = workdir_lib.MetricWriter(workdir, resume_step=0)
  for step in (1, 2):
    again.write(step, {'train/loss': 2.0})
  again.close()
  assert tensorboard_steps(workdir, 'train/loss') == [1, 2]


def test_a_config_written_before_a_field_was_added_still_matches(tmp_path):
  config = base.get_config()
  old = workdir_lib.config_to_dict(config)
  del old['method']  # written before `method` was declared: it ran the training method
  (tmp_path / 'config.json').write_text(json.dumps(old))
  workdir_lib.check_config(config, str(tmp_path))  # no error: the same run
  config.method = 'kmeans'
  with pytest.raises(ValueError, match="method: 'train' -> 'kmeans'"):
    workdir_lib.check_config(config, str(tmp_path))
