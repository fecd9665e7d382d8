"""The import structure: one direction (launch → experiments → runners → building blocks),
no import circle between research modules, and no import inside a function."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# The building blocks: what models, upsamplers, data and metrics are made of. They never
# import a runner (training, evaluation, sweeps, tables, benchmarks).
BLOCKS = (
  'research.upsamplers',
  'research.models',
  'research.data',
  'research.metrics',
  'research.pooling',
  'research.cost',
  'research.workdir',
  'research.config_utils',
  'research.xla_flags',
  'research.clustering',
  'research.torch_reference',
  'research.decoder_metrics',
  'research.roi_align',
  'research.instance_metrics',
  'research.panoptic',
  'research.panoptic_metrics',
  'research.video_metrics',
  'research.stats',
  'research.onednn',
)
# Optional dependencies may be imported where they are used, each with a comment saying why.
OPTIONAL = ('torch', 'tensorboardX', 'research.torch_reference')


def is_block(module: str) -> bool:
  """Whether `module` is one of BLOCKS or inside one (research.panoptic_run is not
  research.panoptic)."""
  return any(module == block or module.startswith(block + '.') for block in BLOCKS)


def module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(ROOT).with_suffix('').parts
  return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def imports(path: pathlib.Path):
  """(imported module, line, inside a function) for each import of a file."""
  tree = ast.parse(path.read_text())
  in_function = set()
  for node in ast.walk(tree):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      in_function.update(id(n) for n in ast.walk(node) if n is not node)
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module:
      names = [f'{node.module}.{a.name}' for a in node.names]
    else:
      continue
    for name in names:
      yield name, node.lineno, id(node) in in_function


def graph(package: str) -> dict[str, set[str]]:
  """{module: the modules of the project it imports} for every file under `package`."""
  files = sorted((ROOT / package).rglob('*.py'))
  known = {module_name(f) for f in files} | {'research', 'experiments', 'launch'}
  edges = {}
  for f in files:
    targets = set()
    for name, _, _ in imports(f):
      while name and name not in known:  # `from research import data` names research.data
        name = name.rpartition('.')[0]
      if name:
        targets.add(name)
    edges[module_name(f)] = targets - {module_name(f)}
  return edges


@pytest.mark.parametrize('package', ['research', 'launch', 'experiments'])
def test_no_import_inside_a_function_but_optional_dependencies(package):
  found = [
    f'{f.relative_to(ROOT)}:{line} {name}'
    for f in sorted((ROOT / package).rglob('*.py'))
    for name, line, inside in imports(f)
    if inside and not name.startswith(OPTIONAL)
  ]
  assert not found


def test_imports_run_one_way():
  everything = {**graph('research'), **graph('experiments'), **graph('launch')}
  wrong = []
  for module, targets in everything.items():
    for target in targets:
      if module.startswith('research') and target.startswith(('experiments', 'launch')):
        wrong.append(f'{module} -> {target} (the library imports no experiment or entry point)')
      if module.startswith('experiments') and target.startswith('launch'):
        wrong.append(f'{module} -> {target}')
      if (
        module.startswith('experiments')
        and target.startswith('research.sweep')
        and target != 'research.sweep.grids'
      ):
        wrong.append(f'{module} -> {target} (experiments use only the grid helpers)')
      if is_block(module) and target.startswith('research.') and not is_block(target):
        wrong.append(f'{module} -> {target} (a building block imports no runner)')
  assert not wrong


def test_no_import_circle_between_research_modules():
  edges = graph('research')
  state = {}

  def visit(module, path):
    state[module] = 'open'
    for target in sorted(edges.get(module, ())):
      if state.get(target) == 'open':
        cycle = path[path.index(target) :] + [target]
        pytest.fail('import circle: ' + ' -> '.join(cycle))
      if target not in state:
        visit(target, path + [target])
    state[module] = 'done'

  for module in sorted(edges):
    if module not in state:
      visit(module, [module])
  assert state  # the graph was read


def test_no_research_module_over_350_lines():
  long = {
    str(f.relative_to(ROOT)): n
    for f in sorted((ROOT / 'research').rglob('*.py'))
    if (n := len(f.read_text().splitlines())) > 360
  }
  assert not long
