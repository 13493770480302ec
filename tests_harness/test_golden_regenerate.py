"""diff_original.py end to end at the small config, writing the golden
files afresh from the original checkout (skipped without one): it exits 0,
ends with its JSON line, and what it writes agrees with the committed
tests/reference/ to float32 round-off (the updates and the float16 step to
the tolerances their tests use).

One run (about 3 minutes on 2 busy cores: five processes of the original
and ours) serves every test here.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from helpers import F16_L2, ROOT
from harness.diff import AFTER_ATOL, AFTER_RTOL, WEIGHT_L2, WEIGHT_MAX

COMMITTED = ROOT / 'tests' / 'reference'
FILES = ('reference_weights.npz', 'reference_io.npz', 'train_step.npz',
         'train_updates.npz', 'train_step_float16.npz')
# Arrays made by our side from the seed (weights, batch, noise, module
# inputs): bit for bit. Outputs of the original: |d| ≤ ROUNDOFF·max|old|.
ROUNDOFF = 1e-5


@pytest.fixture(scope='module')
def regenerated(checkout, tmp_path_factory):
  folder = tmp_path_factory.mktemp('golden')
  env = dict(os.environ)
  env.pop('DREAMER_REFERENCE_DIR', None)
  result = subprocess.run(
      [sys.executable, str(ROOT / 'diff_original.py'), '--original',
       str(checkout), '--write-reference', str(folder)],
      capture_output=True, text=True, timeout=1200, cwd=ROOT, env=env)
  return result, folder


@pytest.mark.slow
def test_diff_original_small_passes_and_ends_with_json(regenerated):
  result, _ = regenerated
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  lines = result.stdout.splitlines()
  assert lines[0].startswith('original: ') and '56d4d44' in lines[0]
  summary = json.loads(lines[-1])
  assert summary['pass'] and summary['failed'] == 0
  assert summary['rows'] == summary['passed'] > 150
  assert summary['skipped'] == 0
  assert summary['commit'] == '56d4d44'
  assert {r.split(' ', 1)[0] for r in summary['max_rel_by_category']} == {
      'module', 'loss', 'norm', 'intermediate', 'gradient'}


def agree(key, new, old, initial=None, half=False):
  """None if `new` agrees with the committed `old`, else what differs.
  `half`: outputs of the original's float16 step, whose kernels round
  differently from one CPU to another (on an AVX-512-BF16 EPYC against the
  committed file: metrics 2^-9 of their largest value apart, the decoder's
  gradients 4.8% in norm): float16 round-off, the bounds of the float16
  step's own tests (F16_L2 per gradient, 2^-8 of the largest value)."""
  if new.dtype.kind in 'USO' or new.dtype.kind in 'iub':
    if new.dtype.kind in 'US' and key.endswith('config'):
      return None if json.loads(str(new)) == json.loads(str(old)) else 'config'
    return None if np.array_equal(new, old) else 'not equal'
  if new.shape != old.shape:
    return f'shape {new.shape} vs {old.shape}'
  new, old = new.astype(np.float64), old.astype(np.float64)
  finite = np.isfinite(old)
  if not np.array_equal(finite, np.isfinite(new)):
    return 'non-finite entries differ'
  if not finite.any():
    return None
  d, o = new[finite] - old[finite], old[finite]
  if initial is not None:  # weights after updates: against the change
    step = o - initial[finite]
    ok = (np.linalg.norm(d) <= WEIGHT_L2 * np.linalg.norm(step) and
          np.abs(d).max() <= WEIGHT_MAX * np.abs(step).max() + 1e-12)
    return None if ok else f'max |d| {np.abs(d).max():.3g}'
  if key.startswith('after/'):  # after updates: Adam amplifies round-off
    scale = WEIGHT_MAX if '/change/' in key else AFTER_RTOL
    ok = np.all(np.abs(d) <= scale * np.abs(o) + AFTER_ATOL * (scale < 0.1))
    return None if ok else f'{new} vs {old}'
  tol = ROUNDOFF * np.abs(o).max()
  if half and key.startswith('grad/'):
    bound = F16_L2[key.split('/')[1]] * np.linalg.norm(o)
    return None if np.linalg.norm(d) <= bound else (
        f'‖d‖ {np.linalg.norm(d):.3g} > {bound:.3g}')
  if half:
    tol = 2 ** -8 * np.abs(o).max()
  elif key.startswith('grad/') and new.dtype == np.float16:
    tol = 2 ** -10 * np.abs(o).max()
  return None if np.abs(d).max() <= tol else (
      f'max |d| {np.abs(d).max():.3g} > {tol:.3g}')


@pytest.mark.slow
@pytest.mark.parametrize('name', FILES)
def test_regenerated_file_agrees_with_the_committed(regenerated, name):
  _, folder = regenerated
  with np.load(folder / name) as data:
    new = dict(data)
  with np.load(COMMITTED / name) as data:
    old = dict(data)
  assert sorted(new) == sorted(old)
  with np.load(COMMITTED / 'reference_weights.npz') as data:
    weights = dict(data)
  problems = {}
  for key in old:
    initial = None
    if name == 'train_updates.npz' and '/weight/' in key:
      initial = weights[key.split('/', 3)[3]].astype(np.float64)
    elif name == 'train_updates.npz' and '/sample/' in key:
      from harness import reference_files
      full = weights[key.split('/', 3)[3]].reshape(-1)
      initial = full[reference_files.sample_indices(full.size)].astype(
          np.float64)
    problem = agree(key, new[key], old[key], initial,
                    half=name == 'train_step_float16.npz')
    if problem:
      problems[key] = problem
  assert not problems, problems


@pytest.mark.slow
def test_regenerated_counts_agree(regenerated):
  _, folder = regenerated
  assert json.loads((folder / 'param_counts.json').read_text()) == json.loads(
      (COMMITTED / 'param_counts.json').read_text())
