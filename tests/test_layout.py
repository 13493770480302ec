"""The layout's rules, read from the source with `ast` (nothing imported):

- no agent module imports the harness (harness/: the machinery that runs
  the original's code to compare ours with it). Agent modules: every .py
  at the root but the two entry points into the harness, networks/, and
  benchmarks/ but the original's benchmark;
- no harness module takes a name the original's modules load under;
- tests/ and tests_harness/ are not packages: a test file's name is unique
  across both (pytest imports each by its base name).
"""

import ast

import pytest

from helpers import ROOT

ENTRY_POINTS = ('diff_original.py', 'original_train.py')
HARNESS_BENCHMARKS = ('original_train_step.py', 'versus_original.py')
ORIGINAL_NAMES = ('dreamer', 'models', 'tools', 'wrappers')


def agent_modules():
  """The paths of the agent's modules (see the docstring)."""
  root = [p for p in ROOT.glob('*.py') if p.name not in ENTRY_POINTS]
  benchmarks = [p for p in (ROOT / 'benchmarks').glob('*.py')
                if p.name not in HARNESS_BENCHMARKS]
  return sorted(root) + sorted((ROOT / 'networks').glob('*.py')) + sorted(
      benchmarks)


def imported(source):
  """The top-level package of every absolute import in `source`, function
  bodies included."""
  names = set()
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Import):
      names.update(alias.name.split('.')[0] for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.level == 0:
      names.add(node.module.split('.')[0])
  return names


def test_no_agent_module_imports_the_harness():
  modules = agent_modules()
  names = {p.relative_to(ROOT).as_posix() for p in modules}
  assert {'dreamer.py', 'networks/rssm.py', 'benchmarks/train_step.py'} <= (
      names)
  assert not names & {'diff_original.py', 'harness/diff.py'}
  offenders = [p.relative_to(ROOT).as_posix() for p in modules
               if 'harness' in imported(p.read_text())]
  assert not offenders, f'agent modules importing the harness: {offenders}'


@pytest.mark.parametrize('source', [
    'import harness', 'import harness.step as s', 'from harness import diff',
    'from harness.compat import load_original',
    'def f():\n  from harness import train',
])
def test_the_rule_sees_every_form_of_import(source):
  assert 'harness' in imported(source)


def test_entry_points_only_import_the_harness():
  for name in ENTRY_POINTS:
    source = (ROOT / name).read_text()
    assert imported(source) <= {'sys', 'harness'}, name
    assert len(source.splitlines()) <= 20, name


def test_no_harness_module_takes_a_name_of_the_originals():
  stems = {p.stem for p in (ROOT / 'harness').glob('*.py')}
  assert {'compat', 'step', 'diff'} <= stems
  assert not stems & set(ORIGINAL_NAMES)


def test_test_file_names_are_unique_across_the_two_folders():
  ours = {p.name for p in (ROOT / 'tests').glob('*.py')}
  harness = {p.name for p in (ROOT / 'tests_harness').glob('*.py')}
  assert ours & harness == {'conftest.py'}
  assert not (ROOT / 'tests' / '__init__.py').exists()
  assert not (ROOT / 'tests_harness' / '__init__.py').exists()
