"""benchmarks/original_train_step.py, the original's seconds per update
through the harness: it finishes and ends with its JSON; it refuses an
unknown config."""

import subprocess
import sys

import pytest

from helpers import ROOT, run_benchmark


@pytest.mark.slow
def test_original_train_step_benchmark_reports_seconds_per_update(checkout):
  result = run_benchmark(
      'original_train_step.py', '--original', str(checkout), '--configs',
      'tiny', '--repeats', '1', '--warmup', '1')
  assert list(result) == ['float32']
  assert result['float32'] > 0


def test_original_train_step_benchmark_rejects_an_unknown_config(tmp_path):
  result = subprocess.run(
      [sys.executable, str(ROOT / 'benchmarks' / 'original_train_step.py'),
       '--original', str(tmp_path), '--configs', 'huge'], cwd=ROOT,
      capture_output=True, text=True, timeout=60)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1].endswith(
      "unknown config 'huge'; allowed: small, tiny")
