"""sweep.py --original: the original's program (original_train.py) for each
run, with the sweep's config in its own flags, into LOGDIR/original/TASK/SEED,
on SLURM where there is one (.ci/slurm.sh starts it), else locally;
--status from the logdir alone; plotting.py --sweep labels it."""

import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from conftest import ROOT

FLAGS = ['--configs', 'tiny', '--prefill', '60', '--time_limit', '40',
         '--eval_every', '40', '--log_every', '40', '--train_every', '40',
         '--train_steps', '2', '--pretrain', '3', '--batch_length', '8',
         '--log_images', 'False']


def sweep(*args):
  env = dict(os.environ, PYTHONUNBUFFERED='1', TF_CPP_MIN_LOG_LEVEL='2',
             MUJOCO_GL='egl')
  return subprocess.run([sys.executable, str(ROOT / 'sweep.py'), *map(
      str, args)], capture_output=True, text=True, cwd=ROOT, env=env,
      timeout=900)


def done(output, task='dmc_cartpole_balance', seed=0):
  return re.search(rf'{task}\s+seed {seed}\s+step\s+\d+ of 200 .* done',
                   output)


def launcher():
  """SLURM where there is one (CI starts it: .ci/slurm.sh), else local."""
  if shutil.which('sbatch'):
    return ['--launcher', 'slurm', '--cpus', 1, '--mem', 2, '--time', 20]
  return []


def wait_for(predicate, timeout, what):
  end = time.time() + timeout
  while time.time() < end:
    if predicate():
      return
    time.sleep(0.5)
  raise AssertionError(f'timed out waiting for {what}')


def requeue_while_training(logdir, run):
  """`scontrol requeue` of the run's job once it trains past its first
  checkpoint; then waits for the run to be done."""
  job = json.loads((run / 'sweep-slurm.json').read_text())['job_id']
  wait_for(lambda: len(list((run / 'episodes').glob('*.npz'))) >= 3, 600,
           'a training episode after the pretrain')
  subprocess.run(['scontrol', 'requeue', job], check=True)
  wait_for(lambda: done(sweep('--logdir', logdir / 'original',
                              '--status').stdout), 600, 'the run done')


@pytest.mark.slow
def test_the_originals_program_sweeps(checkout, tmp_path):
  """Locally to its end; on SLURM requeued (SIGTERM) while it trains, then
  resumed to its end by the requeued job."""
  logdir = tmp_path / 'sweep'
  result = sweep('--logdir', logdir, '--original', checkout, '--tasks',
                 'dmc_cartpole_balance', '--seeds', 0, '--steps', 200,
                 *launcher(), *FLAGS)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  run = logdir / 'original' / 'dmc_cartpole_balance' / '0'
  if launcher():
    requeue_while_training(logdir, run)
    first, second = (run / 'sweep.log').read_text().split(
        'sweep: original_train.py started')[1:]
    assert re.search(r'Stopped at step [\d,]+: variables.pkl and the '
                     r'episodes are saved', first), first[-2000:]
    assert 'Load checkpoint.' in second
  else:
    assert done(result.stdout)
  assert (run / 'variables.pkl').exists()
  log = (run / 'sweep.log').read_text()
  assert log.startswith('sweep: original_train.py started')
  assert 'Found 74924 model parameters.' in log  # The tiny config's.
  status = sweep('--logdir', logdir / 'original', '--status')
  assert status.returncode == 0 and done(status.stdout), status.stderr
  again = sweep('--logdir', logdir, '--original', checkout)
  assert 'is done' in again.stdout and again.returncode == 0

  plot = tmp_path / 'plot.csv'
  result = subprocess.run(
      [sys.executable, str(ROOT / 'plotting.py'), '--sweep', str(logdir),
       '--reference', str(checkout / 'scores' / 'dreamer.json'), '--output',
       str(plot), '--format', 'csv'], capture_output=True, text=True,
      cwd=ROOT)
  assert result.returncode == 0, result.stderr
  assert ',original,' in plot.read_text()


def test_a_flag_of_ours_is_refused_for_the_original(checkout, tmp_path):
  result = sweep('--logdir', tmp_path / 'sweep', '--original', checkout,
                 '--tasks', 'dmc_cartpole_balance', '--seeds', 0, '--obs',
                 'both')
  assert result.returncode == 2 and result.stderr.count('\n') == 1
  assert result.stderr.startswith(
      "sweep.py: error: --obs is ours: the original's program has no such "
      'flag')


def test_a_folder_that_is_not_the_originals_is_refused(tmp_path):
  result = sweep('--logdir', tmp_path / 'sweep', '--original', tmp_path,
                 '--tasks', 'dmc_cartpole_balance', '--seeds', 0)
  assert result.returncode == 2 and result.stderr.count('\n') == 1
  assert result.stderr.startswith(f'sweep.py: error: --original {tmp_path}:')
