"""conftest's --no-skip (what CI runs with): every kind of skip fails, naming its reason."""

import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

TESTS = """\
import pytest


def test_passes():
  pass


@pytest.mark.skipif(True, reason='needs a thing CI installs')
def test_marked():
  pass


def test_imports():
  pytest.importorskip('no_such_module_here')


@pytest.mark.xfail(reason='known bug', strict=True)
def test_known_bug():
  assert False
"""


def _pytest(directory, *args):
  env = {k: v for k, v in os.environ.items() if k != 'PYTEST_ADDOPTS'}  # CI's --no-skip
  return subprocess.run(
    [
      sys.executable,
      '-m',
      'pytest',
      '-ra',
      '-p',
      'no:cacheprovider',
      f'--rootdir={directory}',
      *args,
    ],
    cwd=directory,
    env=env,
    capture_output=True,
    text=True,
    check=False,
  )


def test_no_skip_turns_skips_into_failures(tmp_path):
  shutil.copy(pathlib.Path(__file__).with_name('conftest.py'), tmp_path)
  (tmp_path / 'test_some.py').write_text(TESTS)
  (tmp_path / 'test_module_skip.py').write_text(
    textwrap.dedent("""\
      import pytest
      pytest.skip('whole module needs torch', allow_module_level=True)
      """)
  )

  plain = _pytest(tmp_path)
  assert plain.returncode == 0, plain.stdout
  assert '1 passed, 3 skipped, 1 xfailed' in plain.stdout

  strict = _pytest(tmp_path, '--no-skip', 'test_some.py')
  assert strict.returncode == 1, strict.stdout
  assert '1 failed, 1 passed, 1 xfailed, 1 error' in strict.stdout  # skipif acts in set-up
  assert 'Skipped, and --no-skip forbids it: needs a thing CI installs' in strict.stdout
  assert "forbids it: could not import 'no_such_module_here'" in strict.stdout

  module = _pytest(tmp_path, '--no-skip', 'test_module_skip.py')
  assert module.returncode == 2, module.stdout  # a collection error stops the session
  assert 'Skipped, and --no-skip forbids it: whole module needs torch' in module.stdout
