"""What every entry point shares: the XLA defaults before JAX starts, a quiet terminal (library
INFO logs go to the run's log file, not the screen), and configuration or usage errors as one
clear line with a non-zero exit instead of a traceback."""

import logging as pylogging
import os
import sys

from absl import app
from absl import flags
from absl import logging

from research import xla_flags

_VERBOSE = flags.DEFINE_bool(
  'verbose',
  False,
  "Show the libraries' INFO logs on the terminal too (they always go to the run's log file).",
)
_TRACEBACK = flags.DEFINE_bool(
  'traceback', False, 'Show the traceback of a configuration or usage error.'
)

# What bad input raises here: a value out of range or an unknown name (ValueError), a missing
# or foreign file (FileNotFoundError, FileExistsError); while the flags are parsed, a config
# typo too (ml_collections' AttributeError around a KeyError). Anything else is a bug and
# keeps its traceback.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError)
PARSE_ERRORS = USER_ERRORS + (AttributeError, KeyError)
EXIT_USAGE = 2


def _config_key_error(error: BaseException):
  """The KeyError inside ml_collections' AttributeError for a field a config lacks."""
  if isinstance(error, AttributeError) and error.args and isinstance(error.args[0], KeyError):
    return error.args[0]
  return None


def message(error: BaseException) -> str:
  """The error's own words: for a config typo 'the config has no field ...' rather than
  ml_collections' escaped string."""
  key_error = _config_key_error(error)
  if key_error is not None:
    name, _, hint = str(key_error.args[0] if key_error.args else key_error).partition('\n')
    return f'the config has no field {name}' + (f'. {hint}' if hint else '.')
  text = error.args[0] if error.args and isinstance(error.args[0], str) else str(error)
  return text.strip()


# Warnings that say nothing about the run, kept off the terminal (they stay in the run log):
# TFDS prefers OpenCV for decoding images it never decodes here (the data is array_record).
_HARMLESS = ('OpenCV is not installed',)


def _terminal_filter(record) -> bool:
  return not any(text in str(record.msg) for text in _HARMLESS)


def _fail(error: BaseException):
  print(f'error: {message(error)}', file=sys.stderr)
  print('(run again with --traceback for the details)', file=sys.stderr)
  sys.exit(EXIT_USAGE)


def _parse(argv):
  """absl's flag parsing, with config-override errors (raised while parsing) in one line."""
  try:
    return app.parse_flags_with_usage(argv)
  except PARSE_ERRORS as e:
    if '--traceback' in argv:
      raise
    _fail(e)


class _RunLog(pylogging.Handler):
  """Every record (INFO and up, libraries included) appended to a file in a run's directory,
  held in memory until that directory exists: a run refused before it claims its workdir
  leaves nothing there."""

  def __init__(self, path: str):
    super().__init__(pylogging.INFO)
    self.path, self.held, self.file = path, [], None
    self.setFormatter(logging.PythonFormatter())

  def emit(self, record):
    self.held.append(self.format(record))
    if self.file is None and os.path.isdir(os.path.dirname(self.path)):
      self.file = open(self.path, 'a')  # closed with the process
    if self.file is not None:
      self.file.write(''.join(line + '\n' for line in self.held))
      self.file.flush()
      self.held = []


def log_to(path: str):
  """Also write every log record to `path` (once its directory exists)."""
  pylogging.getLogger().addHandler(_RunLog(path))


def run(main):
  """app.run(main) with the XLA defaults, the quiet terminal and one-line errors."""
  xla_flags.apply()

  def wrapped(argv):
    logging.set_verbosity(logging.INFO)  # records are made; the terminal shows WARNING and up
    pylogging.getLogger().setLevel(pylogging.INFO)
    terminal = logging.get_absl_handler()
    terminal.setLevel(pylogging.INFO if _VERBOSE.value else pylogging.WARNING)
    if not _VERBOSE.value:
      terminal.addFilter(_terminal_filter)
    try:
      return main(argv)
    except (*USER_ERRORS, AttributeError) as e:
      if _TRACEBACK.value or (isinstance(e, AttributeError) and not _config_key_error(e)):
        raise
      _fail(e)

  app.run(wrapped, flags_parser=_parse)
