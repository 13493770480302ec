"""Soak test of a logdir: one run stopped many times, then checked.

    python benchmarks/soak.py --minutes 30 --stops 16          # the issue's
    python benchmarks/soak.py --minutes 10 --stops 8           # shorter
    python benchmarks/soak.py --sigterm small                  # one figure

One tiny dreamer.py run (tests/helpers.py TINY_FLAGS) is started again and
again with the same command and stopped at random moments (seeded),
alternately with kill -9 and SIGTERM; while each copy runs, a second start
on the same logdir is tried and must be refused with one line. Once, in the
middle, the disk fills instead: the logdir sits on a small tmpfs (mounted
here, which needs root; else the stop is skipped and the report says so)
and a filler file takes its free space; the run must stop with one line,
and resume once the filler is gone. Then the run goes to its end, and the
logdir is checked: every file reads, no (metric, step) repeats in
metrics.jsonl or the TensorBoard events, the step counter equals what the
episode files hold. Prints a JSON report: stops survived, seconds lost per
stop (unsaved: stop − last checkpoint; restart: start → checkpoint loaded),
seconds from SIGTERM to exit.

`--sigterm CONFIG [--moment trace|burst|episode]` instead measures one
figure: a run at `--configs CONFIG` (full: the default config) is sent
SIGTERM while its first update is traced, or in a later update of a burst,
or in a test episode, and the seconds to its saved checkpoint and to its
exit are printed.

Not part of the test suite (it runs for many minutes).
"""

import argparse
import collections
import json
import os
import pathlib
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / 'tests'))

import checkpoint  # noqa: E402
import replay  # noqa: E402
import runlock  # noqa: E402
from helpers import tiny_flags  # noqa: E402
from test_logdir import repeats  # noqa: E402

ACTION_REPEAT = 2


def command(logdir, steps, flags):
  return [sys.executable, '-u', str(ROOT / 'dreamer.py'), '--logdir',
          str(logdir), '--steps', str(steps)] + flags


class Copy:
  """One started dreamer.py; its output goes to `log`, each line with the
  seconds since the start. `loaded` is when it printed 'Load checkpoint.'
  (seconds since its start), `last` its last line."""

  def __init__(self, argv, log):
    self.start = time.time()
    self.loaded = None
    self.last = ''
    self.process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        cwd=ROOT, env=dict(os.environ, PYTHONUNBUFFERED='1'))
    self._reader = threading.Thread(target=self._read, args=(log,))
    self._reader.start()

  def _read(self, log):
    with open(log, 'a') as file:
      file.write(f'\n=== start {time.ctime(self.start)}\n')
      for line in self.process.stdout:
        seconds = time.time() - self.start
        if line.startswith('Load checkpoint.') and self.loaded is None:
          self.loaded = seconds
        if line.strip():
          self.last = line.strip()
        file.write(f'{seconds:7.1f} {line}')
        file.flush()

  def wait(self, timeout):
    try:
      code = self.process.wait(timeout)
    except subprocess.TimeoutExpired:
      return None
    self._reader.join()
    return code


def try_second_start(argv):
  """(refused with one line and non-zero code, seconds) of a second start."""
  begin = time.time()
  result = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
  lines = result.stderr.strip().splitlines()
  refused = (result.returncode != 0 and len(lines) == 1
             and 'is in use by another run' in lines[0])
  return refused, time.time() - begin, (lines or [''])[-1]


def wait_for_lock(logdir, copy, timeout=120):
  deadline = time.time() + timeout
  while time.time() < deadline and copy.process.poll() is None:
    info = runlock.holder(logdir)
    if info and info.get('pid') == copy.process.pid:
      return True
    time.sleep(0.2)
  return False


def mount_tmpfs(folder, size):
  folder.mkdir(parents=True, exist_ok=True)
  result = subprocess.run(
      ['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', str(folder)],
      capture_output=True, text=True)
  return result.returncode == 0, result.stderr.strip()


def fill_disk(folder):
  """A filler file taking the free space of `folder`'s filesystem."""
  filler = folder / 'filler'
  stat = os.statvfs(folder)
  free = stat.f_bavail * stat.f_frsize
  with open(filler, 'wb') as file:
    os.posix_fallocate(file.fileno(), 0, free)
  return filler


def checkpoint_mtime(logdir):
  path = logdir / checkpoint.NAME
  return path.stat().st_mtime if path.exists() else None


def soak(args):
  rng = random.Random(args.seed)
  base = pathlib.Path(tempfile.mkdtemp(prefix='dreamer-soak-'))
  mounted, why = mount_tmpfs(base / 'fs', args.tmpfs) if args.disk_full else (
      False, 'not asked')
  logdir = base / 'fs' / 'run'
  log = base / 'output.log'
  flags = tiny_flags()
  argv = command(logdir, args.steps, flags)
  period = args.minutes * 60 / (args.stops + 1)
  full_at = args.stops // 2 if mounted else None
  report = collections.defaultdict(list)
  report.update(logdir=str(logdir), log=str(log), tmpfs=mounted,
                tmpfs_note=why, steps=args.steps, seed=args.seed)
  try:
    for index in range(args.stops):
      copy = Copy(argv, log)
      if not wait_for_lock(logdir, copy):
        report['problems'].append(f'copy {index} never held the lock')
      refused, seconds, line = try_second_start(argv)
      report['second_start_refused'].append(refused)
      report['second_start_seconds'].append(round(seconds, 1))
      report['second_start_line'] = line
      delay = rng.uniform(0.3 * period, 1.7 * period)
      if copy.wait(max(0, copy.start + delay - time.time())) is not None:
        report['finished_early'].append(index)
        break
      saved = checkpoint_mtime(logdir)
      stop = time.time()
      if index == full_at:
        kind, filler = 'disk full', fill_disk(logdir.parent)
        code = copy.wait(600)
        filler.unlink()
        report['disk_full_line'] = copy.last
        report['disk_full_code'] = code
      elif index % 2 == 0:
        kind = 'kill -9'
        copy.process.kill()
        code = copy.wait(60)
      else:
        kind = 'SIGTERM'
        copy.process.send_signal(signal.SIGTERM)
        code = copy.wait(600)
        report['sigterm_to_exit_seconds'].append(round(time.time() - stop, 1))
      report['restart_seconds'].append(copy.loaded)
      report['stops'].append({
          'kind': kind, 'after_seconds': round(stop - copy.start, 1),
          'exit_code': code,
          'unsaved_seconds': None if saved is None else round(
              max(0.0, stop - saved), 1) if kind != 'SIGTERM' else 0.0})
    final = Copy(argv, log)
    code = final.wait(3600)
    report['final_exit_code'] = code
    report['final_line'] = final.last
    report['restart_seconds'].append(final.loaded)
    report['checks'] = check_logdir(logdir, args.steps)
    counter = re.search(r'step ([\d,]+)/', final.last)
    report['checks']['step_counter'] = counter and int(
        counter.group(1).replace(',', ''))
    report['checks']['counter_equals_episodes'] = (
        report['checks']['step_counter'] ==
        report['checks']['steps_on_disk'])
  finally:
    if mounted:
      keep = base / 'run'
      if logdir.exists():
        shutil.copytree(logdir, keep)
      subprocess.run(['umount', str(base / 'fs')])
      report['logdir'] = str(keep)
  stops = report['stops']
  report['stops_survived'] = len(stops)
  unsaved = [s['unsaved_seconds'] for s in stops if s['unsaved_seconds']]
  restarts = [s for s in report['restart_seconds'] if s is not None]
  report['mean_seconds_lost_per_stop'] = round(
      (sum(unsaved) + sum(restarts)) / max(1, len(stops)), 1)
  return dict(report)


def check_logdir(logdir, steps):
  """The end state: every file reads, one value per (metric, step), the
  step counter equals the episodes on disk, the run reached `steps`."""
  import tensorflow as tf
  problems = []
  episodes = replay.list_episodes(logdir / 'episodes')
  for path in episodes:
    try:
      replay.load_episode(path)
    except ValueError as error:
      problems.append(str(error))
  state = checkpoint.read_state(logdir / checkpoint.NAME)
  rows = [json.loads(line) for line in
          (logdir / 'metrics.jsonl').read_text().splitlines()]
  events = []
  for path in logdir.glob('events.out.tfevents.*'):
    for event in tf.compat.v1.train.summary_iterator(str(path)):
      if event.summary.value:
        events.append({'step': event.step, **{
            v.tag: v.simple_value for v in event.summary.value}})
  on_disk = replay.count_steps(logdir / 'episodes', ACTION_REPEAT)
  temps = [str(p) for p in logdir.rglob('*.tmp')]
  return {
      'episodes': len(episodes), 'unreadable': problems,
      'metric_repeats': repeats(rows),
      'tensorboard_repeats': repeats(events),
      'steps_on_disk': on_disk, 'checkpoint_step': state['logged']['step'],
      'finished': on_disk >= steps, 'temporary_files': temps,
      'lost_lines': len((logdir / 'metrics.lost.jsonl').read_text(
          ).splitlines()) if (logdir / 'metrics.lost.jsonl').exists() else 0}


MOMENTS = ('trace', 'burst', 'episode')


def measure_sigterm(config, moment='trace'):
  """Seconds from SIGTERM to exit (and to the 'Stopped:' line, once the
  checkpoint is saved) of a run at `config`, the signal sent at `moment`:
  trace: 5 s into the first training burst, while its update is traced
  and compiled; burst: 2 s after 3 updates of a 20-update burst are done;
  episode: 2 s into a test episode that trains nothing before it (the
  run trains only in its first burst)."""
  logdir = pathlib.Path(tempfile.mkdtemp(prefix='dreamer-sigterm-'))
  flags = ['--task', 'dmc_cartpole_balance', '--prefill', '500',
           '--time_limit', '500', '--eval_every', '500', '--pretrain', '20']
  if moment == 'episode':
    flags += ['--pretrain', '2', '--train_every', '10000000']
  if config != 'full':
    flags += ['--configs', config]
  process = subprocess.Popen(
      command(logdir, 100_000, flags), stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT, text=True, cwd=ROOT,
      env=dict(os.environ, PYTHONUNBUFFERED='1'))
  evaluations = 0
  for line in process.stdout:
    evaluations += line.startswith('Start evaluation.')
    if moment == 'trace' and line.startswith('Training for 20 steps'):
      time.sleep(5)
      break
    updates = re.search(r'updates ([\d,]+) \(', line)
    if moment == 'burst' and updates and int(
        updates.group(1).replace(',', '')) >= 4:  # The initial one + 3.
      time.sleep(2)  # Into the next update, not between two.
      break
    if moment == 'episode' and evaluations == 2:
      time.sleep(2)
      break
  stop = time.time()
  process.send_signal(signal.SIGTERM)
  saved = None
  rest = []
  for line in process.stdout:
    rest.append(line)
    if line.startswith('Stopped:') and saved is None:
      saved = time.time() - stop
  process.wait(timeout=3600)
  seconds = time.time() - stop
  shutil.rmtree(logdir, ignore_errors=True)
  text = ''.join(rest).strip()
  return {'config': config, 'moment': moment,
          'sigterm_to_saved_seconds': saved and round(saved, 1),
          'sigterm_to_exit_seconds': round(seconds, 1),
          'exit_code': process.returncode,
          'last_line': text.splitlines()[-1] if text else ''}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--minutes', type=float, default=30)
  parser.add_argument('--stops', type=int, default=16)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--steps', type=int, default=None,
                      help='the run\'s --steps [default: 150 per minute]')
  parser.add_argument('--tmpfs', default='256m', help='its size')
  parser.add_argument('--no-disk-full', dest='disk_full',
                      action='store_false')
  parser.add_argument('--sigterm', metavar='CONFIG', default=None,
                      help='measure SIGTERM to exit at tiny, small or full')
  parser.add_argument('--moment', choices=MOMENTS, default='trace',
                      help='--sigterm: when the signal comes (see '
                      'measure_sigterm)')
  args = parser.parse_args()
  if args.sigterm:
    print(json.dumps(measure_sigterm(args.sigterm, args.moment), indent=2))
    return
  args.steps = args.steps or int(args.minutes * 150)
  print(json.dumps(soak(args), indent=2))


if __name__ == '__main__':
  main()
