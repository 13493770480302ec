"""sweep.py and its launchers.py: the flags checked before anything starts,
LOGDIR/sweep.json (--status and a rerun with the logdir alone, seeds added,
other flags refused), what --status says ended a run (a signal, or an exit
code and dreamer.py's error line), the local launcher (a signal while a run
starts reaches it; end to end: a stop, a rerun that resumes and skips,
--status), and the SLURM launcher against a real SLURM (.ci/slurm.sh
starts one): a job requeued while it trains resumes from its checkpoint to
its last step."""

import contextlib
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

import launchers
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


def alone(logdir, *extra):
  """sweep.py's command line with --logdir alone, and `extra`."""
  return [sys.executable, str(ROOT / 'sweep.py'), '--logdir', str(logdir),
          *extra]


def status(logdir, logdir_alone=False, **kwargs):
  """{(task, seed): (step, state)} and the total line of --status, of the
  whole command or of the logdir alone."""
  result = sweep_run(alone(logdir, '--status') if logdir_alone
                     else command(logdir, '--status', **kwargs))
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


def test_a_factory_that_the_runs_cannot_import_is_refused(tmp_path):
  result = sweep_run(command(tmp_path / 'sweep', tasks=['no_such_module:make']))
  assert result.returncode == 2 and result.stderr.count('\n') == 1
  assert ("cannot import module 'no_such_module' of --task no_such_module:make"
          in result.stderr and 'PYTHONPATH' in result.stderr)
  assert not (tmp_path / 'sweep').exists()


@pytest.mark.slow
def test_gymnasium_ids_and_factories_run_like_any_task(tmp_path):
  # Started from tests/ with PYTHONPATH=., as a user with a file of their own
  # would: the runs start in the checkout, so the sweep makes it absolute.
  args = command(tmp_path / 'sweep', '--obs', 'proprio', '--time_limit', '60',
                 tasks=['gym_Pendulum-v1', 'test_gym:make_pendulum'],
                 seeds=(0,), steps=160)
  env = dict(os.environ, PYTHONUNBUFFERED='1', TF_CPP_MIN_LOG_LEVEL='2',
             PYTHONPATH='.')
  result = subprocess.run(args, capture_output=True, text=True,
                          cwd=ROOT / 'tests', env=env, timeout=600)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  for task in ('gym_Pendulum-v1', 'test_gym:make_pendulum'):
    assert re.search(rf'{re.escape(task)}\s+seed 0\s+step\s+\d+ of 160 .* '
                     r'done', result.stdout), result.stdout


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


# --- LOGDIR/sweep.json ------------------------------------------------------

def no_starts(monkeypatch):
  """The (runs, parallel) that launchers.run_local is asked to start from
  now on; it starts nothing."""
  calls = []

  def run_local(runs, parallel):
    calls.append((runs, parallel))
    return []

  monkeypatch.setattr(launchers, 'run_local', run_local)
  return calls


def test_status_from_the_logdir_alone_is_the_whole_commands(
    tmp_path, monkeypatch):
  logdir = tmp_path / 'sweep'
  status(logdir)
  assert not logdir.exists()  # --status records nothing.
  no_starts(monkeypatch)
  assert sweep.main(command(logdir, '--parallel', '2')[2:]) == 0
  request = json.loads((logdir / sweep.REQUEST_NAME).read_text())
  assert (request['tasks'], request['seeds']) == (TASKS, [0, 1])
  assert request['flags'] == ['--steps', '200'] + FLAGS
  assert (request['launcher'], request['parallel']) == ('local', 2)
  killed = launchers.Run(logdir, TASKS[1], 0, [])
  killed.logdir.mkdir(parents=True)
  launchers.record_exit(killed, -signal.SIGKILL)
  whole = sweep_run(command(logdir, '--status'))
  only = sweep_run(alone(logdir, '--status'))
  assert whole.returncode == only.returncode == 0, whole.stderr + only.stderr
  assert only.stdout == whole.stdout
  assert 'stopped: killed by SIGKILL' in only.stdout
  assert len(only.stdout.splitlines()) == 5


def test_a_rerun_with_the_logdir_alone_may_add_a_seed(tmp_path, monkeypatch):
  logdir = tmp_path / 'sweep'
  calls = no_starts(monkeypatch)
  assert sweep.main(command(logdir, '--parallel', '2')[2:]) == 0
  assert sweep.main(alone(logdir, '--seeds', '2')[2:]) == 0
  runs, parallel = calls[1]
  assert [run.name for run in runs] == [
      f'{task}/{seed}' for task in TASKS for seed in (0, 1, 2)]
  assert parallel == 2
  assert {tuple(run.argv[6:]) for run in runs} == {
      ('--steps', '200', *FLAGS)}
  request = json.loads((logdir / sweep.REQUEST_NAME).read_text())
  assert request['seeds'] == [0, 1, 2]
  runs, total = status(logdir, logdir_alone=True)
  assert len(runs) == 6 and runs[TASKS[1], 2] == (0, 'pending')
  assert total == '6 runs: 0 environment steps done, 1,200 left'


@pytest.mark.parametrize('extra', [(), ('--status',)])
def test_a_rerun_with_other_flags_is_refused(tmp_path, monkeypatch, extra):
  logdir = tmp_path / 'sweep'
  no_starts(monkeypatch)
  assert sweep.main(command(logdir)[2:]) == 0
  recorded = (logdir / sweep.REQUEST_NAME).read_text()
  result = sweep_run(command(logdir, *extra, '--batch_length', '7',
                             seeds=(2,)))
  assert result.returncode == 2 and result.stderr.count('\n') == 1
  assert result.stderr.startswith(
      f'sweep.py: error: {logdir} holds a sweep started with other dreamer.py '
      'flags (--batch_length 8 there, 7 now), which its runs keep: pass the '
      'same flags')
  assert 'another --logdir' in result.stderr
  assert (logdir / sweep.REQUEST_NAME).read_text() == recorded
  assert not (logdir / TASKS[0] / '2').exists()
  same = sweep_run(command(logdir, '--status', steps='2e2'))
  assert same.returncode == 0, same.stderr


def test_a_rerun_may_train_the_runs_longer(tmp_path, monkeypatch):
  logdir = tmp_path / 'sweep'
  calls = no_starts(monkeypatch)
  assert sweep.main(command(logdir)[2:]) == 0
  assert sweep.main(command(logdir, steps=300)[2:]) == 0
  runs, _ = calls[1]
  assert {tuple(run.argv[6:]) for run in runs} == {
      (*FLAGS, '--steps', '300')}
  request = json.loads((logdir / sweep.REQUEST_NAME).read_text())
  assert request['flags'] == [*FLAGS, '--steps', '300']
  runs, total = status(logdir, logdir_alone=True)
  assert total == '4 runs: 0 environment steps done, 1,200 left'


@pytest.mark.parametrize('extra, missing', [
    ((), '--tasks and --seeds are'), (('--tasks', 'paper'), '--seeds is')])
def test_without_a_sweep_there_tasks_and_seeds_are_required(
    tmp_path, extra, missing):
  logdir = tmp_path / 'sweep'
  result = sweep_run(alone(logdir, '--status', *extra))
  assert result.returncode == 2
  assert result.stderr == (
      f'sweep.py: error: {missing} required: {logdir} holds no sweep.json '
      '(no sweep started there)\n')
  assert not logdir.exists()


def test_a_record_that_is_not_one_is_one_line(tmp_path):
  (tmp_path / sweep.REQUEST_NAME).write_text('{"tasks": ')
  result = sweep_run(alone(tmp_path))
  assert result.returncode == 2 and result.stderr.count('\n') == 1
  assert 'is not a sweep\'s record of tasks, seeds and flags' in result.stderr


# --- What ended a run -------------------------------------------------------

TF_NOISE = [  # What TensorFlow 2.21 prints here as dreamer.py starts.
    'WARNING: All log messages before absl::InitializeLog() is called are '
    'written to STDERR',
    'I0000 00:00:1796641014.819885    7984 port.cc:153] oneDNN custom '
    'operations are on. You may see slightly different numerical results.',
    'E0000 00:00:1796641018.354161    7984 cuda_platform.cc:52] failed call '
    'to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR '
    '(303)']
EARLIER = ['sweep: dreamer.py started 2026-01-01 00:00:00 on node1',
           'dreamer.py: error: an earlier attempt\'s error']
TRACEBACK = [
    'Traceback (most recent call last):',
    '  File "dreamer.py", line 510, in <module>',
    '    sys.exit(main())',
    TF_NOISE[2],
    'ValueError: setting an array element with a sequence.']


def fake_run(tmp_path, *lines):
  """A launchers.Run whose RUN/sweep.log holds EARLIER, then `lines` after
  the sweep's line of a start."""
  run = launchers.Run(tmp_path, 'dmc_walker_walk', 0, [])
  run.logdir.mkdir(parents=True)
  (run.logdir / launchers.LOG_NAME).write_text('\n'.join(
      EARLIER + ['sweep: dreamer.py started 2026-01-02 00:00:00 on node1'] +
      list(lines)) + '\n')
  return run


def ended(run, code, **kwargs):
  """(state, detail, RUN/sweep-exit.json) after record_exit(run, code)."""
  error = launchers.record_exit(run, code, **kwargs)
  state, _, detail = launchers.state_of(run, steps=100, action_repeat=2)
  record = json.loads((run.logdir / launchers.EXIT_NAME).read_text())
  assert {'code', 'failed', 'error', 'time'} <= set(record)
  assert record['code'] == code and record['error'] == error
  return state, detail, record


@pytest.mark.parametrize('code, name', [
    (-signal.SIGKILL, 'SIGKILL'), (-signal.SIGTERM, 'SIGTERM'),
    (128 + signal.SIGKILL, 'SIGKILL')])
def test_a_run_ended_by_a_signal_is_stopped_and_says_which(
    tmp_path, code, name):
  run = fake_run(tmp_path, *TF_NOISE, 'Prefill dataset with 60 steps.')
  state, detail, record = ended(run, code)
  assert (state, detail) == ('stopped', f'killed by {name}')
  assert not record['failed'] and record['signal'] == name


@pytest.mark.parametrize('code, line', [
    (2, 'dreamer.py: error: cannot write runs/x/checkpoint.npz: No space '
        'left on device (ENOSPC)'),
    (1, 'error: non-finite gradients of the model at step 1,200')])
def test_a_failed_run_says_its_exit_code_and_dreamers_error_line(
    tmp_path, code, line):
  run = fake_run(tmp_path, *TF_NOISE, line, TF_NOISE[2])
  state, detail, record = ended(run, code)
  assert (state, detail) == ('failed', f'exit code {code}: {line}')
  assert record['failed'] and record['signal'] is None


def test_without_dreamers_line_the_traceback_says_why(tmp_path):
  run = fake_run(tmp_path, *TF_NOISE, *TRACEBACK, TF_NOISE[1])
  assert ended(run, 1)[:2] == (
      'failed', 'exit code 1: ValueError: setting an array element with a '
      'sequence.')
  run = fake_run(tmp_path / 'noise', *TF_NOISE)
  assert ended(run, 1)[:2] == ('failed', 'exit code 1')


def test_a_run_asked_to_stop_is_not_failed(tmp_path):
  run = fake_run(tmp_path, *TF_NOISE, 'Stopped: episodes are saved.')
  assert ended(run, 0, stopped=True)[:2] == ('stopped', '')
  assert ended(run, 1, stopped=True, any_code=True)[:2] == ('stopped', '')


def test_an_older_record_of_a_kill_says_stopped(tmp_path):
  run = fake_run(tmp_path)
  (run.logdir / launchers.EXIT_NAME).write_text(json.dumps(
      {'code': -9, 'failed': True, 'error': TF_NOISE[1],
       'time': '2026-01-02 00:00:00'}))
  assert launchers.state_of(run, 100, 2) == ('stopped', 0, 'killed by SIGKILL')


# --- Local launcher ----------------------------------------------------------

@pytest.mark.parametrize('when, thread', [
    ('before', False), ('after', False), ('after', True)])
def test_a_signal_while_a_run_starts_reaches_it(
    tmp_path, monkeypatch, when, thread):
  """SIGTERM to the sweep as its first run's process starts (before its
  fork, or once start_child returned it; with `thread`, a thread that does
  not hold the signal back takes it): that process ends by the signal, the
  second run never starts. The runs are a stand-in dreamer.py that sleeps
  for 20 s."""
  (tmp_path / 'dreamer.py').write_text('import time\ntime.sleep(20)\n')
  monkeypatch.setattr(launchers, 'ROOT', tmp_path)
  start_child = launchers.start_child

  def signalled_start(run, python=None):
    if when == 'before':
      os.kill(os.getpid(), signal.SIGTERM)
    child = start_child(run, python)
    if when == 'after':
      os.kill(os.getpid(), signal.SIGTERM)
    return child

  monkeypatch.setattr(launchers, 'start_child', signalled_start)
  runs = [launchers.Run(tmp_path / 'sweep', TASKS[0], seed, [])
          for seed in (0, 1)]
  with waiting_thread() if thread else contextlib.nullcontext():
    assert launchers.run_local(runs, parallel=2) == []
  record = json.loads((runs[0].logdir / launchers.EXIT_NAME).read_text())
  assert (record['code'], record['signal']) == (-signal.SIGTERM, 'SIGTERM')
  assert not runs[1].logdir.exists()


@contextlib.contextmanager
def waiting_thread():
  """A thread that waits for the end of the block (pytest-xdist's workers
  have one too)."""
  done = threading.Event()
  thread = threading.Thread(target=done.wait)
  thread.start()
  try:
    yield
  finally:
    done.set()
    thread.join()


@pytest.mark.slow
def test_local_sweep_stops_resumes_skips(tmp_path):
  """1 task × 3 seeds, 2 at once: SIGTERM to the sweep once the first run
  has a checkpoint stops both running (stopped, the third pending); the
  same command resumes those and runs the third to its steps; again, it
  starts nothing."""
  logdir = tmp_path / 'sweep'
  args = dict(tasks=TASKS[:1], seeds=(0, 1, 2), steps=160)
  env = dict(os.environ, PYTHONUNBUFFERED='1', TF_CPP_MIN_LOG_LEVEL='2')
  first = subprocess.Popen(
      command(logdir, '--parallel', '2', **args), cwd=ROOT, env=env,
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  wait_for(lambda: (logdir / TASKS[0] / '0' / 'checkpoint.npz').exists(),
           400, 'the first checkpoint')
  first.send_signal(signal.SIGTERM)
  output = first.communicate(timeout=120)[0]
  assert first.returncode == 0, output
  runs, _ = status(logdir, **args)
  assert [runs[TASKS[0], seed][1] for seed in (0, 1)] == ['stopped'] * 2
  assert runs[TASKS[0], 2] == (0, 'pending')

  again = sweep_run(command(logdir, '--parallel', '2', **args))
  assert again.returncode == 0, again.stdout + again.stderr
  runs, total = status(logdir, **args)
  assert {state for _, state in runs.values()} == {'done'}
  assert total == '3 runs: 480 environment steps done, 0 left'
  first_run = (logdir / TASKS[0] / '0' / 'sweep.log').read_text()
  assert first_run.count('sweep: dreamer.py started') == 2
  assert 'Load checkpoint.' in first_run.split('sweep: dreamer.py started')[2]
  for task, seed in runs:
    assert_no_step_twice(logdir / task / str(seed))

  third = sweep_run(command(logdir, '--parallel', '2', **args))
  assert third.returncode == 0
  assert 'nothing to start' in third.stdout
  assert len(re.findall(
      r'is done \(step \d+\): left alone', third.stdout)) == 3


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
                           launchers.SLURM_NAME).read_text())['job_id']
          for run in [(TASKS[0], 0), (TASKS[1], 0)]}


def trained_past_evaluation(run):
  """A checkpoint, and an episode finished after the last evaluation."""
  if not (run / 'checkpoint.npz').exists():
    return False
  steps = metric_steps(run)
  return 'test/return' in steps and max(steps['train/return']) > max(
      steps['test/return'])


def resume_times(runs, signalled):
  """For each run, the seconds from its `signalled` time to its job's
  restart, to its checkpoint loaded, and to the first checkpoint the
  resumed run writes (after its first burst of updates)."""
  loaded_mtime = [None] * len(runs)  # The checkpoint's when it was loaded.
  times = [[None] * 3 for _ in runs]

  def events(index):
    text = (runs[index] / 'sweep.log').read_text()
    after = text.split('sweep: dreamer.py started')[2:]
    loaded = bool(after) and 'Load checkpoint.' in after[0]
    mtime = (runs[index] / 'checkpoint.npz').stat().st_mtime
    if loaded and loaded_mtime[index] is None:
      loaded_mtime[index] = mtime
    return bool(after), loaded, loaded and mtime > loaded_mtime[index]

  def all_seen():
    now = time.time()
    for index, seen in enumerate(times):
      for event, happened in enumerate(events(index)):
        if happened and seen[event] is None:
          seen[event] = now - signalled[index]
    return all(None not in seen for seen in times)

  wait_for(all_seen, 400, 'the requeued runs to train again')
  return times


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which('sbatch'), reason='no sbatch on PATH')
def test_slurm_sweep_requeued_runs_resume(tmp_path):
  """2 tiny runs as a job array, each stopped while it trains: the first
  requeued by `scontrol requeue` (SIGTERM to the job), the second warned
  as the scheduler does before a time limit or preemption (USR2 to the
  job's step: submitit calls SlurmRun.checkpoint and requeues). Both resume
  from their checkpoints to their last step, no metric at a step twice;
  --status says done; the same command then starts nothing."""
  problem = slurm_ready()
  assert problem is None, problem
  logdir = tmp_path / 'sweep'
  slurm = ['--launcher', 'slurm', '--cpus', '1', '--mem', '2', '--time',
           '20']
  args = dict(seeds=(0,), steps=240)
  submitted = sweep_run(command(logdir, *slurm, **args))
  assert submitted.returncode == 0, submitted.stdout + submitted.stderr
  jobs = array_jobs(logdir)
  runs = [logdir / task / '0' for task in TASKS]
  # Asked during the prefill, which leaves the run most of its steps to go.
  wait_for(lambda: any((runs[0] / 'episodes').glob('*.npz')), 400,
           'a first episode')
  states, _ = status(logdir, **args)
  assert states[TASKS[0], 0][1] == 'running'
  stops = (['scontrol', 'requeue'], ['scancel', '--signal=USR2'])
  times = []
  for run, task, stop in zip(runs, TASKS, stops):
    wait_for(lambda: trained_past_evaluation(run), 400, f'{task} to train')
    subprocess.run(stop + [jobs[task, 0]], check=True)
    times.append(time.time())
  for task, seconds in zip(TASKS, resume_times(runs, times)):
    print(f'{task}: ' + ', '.join(f'{value:.1f} s' for value in seconds),
          '(restart, checkpoint loaded, first burst saved)')
  wait_for(lambda: {s for _, s in status(logdir, **args)[0].values()} == {
      'done'}, 400, 'both runs done')
  states, total = status(logdir, **args)
  assert total == '2 runs: 480 environment steps done, 0 left'
  for run in runs:
    text = (run / 'sweep.log').read_text()
    assert text.count('sweep: dreamer.py started') == 2
    assert 'SLURM_RESTART_COUNT=1' in text
    first, second = text.split('sweep: dreamer.py started')[1:]
    # SLURM's SIGTERM reaches the environment workers too; they ignore it,
    # so the run finishes its step with them and saves.
    assert 'Stopped: episodes and the checkpoint are saved.' in first
    assert 'Load checkpoint.' in second
    assert_no_step_twice(run)
    assert max(metric_steps(run)['train/return']) >= 240
  again = sweep_run(command(logdir, *slurm, **args))
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
  assert set(after.split()) <= set(before.split())  # Nothing new queued.
