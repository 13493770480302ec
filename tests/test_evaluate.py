"""evaluate.py: a trained run's checkpoint in test episodes, nothing written
into the run, the same returns for the same seed, one-line errors."""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import imageio.v3 as iio
import pytest

from helpers import ROOT


def evaluate(*flags, check=True):
  result = subprocess.run(
      [sys.executable, str(ROOT / 'evaluate.py'), *map(str, flags)],
      capture_output=True, text=True, timeout=600, cwd=ROOT,
      env=dict(os.environ, PYTHONUNBUFFERED='1'))
  if check:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  return result


def fingerprint(logdir):
  """Hashes of every file of the run outside eval/."""
  return {
      str(path.relative_to(logdir)): hashlib.sha256(path.read_bytes()).hexdigest()
      for path in sorted(logdir.rglob('*'))
      if path.is_file() and 'eval' not in path.relative_to(logdir).parts}


@pytest.fixture(scope='module')
def trained(tiny_run, tmp_path_factory):
  """A copy of the shared tiny run: evaluations write its eval/."""
  logdir = tmp_path_factory.mktemp('trained') / 'run'
  shutil.copytree(tiny_run[0], logdir)
  return logdir


@pytest.mark.slow
def test_evaluation_writes_summary_and_videos_and_leaves_the_run(trained):
  before = fingerprint(trained)
  output = evaluate('--logdir', trained, '--episodes', 3, '--seed', 1).stdout
  assert fingerprint(trained) == before
  assert output.count('Episode ') == 3 and 'Return ' in output
  folder, = (trained / 'eval').iterdir()
  summary = json.loads((folder / 'summary.json').read_text())
  assert summary['episodes'] == 3 and len(summary['returns']) == 3
  assert summary['lengths'] == [40, 40, 40] and summary['seed'] == 1
  assert summary['step'] == 160 and summary['updates'] > 0
  assert summary['config']['task'] == 'dmc_cartpole_balance'
  for index in (1, 2, 3):
    frames = iio.imread(folder / f'episode-{index}.mp4', index=None)
    assert frames.shape == (21, 64, 64, 3)  # 40 / action repeat 2, + reset.
  openl = iio.imread(folder / 'openl.mp4', index=None)
  assert openl.shape[1:] == (192, 64, 3)  # Truth, model, error.
  again = evaluate('--logdir', trained, '--episodes', 3, '--seed', 1,
                   '--video', 'gif').stdout
  second = json.loads((trained / 'eval' / f'{folder.name}-2' / 'summary.json')
                      .read_text())
  assert second['returns'] == summary['returns'], (output, again)
  assert (trained / 'eval' / f'{folder.name}-2' / 'episode-1.gif').exists()


@pytest.mark.slow
def test_a_checkpoint_of_another_config_is_one_line(trained, tmp_path):
  result = evaluate('--logdir', trained, '--num_units', 32, '--outdir',
                    tmp_path / 'out', check=False)
  assert result.returncode == 2, result.stderr
  error = result.stderr.strip().splitlines()[-1]
  assert error.startswith('evaluate.py: error:') and 'does not fit' in error
  assert 'shape' in error and not (tmp_path / 'out').exists()


@pytest.mark.parametrize('case', ['missing', 'empty', 'zero'])
def test_bad_input_is_one_line(tmp_path, case):
  logdir = tmp_path / 'run'
  if case != 'missing':
    logdir.mkdir()
  flags = ['--logdir', logdir] + (['--episodes', 0] if case == 'zero' else [])
  result = evaluate(*flags, check=False)
  assert result.returncode == 2
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('evaluate.py: error:'), lines
  message = {'missing': 'is not a folder', 'empty': 'no checkpoint',
             'zero': '--episodes must be at least 1'}[case]
  assert message in lines[0]
  assert not (tmp_path / 'run' / 'eval').exists()


@pytest.mark.slow
def test_random_actions_need_only_the_config(trained, tmp_path):
  logdir = tmp_path / 'config-only'
  logdir.mkdir()
  shutil.copy(trained / 'config.json', logdir)
  runs = [evaluate('--logdir', logdir, '--random', '--episodes', 3,
                   '--seed', 1, '--video', 'none').stdout for _ in range(2)]
  assert 'Evaluating uniform random actions on 3 episodes' in runs[0]
  first, second = [json.loads((logdir / 'eval' / name / 'summary.json')
                              .read_text()) for name in ('random', 'random-2')]
  assert first['policy'] == 'random' and first['lengths'] == [40, 40, 40]
  assert first['returns'] == second['returns']
  assert len(set(first['returns'])) == 3
  assert sorted(path.name for path in logdir.iterdir()) == [
      'config.json', 'eval']


def test_random_with_a_checkpoint_is_one_line(tmp_path):
  result = evaluate('--logdir', tmp_path, '--random', '--kept', check=False)
  assert result.returncode == 2
  assert result.stderr.strip() == (
      'evaluate.py: error: --random acts without a checkpoint: pass it '
      'without --checkpoint and --kept')
