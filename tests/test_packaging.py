"""The repository as a library: make's editable install, and a .venv that is a symlink."""

import os
import pathlib
import shutil
import subprocess
import sys

from research import sweep


def test_this_checkout_imports_from_any_directory(tmp_path):
  """`make` runs `pip install -e .` into .venv: no sys.path set-up needed outside the repo."""
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
  out = subprocess.run(
    [
      sys.executable,
      '-c',
      'import research, launch.sweep, experiments.quick; print(research.__file__)',
    ],
    cwd=tmp_path,
    env=env,
    capture_output=True,
    text=True,
    check=False,
  )
  assert out.returncode == 0, f'{sys.executable} lacks the editable install (make): {out.stderr}'
  assert pathlib.Path(out.stdout.strip()).parents[1] == sweep.REPO


def test_gitignore_covers_a_symlinked_venv(tmp_path):
  shutil.copy(sweep.REPO / '.gitignore', tmp_path)
  subprocess.run(['git', 'init', '-q'], cwd=tmp_path, check=True)
  (tmp_path / 'elsewhere').mkdir()
  (tmp_path / '.venv').symlink_to(tmp_path / 'elsewhere')
  (tmp_path / 'upsampling_lab.egg-info').mkdir()
  (tmp_path / 'upsampling_lab.egg-info' / 'PKG-INFO').write_text('')
  status = subprocess.run(
    ['git', 'status', '--porcelain', '--untracked-files=all'],
    cwd=tmp_path,
    capture_output=True,
    text=True,
    check=True,
  ).stdout
  assert sorted(status.splitlines()) == ['?? .gitignore']
