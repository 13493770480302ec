"""sweep.py: the flags checked before anything starts, the local launcher
end to end (a stop, a rerun that resumes and skips, --status), and the
SLURM launcher against a real SLURM (.ci/slurm.sh starts one): a job
requeued while it trains resumes from its checkpoint to its last step."""

import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

import sweep
from helpers import ROOT, tiny_flags

TASKS = ['dmc_cartpole_balance', 'dmc_reacher_easy']
FLAGS = tiny_flags()
del FLAGS[FLAGS.index('--task'):FLAGS.index('--task') + 2]
del FLAGS[FLAGS.index('--seed'):FLAGS.index('--seed') + 2]


def command(logdir, *extra, tasks=TASKS, seeds=(0, 1), steps=200):
  return ([sys.executable, str(ROOT / 'sweep.py'), '--logdir', str(logdir),
           '--tasks', *tasks, '--seeds', *map(str, seeds),
           '--steps', str(steps)] + FLAGS + list(extra))


def sweep_run(args, timeout=600):
  env = dict(os.environ, PYTHONUNBUFFERED='1', TF_CPP_MIN_LOG_LEVEL='2')
  return subprocess.run(args, capture_output=True, text=True, cwd=ROOT,
                        env=env, timeout=timeout)


def status(logdir, **kwargs):
  """{(task, seed): (step, state)} and the total line of --status."""
  result = sweep_run(command(logdir, '--status', **kwargs))
  assert result.returncode == 0, result.stderr
  lines = result.stdout.strip().splitlines()
  runs = {}
  for line in lines[:-1]:
    match = re.match(
        r'(\S+)\s+seed (\d+)\s+step\s+([\d,]+) of ([\d,]+)\s+return\s+\S+\s+'
        r'(\w+)', line)
    assert match, line
    task, seed, step, _, state = match.groups()
    runs[task, int(seed)] = (int(step.replace(',', '')), state)
  return runs, lines[-1]


def wait_for(predicate, timeout, what):
  end = time.time() + timeout
  while time.time() < end:
    value = predicate()
    if value:
      return value
    time.sleep(0.2)
  raise AssertionError(f'timed out waiting for {what}')


def metric_steps(logdir):
  """{key: [steps]} of a run's metrics.jsonl."""
  steps = {}
  for line in (logdir / 'metrics.jsonl').read_text().splitlines():
    record = json.loads(line)
    for key in record:
      if key != 'step':
        steps.setdefault(key, []).append(record['step'])
  return steps


def assert_no_step_twice(logdir):
  """Each metric at most once per step ('episodes' is written with both the
  training and the test episode of a step)."""
  for key, steps in metric_steps(logdir).items():
    if key == 'episodes':
      continue
    assert steps == sorted(set(steps)), (key, steps)


# --- Flags -------------------------------------------------------------------

@pytest.mark.parametrize('extra, error', [
    (['--bogus', '1'], 'dreamer.py: error: unrecognized arguments: --bogus'),
    (['--steps', '-5'], 'dreamer.py: error: --steps must be at least 1'),
    (['--seed', '3'], 'sweep.py: error: --seed is set by the sweep'),
    (['--parallel', 'x'], 'sweep.py: error: --parallel takes'),
])
def test_bad_flags_are_refused_before_anything_starts(tmp_path, extra, error):
  result = sweep_run(command(tmp_path / 'sweep', *extra, steps=100))
  assert result.returncode == 2
  assert result.stderr.startswith(error) and result.stderr.count('\n') == 1
  assert not (tmp_path / 'sweep').exists()


def test_an_unknown_task_is_refused(tmp_path):
  result = sweep_run(command(tmp_path / 'sweep', tasks=['dmc_walker_fly']))
  assert result.returncode == 2
  assert 'unknown DeepMind Control task' in result.stderr
  assert not (tmp_path / 'sweep').exists()


def test_paper_is_the_papers_twenty_tasks(tmp_path):
  assert len(sweep.PAPER_TASKS) == 20
  reference = ROOT.parent / 'shared' / 'reference' / 'scores' / 'dreamer.json'
  if reference.exists():
    tasks = {run['task'] for run in json.loads(reference.read_text())}
    assert tasks == set(sweep.PAPER_TASKS)
  runs, total = status(tmp_path / 'sweep', tasks=['paper', 'dmc_walker_walk'],
                       seeds=(0, 1, 2, 3, 4), steps=1000)
  assert len(runs) == 100 and {s for _, s in runs.values()} == {'pending'}
  assert total == '100 runs: 0 environment steps done, 100,000 left'


# --- Local launcher ----------------------------------------------------------

@pytest.mark.slow
def test_local_sweep_stops_resumes_skips(tmp_path):
  """2 tasks × 2 seeds, 2 at once: SIGTERM to the sweep once both first
  runs have a checkpoint stops them (stopped, the others pending); the same
  command resumes those and runs the others to their steps; again, it
  starts nothing."""
  logdir = tmp_path / 'sweep'
  env = dict(os.environ, PYTHONUNBUFFERED='1', TF_CPP_MIN_LOG_LEVEL='2')
  first = subprocess.Popen(
      command(logdir, '--parallel', '2'), cwd=ROOT, env=env,
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  started = [logdir / TASKS[0] / '0', logdir / TASKS[0] / '1']
  wait_for(lambda: all((run / 'checkpoint.npz').exists() for run in started),
           400, 'the first two checkpoints')
  first.send_signal(signal.SIGTERM)
  output = first.communicate(timeout=120)[0]
  assert first.returncode == 0, output
  runs, _ = status(logdir)
  assert [runs[TASKS[0], seed][1] for seed in (0, 1)] == ['stopped'] * 2
  assert [runs[TASKS[1], seed] for seed in (0, 1)] == [(0, 'pending')] * 2
  stopped_at = {seed: runs[TASKS[0], seed][0] for seed in (0, 1)}

  again = sweep_run(command(logdir, '--parallel', '2'))
  assert again.returncode == 0, again.stdout + again.stderr
  runs, total = status(logdir)
  assert {state for _, state in runs.values()} == {'done'}
  assert min(step for step, _ in runs.values()) >= 200
  assert total == '4 runs: 800 environment steps done, 0 left'
  for seed in (0, 1):
    log = (logdir / TASKS[0] / str(seed) / 'sweep.log').read_text()
    assert log.count('sweep: dreamer.py started') == 2
    assert 'Load checkpoint.' in log.split('sweep: dreamer.py started')[-1]
    assert stopped_at[seed] < 200
  for run in runs:
    assert_no_step_twice(logdir / run[0] / str(run[1]))

  third = sweep_run(command(logdir, '--parallel', '2'))
  assert third.returncode == 0
  assert 'nothing to start' in third.stdout
  assert len(re.findall(r'is done \(step \d+\): left alone', third.stdout)) == 4


# --- SLURM launcher ----------------------------------------------------------

def slurm_ready():
  """Why SLURM cannot run the tests here, or None."""
  if not shutil.which('sbatch'):
    return 'no sbatch: start SLURM with `bash .ci/slurm.sh start` (root)'
  result = subprocess.run(['sinfo', '-h', '-o', '%t'], capture_output=True,
                          text=True)
  if result.returncode:
    return f'sinfo failed: {result.stderr.strip()}'
  return None


def array_jobs(logdir):
  return {run: json.loads((logdir / run[0] / str(run[1]) /
                           sweep.SLURM_NAME).read_text())['job_id']
          for run in [(TASKS[0], 0), (TASKS[1], 0)]}


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which('sbatch'), reason='no sbatch on PATH')
def test_slurm_sweep_requeued_run_resumes(tmp_path):
  """2 tiny runs as a job array; the first is requeued (`scontrol
  requeue`) while it trains, after its checkpoint and an episode past its
  last evaluation: it resumes from the checkpoint to its last step, with no
  step of a metric twice; --status says done for both."""
  problem = slurm_ready()
  assert problem is None, problem
  logdir = tmp_path / 'sweep'
  slurm = ['--launcher', 'slurm', '--cpus', '1', '--mem', '2', '--time',
           '20']
  submitted = sweep_run(command(logdir, *slurm, seeds=(0,), steps=240))
  assert submitted.returncode == 0, submitted.stdout + submitted.stderr
  jobs = array_jobs(logdir)
  run = logdir / TASKS[0] / '0'

  def trained_past_evaluation():
    """An episode finished after the last evaluation: a resume then starts
    past it (resuming right after an evaluation repeats it at its step)."""
    if not (run / 'checkpoint.npz').exists():
      return False
    steps = metric_steps(run)
    return 'test/return' in steps and max(steps['train/return']) > max(
        steps['test/return'])

  wait_for(lambda: (run / 'checkpoint.npz').exists(), 400, 'a checkpoint')
  runs, _ = status(logdir, seeds=(0,), steps=240)
  assert runs[TASKS[0], 0][1] == 'running'
  wait_for(trained_past_evaluation, 400, 'the run to train')
  signalled = time.time()
  subprocess.run(['scontrol', 'requeue', jobs[TASKS[0], 0]], check=True)
  log = run / 'sweep.log'
  after = lambda: log.read_text().split('sweep: dreamer.py started')[2:]
  wait_for(after, 300, 'the requeued job to start')
  restarted = time.time() - signalled
  wait_for(lambda: 'Load checkpoint.' in after()[0], 120, 'the checkpoint')
  loaded = time.time() - signalled
  mtime = (run / 'checkpoint.npz').stat().st_mtime
  wait_for(lambda: (run / 'checkpoint.npz').stat().st_mtime > mtime, 120,
           'the resumed run\'s first burst')
  trained = time.time() - signalled
  print(f'requeue: {restarted:.1f} s to the restart, {loaded:.1f} s to the '
        f'checkpoint loaded, {trained:.1f} s to its first burst saved')

  wait_for(lambda: all(
      state == 'done' for _, state in status(
          logdir, seeds=(0,), steps=240)[0].values()), 400, 'both runs done')
  runs, total = status(logdir, seeds=(0,), steps=240)
  assert total == '2 runs: 480 environment steps done, 0 left'
  text = log.read_text()
  assert text.count('sweep: dreamer.py started') == 2
  assert 'SLURM_RESTART_COUNT=1' in text
  assert_no_step_twice(run)
  steps = metric_steps(run)
  assert max(steps['train/return']) >= 240
  again = sweep_run(command(logdir, *slurm, seeds=(0,), steps=240))
  assert 'nothing to start' in again.stdout


@pytest.mark.skipif(not shutil.which('sbatch'), reason='no sbatch on PATH')
def test_slurm_bad_flag_submits_nothing(tmp_path):
  before = subprocess.run(['squeue', '-h', '-o', '%i'], capture_output=True,
                          text=True).stdout
  result = sweep_run(command(tmp_path / 'sweep', '--launcher', 'slurm',
                             '--model_lr', 'fast'))
  assert result.returncode == 2
  assert result.stderr.startswith('dreamer.py: error: argument --model_lr')
  assert not (tmp_path / 'sweep').exists()
  after = subprocess.run(['squeue', '-h', '-o', '%i'], capture_output=True,
                         text=True).stdout
  assert after == before
