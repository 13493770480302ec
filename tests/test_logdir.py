"""One run per logdir, write failures stopped and told, one value per step:
real dreamer.py processes on real files (runlock.py, tools.write_atomic and
append_whole, logger.rewind)."""

import errno
import fcntl
import json
import os
import subprocess
import sys
import time

import pytest

import checkpoint
import logger
import replay
import runlock
import tools
from helpers import ROOT, tiny_flags, user_env

STEPS = 120


def dreamer_argv(logdir, steps=STEPS):
  return [sys.executable, '-u', str(ROOT / 'dreamer.py'), '--logdir',
          str(logdir), '--steps', str(steps)] + tiny_flags()


def run(logdir, steps=STEPS, fail_write=None):
  """dreamer.py to `steps`, with tools.FAIL_WRITE_ENV set to `fail_write`."""
  env = user_env()
  if fail_write:
    env[tools.FAIL_WRITE_ENV] = fail_write
  return subprocess.run(
      dreamer_argv(logdir, steps), capture_output=True, text=True, cwd=ROOT,
      env=env, timeout=600)


def start(logdir, steps=STEPS):
  return subprocess.Popen(
      dreamer_argv(logdir, steps), stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT, text=True, cwd=ROOT,
      env=user_env())


def wait_for_holder(logdir, process, timeout=120):
  deadline = time.time() + timeout
  while time.time() < deadline:
    info = runlock.holder(logdir)
    if info and info.get('pid') == process.pid:
      return info
    assert process.poll() is None, process.stdout.read()
    time.sleep(0.1)
  raise AssertionError('the run never held its logdir')


def one_value_per_step(logdir):
  """Asserts each metric of metrics.jsonl has one value per step; returns
  the rows."""
  rows = [json.loads(line)
          for line in (logdir / 'metrics.jsonl').read_text().splitlines()]
  assert not repeats(rows), repeats(rows)
  return rows


def repeats(rows):
  """The (metric, step) pairs that `rows` hold twice. `episodes`, which
  the train and the test line of one step both carry (as in the original),
  counts only if their values differ."""
  seen, twice = {}, []
  for row in rows:
    for key, value in row.items():
      pair = (key, row['step'])
      if key != 'step' and pair in seen and not (
          key.split('/')[-1] == 'episodes' and seen[pair] == value):
        twice.append(pair)
      seen[pair] = value
  return twice


def assert_whole(logdir):
  """No temporary file; every episode file and the checkpoint read."""
  assert not list(logdir.rglob('*.tmp'))
  for path in replay.list_episodes(logdir / 'episodes'):
    replay.load_episode(path)
  if (logdir / checkpoint.NAME).exists():
    checkpoint.read_state(logdir / checkpoint.NAME)


def one_line(result):
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and 'Traceback' not in result.stderr, result.stderr
  return lines[0]


# --- The lock ---------------------------------------------------------------

HOLD = '''
import sys, time, runlock
with runlock.LogdirLock(sys.argv[1]):
  print('held', flush=True)
  time.sleep(60)
'''


def test_lock_is_exclusive_and_dies_with_its_process(tmp_path):
  holder = subprocess.Popen(
      [sys.executable, '-c', HOLD, str(tmp_path)], stdout=subprocess.PIPE,
      text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
  assert holder.stdout.readline() == 'held\n'
  info = runlock.holder(tmp_path)
  assert info['pid'] == holder.pid and {'host', 'started'} <= set(info)
  with pytest.raises(runlock.LogdirLocked) as locked:
    runlock.LogdirLock(tmp_path).__enter__()
  assert f'process {holder.pid} on' in str(locked.value)
  assert 'wait for it to finish or stop it' in str(locked.value)
  holder.kill()
  holder.wait()
  assert runlock.holder(tmp_path) is None  # No stale lock after kill -9.
  with runlock.LogdirLock(tmp_path) as lock:
    assert lock.locked and runlock.holder(tmp_path)['pid'] == os.getpid()
  assert runlock.holder(tmp_path) is None
  assert not (tmp_path / runlock.HOLDER_NAME).exists()


TAKES = '''
import sys, runlock
refused = 0
for _ in range(int(sys.argv[2])):
  try:
    with runlock.LogdirLock(sys.argv[1]):
      pass
  except runlock.LogdirLocked:
    refused += 1
print(refused, flush=True)
'''


def test_probes_never_refuse_a_run(tmp_path):
  # A run takes and releases the lock 300 times while this process asks
  # holder() in a tight loop: a probe may delay a take, never refuse it.
  taker = subprocess.Popen(
      [sys.executable, '-c', TAKES, str(tmp_path), '300'],
      stdout=subprocess.PIPE, text=True, cwd=ROOT,
      env=dict(os.environ, PYTHONPATH=str(ROOT)))
  probes, held, deadline = 0, 0, time.monotonic() + 120
  while taker.poll() is None and time.monotonic() < deadline:
    held += runlock.holder(tmp_path) is not None
    probes += 1
  refused = taker.communicate(timeout=10)[0]
  assert taker.returncode == 0 and refused == '0\n', refused
  assert held, f'{probes} probes never met the run\'s lock'


def test_a_filesystem_that_cannot_lock_gets_one_warning(
    tmp_path, monkeypatch, capsys):
  def no_flock(fd, operation):
    raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))

  monkeypatch.setattr(fcntl, 'flock', no_flock)
  with runlock.LogdirLock(tmp_path) as lock:
    assert not lock.locked and runlock.holder(tmp_path) is None
  line, = capsys.readouterr().out.splitlines()
  assert line.startswith(f'Warning: the filesystem of {tmp_path} cannot lock')
  assert 'the run goes on unlocked' in line


@pytest.mark.slow
def test_second_start_is_refused_and_the_first_finishes(tmp_path):
  first = start(tmp_path)
  info = wait_for_holder(tmp_path, first)
  second = run(tmp_path)
  line = one_line(second)
  assert second.returncode == 2 and line.startswith('dreamer.py: error:')
  assert f'is in use by another run (process {info["pid"]} on' in line
  assert 'Prefill' not in second.stdout  # Refused before anything else.
  output = first.communicate(timeout=600)[0]
  assert first.returncode == 0, output[-3000:]
  one_value_per_step(tmp_path)
  assert runlock.holder(tmp_path) is None


# --- Write failures ---------------------------------------------------------

@pytest.mark.slow
def test_failed_writes_stop_with_one_line_and_the_same_command_resumes(
    tmp_path):
  # A checkpoint, then an episode file fails to be written (injected through
  # tools.FAIL_WRITE_ENV, the real write path), the second run resuming the
  # first; then a clean run resumes. (Metrics, events, GIFs: below.)
  steps = 200
  for fail_write, kept in [('ENOSPC:checkpoint.npz:1', 'step 80'),
                           ('EROFS:2*.npz', 'step 120')]:
    failed = run(tmp_path, steps, fail_write=fail_write)
    line = one_line(failed)
    assert failed.returncode == 2, failed.stdout[-2000:]
    code, pattern = fail_write.split(':')[:2]
    assert line.startswith(f'dreamer.py: error: cannot write {tmp_path}/')
    assert f'({code})' in line and pattern.strip('2*') in line
    assert f'kept: the last complete checkpoint ({kept}) and the ' in line
    assert ('the same command resumes: python dreamer.py --logdir '
            f'{tmp_path} --steps {steps}') in line
    assert_whole(tmp_path)
    one_value_per_step(tmp_path)
  assert ('Moved the lines of metrics.jsonl written after the checkpoint '
          '(step 80)') in failed.stdout
  assert (tmp_path / logger.LOST).exists()
  resumed = run(tmp_path, steps)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert 'Load checkpoint.' in resumed.stdout
  assert_whole(tmp_path)
  one_value_per_step(tmp_path)
  assert replay.count_steps(tmp_path / 'episodes', 2) >= steps


def test_metrics_events_and_gif_writes_are_whole_or_nothing(
    tmp_path, monkeypatch):
  log = logger.Logger(tmp_path)
  log.scalar('loss', 1.0)
  log.write(10, prefix='agent')
  sizes = {p.name: p.stat().st_size for p in tmp_path.iterdir()}
  for step, fail_write, match in [
      (20, 'ENOSPC:metrics.jsonl', r'metrics.jsonl: No space left on device'),
      (30, 'EDQUOT:events.out.tfevents.*', r'tfevents.*\(EDQUOT\)'),
      (40, 'EACCES:*.gif', r'-40.gif: Permission denied \(EACCES\)')]:
    monkeypatch.setenv(tools.FAIL_WRITE_ENV, fail_write)
    log.scalar('loss', 2.0)
    log.video('test/video', [[[[0.5, 0.5, 0.5]]]] * 2)
    with pytest.raises(tools.WriteError, match=match):
      log.write(step, prefix='agent')
  files = {p.name: p.stat().st_size for p in tmp_path.iterdir()}
  events, = [name for name in files if name.startswith(logger.EVENTS)]
  assert files[events] == sizes[events]  # Cut back to the last record.
  assert files[logger.METRICS] > sizes[logger.METRICS]  # Before events.
  assert not list(tmp_path.rglob('*.tmp'))
  assert not list(tmp_path.rglob('*-40.gif'))


def test_rewind_keeps_what_the_checkpoint_saw(tmp_path):
  log = logger.Logger(tmp_path)
  for step in (10, 20):
    log.scalar('loss', step)
    log.write(step, prefix='agent')
  mark = log.mark(20)
  for step in (30, 40):
    log.scalar('loss', step)
    log.write(step, prefix='agent')
  with open(tmp_path / logger.METRICS, 'a') as file:
    file.write('{"step": 50, "lo')  # A line a kill -9 cut short.
  assert logger.rewind(tmp_path, mark) == 3
  assert [row['step'] for row in one_value_per_step(tmp_path)] == [10, 20]
  lost = (tmp_path / logger.LOST).read_text().splitlines()
  assert [line[:11] for line in lost] == [
      '{"step": 30', '{"step": 40', '{"step": 50']
  import tensorflow as tf
  events, = tmp_path.glob(logger.EVENTS + '*')
  steps = [e.step for e in tf.compat.v1.train.summary_iterator(str(events))
           if e.summary.value]
  assert steps == [10, 20]


# --- A real full disk -------------------------------------------------------

@pytest.fixture
def small_fs(tmp_path):
  """A 3 MB tmpfs, or a skip where this process cannot mount one."""
  folder = tmp_path / 'fs'
  folder.mkdir()
  result = subprocess.run(
      ['mount', '-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', str(folder)],
      capture_output=True, text=True)
  if result.returncode:
    pytest.skip(f'cannot mount a tmpfs here (needs root): '
                f'{result.stderr.strip()}')
  yield folder
  subprocess.run(['umount', '-l', str(folder)])


@pytest.mark.slow
def test_full_disk_stops_with_one_line_and_resumes_with_room(small_fs):
  logdir = small_fs / 'run'
  failed = run(logdir)
  line = one_line(failed)
  assert failed.returncode == 2
  assert 'No space left on device (ENOSPC)' in line and 'kept: ' in line
  assert 'once there is room, the same command resumes' in line
  assert_whole(logdir)
  one_value_per_step(logdir)
  subprocess.run(['mount', '-o', 'remount,size=64m', str(small_fs)],
                 check=True)  # Room made.
  resumed = run(logdir)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert_whole(logdir)
  one_value_per_step(logdir)
