"""benchmarks/learns.py's plumbing at a tiny config: it trains a check at
two seeds side by side, evaluates each final checkpoint and random actions,
judges against the threshold with its exit code, and a second call reuses
what is done."""

import json
import subprocess
import sys

import pytest

from helpers import ROOT

TINY = ('--configs tiny --prefill 60 --time_limit 40 --eval_every 80 '
        '--log_every 40 --train_every 40 --train_steps 2 --pretrain 3 '
        '--batch_length 8')


def learns(*flags):
  return subprocess.run(
      [sys.executable, str(ROOT / 'benchmarks' / 'learns.py'),
       *map(str, flags)], capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_a_check_is_judged_by_its_threshold_and_reuses_its_run(tmp_path):
  flags = ('--logdir', tmp_path, '--checks', 'walker', '--steps', 120,
           '--episodes', 2, '--flags', TINY)
  short = learns(*flags, '--seeds', 1, 2, '--jobs', 2, '--threshold', 1e9)
  assert short.returncode == 1, short.stdout + short.stderr
  assert short.stdout.strip().endswith(
      '0 of 2 runs learned; short: walker seed 1, walker seed 2.')
  result, other = json.loads((tmp_path / 'learns.json').read_text())
  assert (result['seed'], other['seed']) == (1, 2)
  assert other['verdict'] == 'SHORT' and other['steps'] >= 120
  run = tmp_path / 'walker' / '1'
  assert json.loads((run / 'config.json').read_text())['seed'] == 1
  summaries = {path.parent.name: json.loads(path.read_text())
               for path in (run / 'eval').glob('*/summary.json')}
  assert sorted(summaries) == sorted(['random', str(result['steps'])])
  assert result['steps'] >= 120 and result['verdict'] == 'SHORT'
  assert result['reached'] == summaries[str(result['steps'])]['return_mean']
  assert result['random'] == summaries['random']['return_mean']
  assert summaries['random']['lengths'] == [40, 40]
  passed = learns(*flags, '--seeds', 1, '--threshold', -1e9)
  assert passed.returncode == 0, passed.stdout + passed.stderr
  assert passed.stdout.strip().endswith('1 of 1 runs learned.')
  again, = json.loads((tmp_path / 'learns.json').read_text())
  assert again['reached'] == result['reached'] and again['verdict'] == 'pass'
  assert len(list((run / 'eval').iterdir())) == 2


@pytest.mark.parametrize('flags, message', [
    (('--checks', 'nope'), "unknown check 'nope'; known: "),
    (('--jobs', '0'), '--jobs must be at least 1, got 0'),
    (('--seeds', '1', '1'), '--seeds must differ, got 1 1'),
])
def test_bad_input_is_one_line(tmp_path, flags, message):
  result = learns('--logdir', tmp_path, *flags)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1].startswith(
      f'learns.py: error: {message}')
