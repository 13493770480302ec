"""Smoke runs of the timing scripts of ours: they finish and end with their
JSON (the original's, benchmarks/original_train_step.py, is run by
tests_harness/test_original_benchmark.py)."""

import pytest

from helpers import run_benchmark


@pytest.mark.slow
def test_train_step_benchmark_reports_seconds_per_update():
  result = run_benchmark(
      'train_step.py', '--tiny', '--repeats', '1', '--warmup', '1',
      '--precision', '32')
  assert list(result) == ['float32']
  assert result['float32'] > 0


@pytest.mark.slow
def test_collect_benchmark_reports_env_steps_per_second():
  result = run_benchmark('collect.py', '--tiny')
  assert list(result) == ['env_steps_per_second']
  assert result['env_steps_per_second'] > 0


@pytest.mark.slow
def test_versus_original_takes_turns_and_reports_the_ratio():
  # Ours against ours (the original's side needs its checkout: tests_harness).
  result = run_benchmark(
      'versus_original.py', '--programs', 'ours',
      'ours@TF_NUM_INTEROP_THREADS=1', '--configs', 'tiny', '--rounds', '1', '--warmup', '1', '--no_stats')
  assert set(result) == {
      'ours', 'ours@TF_NUM_INTEROP_THREADS=1',
      'ours@TF_NUM_INTEROP_THREADS=1/ours'}
  assert all(value > 0 for value in result.values())
