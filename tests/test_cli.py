"""The entry points as a person meets them: configuration errors in one line, library logs off
the terminal, details on request."""

import subprocess
import sys

import ml_collections

from launch import cli
from research import sweep


def _train(*flags):
  return subprocess.run(
    [
      sys.executable,
      '-m',
      'launch.train',
      '--config=experiments/quick.py',
      '--workdir=/nonexistent/never-written',
      *flags,
    ],
    cwd=sweep.REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )


def test_a_config_typo_is_one_line_and_exit_2():
  out = _train('--config.model.upsampler_typo=3')
  assert out.returncode == 2
  assert out.stderr.startswith(
    'error: the config has no field \'upsampler_typo\'. Did you mean "upsampler"'
  ), out.stderr[-2000:]
  assert 'Traceback' not in out.stderr
  detailed = _train('--config.model.upsampler_typo=3', '--traceback')
  assert detailed.returncode != 0 and 'Traceback' in detailed.stderr


def test_a_bad_value_names_what_is_valid_and_libraries_stay_quiet():
  out = _train('--config.model.upsampler=cubic')
  assert out.returncode == 2
  lines = out.stderr.strip().splitlines()
  assert lines[0].startswith("error: Unknown upsampler 'cubic'; known upsamplers: ")
  assert len(lines) == 2  # the error and the hint: no INFO lines, no OpenCV warning


def test_only_config_key_errors_are_read_as_missing_fields():
  config = ml_collections.ConfigDict({'upsampler': 'nearest'})
  try:
    config.upsampler_typo  # noqa: B018
  except AttributeError as e:
    assert cli.message(e).startswith("the config has no field 'upsampler_typo'")
  assert cli.message(KeyError('confusion')) == 'confusion'  # a bug's KeyError, not a config's
