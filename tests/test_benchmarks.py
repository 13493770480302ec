"""Smoke runs of the timing scripts: they finish and end with their JSON."""

import json
import os
import subprocess
import sys

import pytest

from helpers import ROOT


def run_script(name, *flags):
  """The parsed last stdout line of `benchmarks/name` run with `flags`."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  result = subprocess.run(
      [sys.executable, str(ROOT / 'benchmarks' / name), *flags], cwd=ROOT,
      env=env, capture_output=True, text=True, timeout=180)
  assert result.returncode == 0, result.stderr[-2000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_train_step_benchmark_reports_seconds_per_update():
  result = run_script(
      'train_step.py', '--tiny', '--repeats', '1', '--warmup', '1',
      '--precision', '32')
  assert list(result) == ['float32']
  assert result['float32'] > 0


@pytest.mark.slow
def test_collect_benchmark_reports_env_steps_per_second():
  result = run_script('collect.py', '--tiny')
  assert list(result) == ['env_steps_per_second']
  assert result['env_steps_per_second'] > 0


@pytest.mark.slow
def test_original_train_step_benchmark_reports_seconds_per_update(checkout):
  result = run_script(
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
