"""The XLA flags research sets by default, and the user's flags winning over them."""

import os
import subprocess
import sys

from research import xla_flags


def test_defaults_are_appended_to_the_users_flags():
  flags = xla_flags.with_defaults('--xla_force_host_platform_device_count=4')
  assert flags.split()[0] == '--xla_force_host_platform_device_count=4'
  for name, value in xla_flags.DEFAULTS.items():
    assert f'{name}={value}' in flags.split()


def test_a_flag_the_user_set_is_left_as_it_is():
  name = next(iter(xla_flags.DEFAULTS))
  assert xla_flags.with_defaults(f'{name}=') == f'{name}='
  assert xla_flags.with_defaults(f'{name}=').count(name) == 1


def test_the_test_session_applies_them_as_entry_points_do():
  for name in xla_flags.DEFAULTS:
    assert name in os.environ['XLA_FLAGS']


def test_they_can_be_turned_off(monkeypatch):
  monkeypatch.setenv('XLA_FLAGS', '--xla_force_host_platform_device_count=4')
  monkeypatch.setenv('UPSAMPLING_LAB_XLA_DEFAULTS', '0')
  xla_flags.apply()
  assert os.environ['XLA_FLAGS'] == '--xla_force_host_platform_device_count=4'


def test_importing_the_library_leaves_xla_flags_alone():
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  code = 'import os, research, research.train, research.models; print(os.environ.get("XLA_FLAGS"))'
  out = subprocess.run(
    [sys.executable, '-c', code],
    env=env,
    capture_output=True,
    text=True,
    check=True,
    cwd=os.path.dirname(os.path.dirname(__file__)),
  )
  assert out.stdout.strip() == 'None'
