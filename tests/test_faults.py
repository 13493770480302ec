"""Nothing lost, nothing cryptic: bad input, interruptions, damaged files,
numeric faults and failing environment workers."""

import functools
import io
import itertools
import json
import os
import pickle
import random
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

import checkpoint
import dreamer
import logger
import replay
import runlock
import tools
import workers
from config import check_config, config_dict, defaults, make_config, parse_args
from helpers import (
    ROOT, TINY_FLAGS, NullLogger, StubModel, episode_name, fill, last_updates,
    make_episode, schedule)


def fails_with_one_line(capsys, argv):
  """Runs dreamer.main(argv); returns its one-line error message."""
  with pytest.raises(SystemExit) as info:
    dreamer.main(argv)
  assert info.value.code == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1, err
  assert 'Traceback' not in err
  return err


@pytest.mark.parametrize('flags,message', [
    (['--task', 'gymm_cartpole'], "unknown suite 'gymm'"),
    (['--task', 'dmc_'], "unknown suite 'dmc'"),
    (['--task', 'dmc_walker_fly'], 'allowed: dmc_acrobot_swingup'),
    (['--nonsense', '1'], 'unrecognized arguments: --nonsense'),
    (['--steps', 'many'], "expected an integer, got 'many'"),
    (['--steps', '1e999'], 'expected an integer'),
    (['--pcont', 'yes'], 'expected True or False'),
    (['--model_lr', 'fast'], "invalid float value: 'fast'"),
    (['--precision', '8'], 'choose one of: 16, 32, bf16'),
    (['--batch_size', '0'], '--batch_size must be at least 1, got 0'),
    (['--steps', '-5'], '--steps must be at least 1'),
    (['--model_lr', '-0.0001'], '--model_lr must be at least 0'),
    (['--actor_lr', 'nan'], '--actor_lr must be at least 0, got nan'),
    (['--discount', '1.5'], '--discount must be in [0, 1]'),
    (['--batch_length', '600'], 'batch_length must be at most 500'),
    (['--dense_act', 'tanh'], 'choose one of: elu, relu, swish, leaky_relu'),
    (['--action_dist', 'beta'], 'choose one of: tanh_normal, onehot'),
    (['--weight_decay_pattern', '(unclosed'], 'not a regular expression'),
    (['--configs', 'huge'], "unknown config 'huge'; known: small"),
    (['--task', 'atari_pong'],
     '--action_dist tanh_normal, --expl additive_gaussian does not fit an '
     'Atari task (one-hot actions, images only): pass --action_dist onehot '
     '--expl epsilon_greedy'),
    (['--task', 'atari_pongg', '--action_dist', 'onehot', '--expl',
      'epsilon_greedy'], "unknown Atari game 'atari_pongg'; allowed: "),
    (['--task', 'dmc_cartpole_balance', '--obs', 'pixels'],
     'choose one of: image, proprio, both'),
])
def test_config_errors_are_one_line_with_exit_code_2(
    tmp_path, capsys, flags, message):
  err = fails_with_one_line(capsys, ['--logdir', str(tmp_path)] + flags)
  assert err.startswith('dreamer.py: error:') and message in err, err


def test_unwritable_logdir_is_one_line(tmp_path, capsys):
  blocker = tmp_path / 'file'
  blocker.write_text('')
  err = fails_with_one_line(capsys, ['--logdir', str(blocker / 'run')])
  assert 'cannot write to --logdir' in err


def test_logdir_of_another_config_names_the_keys(tmp_path, capsys):
  saved = config_dict(make_config(logdir=tmp_path))
  saved.update(task='dmc_walker_walk', deter_size=64)
  (tmp_path / 'config.json').write_text(json.dumps(saved))
  err = fails_with_one_line(capsys, [
      '--logdir', str(tmp_path), '--task', 'dmc_cartpole_balance'])
  assert "task 'dmc_walker_walk' there, 'dmc_cartpole_balance' now" in err
  assert 'deter_size 64 there, 200 now' in err
  assert 'another --logdir to start fresh' in err


FLAG_NAMES = sorted(defaults()) + ['nonsense', 'configs']
VALUES = st.one_of(
    st.sampled_from([
        '0', '1', '-1', '1e4', '2.5', 'nan', 'inf', '1e999', 'True', 'False',
        'small', 'dmc_walker_walk', 'dmc_nope_nope', 'relu', 'onehot', '16',
        'bf16', '(', '']),
    st.text(max_size=8))


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.sampled_from(FLAG_NAMES), VALUES), max_size=4))
@example([('nonsense', '\x1e')])  # A line break to str.splitlines.
def test_random_flags_parse_or_fail_with_one_line(pairs):
  argv = ['--logdir', 'runs/x']
  for key, value in pairs:
    argv += [f'--{key}', value]
  import contextlib
  import io
  err = io.StringIO()
  with contextlib.redirect_stderr(err):
    try:
      config = parse_args(argv)
    except SystemExit as exit:
      assert exit.code == 2
      lines = err.getvalue().strip().splitlines()
      assert len(lines) == 1 and lines[0].startswith('dreamer.py: error:')
      return
  check_config(vars(config))  # A parsed config is a valid one.


# --- Episode files ----------------------------------------------------------

def test_truncated_episode_is_skipped_with_one_warning_and_kept(
    tmp_path, capsys):
  fill(tmp_path, [10])
  path = replay.save_episode(tmp_path, make_episode(12, 1))
  path.write_bytes(path.read_bytes()[:200])
  sampler = replay.EpisodeSampler(tmp_path, 4, rescan=3, seed=0)
  assert {next(sampler)['ident'][0] for _ in range(30)} == {0}
  out = capsys.readouterr().out
  assert out.count('Skipping episode') == 1 and path.name in out
  assert path.exists()


def test_leftover_temporary_files_are_removed(tmp_path):
  episodes = tmp_path / 'episodes'
  fill(episodes, [10])
  (episodes / f'.{episode_name(7)}.tmp').write_bytes(b'half')
  (tmp_path / '.variables.pkl.tmp').write_bytes(b'half')
  removed = tools.remove_temporary_files(tmp_path)
  assert len(removed) == 2 and not list(tmp_path.rglob('*.tmp'))
  assert len(replay.list_episodes(episodes)) == 1


def test_bounded_replay_memory_keeps_the_sampling_stream(tmp_path):
  fill(tmp_path, [30, 20, 25, 40, 12])
  stream = lambda sampler: [
      (s['ident'][0], s['index'][0]) for s in itertools.islice(sampler, 60)]
  unbounded = replay.EpisodeSampler(tmp_path, 5, rescan=7, seed=2)
  expected = stream(unbounded)
  one_episode = max(
      sum(v.nbytes for v in replay.load_episode(p).values())
      for p in replay.list_episodes(tmp_path))
  bounded = replay.EpisodeSampler(
      tmp_path, 5, rescan=7, seed=2, memory=one_episode)
  assert stream(bounded) == expected
  assert 0 < bounded.memory() <= one_episode < unbounded.memory()


# --- Checkpoints -------------------------------------------------------------

class _Stateful:

  def __init__(self, value=None):
    self.value = value

  def get_state(self):
    return {'value': self.value}

  def set_state(self, state):
    self.value = state['value']


def saved_states(tmp_path, *values):
  path = tmp_path / checkpoint.NAME
  for value in values:
    parts = [_Stateful(value) for _ in range(3)]
    checkpoint.save_checkpoint(path, *parts)
  return path


def test_checkpoint_keeps_the_previous_one(tmp_path):
  path = saved_states(tmp_path, 1, 2)
  assert checkpoint.read_state(path)['model']['value'] == 2
  assert checkpoint.read_state(
      tools.previous_path(path))['model']['value'] == 1
  assert not list(tmp_path.glob('*.tmp'))


@pytest.mark.parametrize('damage', ['truncate', 'garbage', 'missing'])
def test_damaged_newest_checkpoint_falls_back_to_the_previous(
    tmp_path, capsys, damage):
  path = saved_states(tmp_path, 1, 2)
  if damage == 'truncate':
    path.write_bytes(path.read_bytes()[:40])
  elif damage == 'garbage':
    path.write_bytes(b'not a checkpoint')
  else:
    path.unlink()
  parts = [_Stateful() for _ in range(3)]
  assert checkpoint.load_checkpoint(path, *parts) == tools.previous_path(path)
  assert [p.value for p in parts] == [1, 1, 1]
  out = capsys.readouterr().out
  assert 'resumed from the previous checkpoint' in out
  if damage != 'missing':
    assert 'Warning: cannot resume from' in out


def test_both_checkpoints_damaged_is_one_line(tmp_path, capsys):
  path = saved_states(tmp_path, 1, 2)
  path.write_bytes(b'x')
  tools.previous_path(path).write_bytes(b'y')
  with pytest.raises(SystemExit) as info:
    checkpoint.load_checkpoint(path, *[_Stateful() for _ in range(3)])
  assert info.value.code == 2
  assert len(capsys.readouterr().err.strip().splitlines()) == 1


def realistic_state():
  """The kinds of values a checkpoint holds: arrays under original names,
  lists of optimizer arrays, 128-bit random states, tuples, numpy scalars."""
  rng = np.random.default_rng(5)
  rng.normal(size=3)
  return {
      'version': 3,
      'model': {'weights': {'encoder/h1/kernel': np.ones((4, 4, 3, 2),
                                                         np.float32)},
                'optimizers': {'model': [np.zeros(3, np.float32),
                                         np.array(7, np.int64)]}},
      'agent': {'train_last': 5000, 'train_seconds': 12.5, 'pending': 0,
                'rng': rng.bit_generator.state,
                'metrics': {'model_loss': (np.float64(3.5), 2)}},
      'sampler': {'rng': rng.bit_generator.state, 'count': np.int64(9)}}


def test_checkpoint_format_round_trips_without_pickle(tmp_path):
  state = realistic_state()
  data = checkpoint.encode(state)
  with np.load(io.BytesIO(data), allow_pickle=False) as npz:
    assert 'model/weights/encoder/h1/kernel' in npz.files
  back = checkpoint.decode(data)
  np.testing.assert_array_equal(
      back['model']['weights']['encoder/h1/kernel'],
      state['model']['weights']['encoder/h1/kernel'])
  assert back['model']['optimizers']['model'][1] == 7
  assert back['agent']['rng'] == state['agent']['rng']
  assert back['agent']['metrics'] == {'model_loss': [3.5, 2]}
  assert back['sampler']['count'] == 9 and back['agent']['train_seconds'] == 12.5
  rng = np.random.default_rng()
  rng.bit_generator.state = back['agent']['rng']
  twin = np.random.default_rng(5)
  twin.normal(size=3)
  assert rng.normal() == twin.normal()


class _RunsCode:

  def __reduce__(self):
    return (os.system, ('touch ran-code',))


def test_a_pickle_that_would_run_code_is_refused(tmp_path, capsys, monkeypatch):
  monkeypatch.chdir(tmp_path)
  legacy = tmp_path / checkpoint.LEGACY
  legacy.write_bytes(pickle.dumps({'model': _RunsCode()}))
  with pytest.raises(SystemExit) as info:
    checkpoint.load_checkpoint(
        tmp_path / checkpoint.NAME, *[_Stateful() for _ in range(3)])
  assert info.value.code == 2
  assert not (tmp_path / 'ran-code').exists()
  captured = capsys.readouterr()
  assert 'refused: the file names posix.system' in captured.out
  assert len(captured.err.strip().splitlines()) == 1


def test_a_legacy_pickle_checkpoint_is_read_once(tmp_path, capsys):
  state = realistic_state()
  state['model'] = {'value': np.float32(4)}
  state['agent'] = state['sampler'] = {'value': [1, (2, 3)]}
  (tmp_path / checkpoint.LEGACY).write_bytes(pickle.dumps(state, protocol=4))
  parts = [_Stateful() for _ in range(3)]
  path = tmp_path / checkpoint.NAME
  assert checkpoint.exists(path)
  assert checkpoint.load_checkpoint(path, *parts) == tmp_path / checkpoint.LEGACY
  assert parts[0].value == 4 and parts[1].value == [1, (2, 3)]
  assert 'checkpoint.npz is written from now on' in capsys.readouterr().out
  checkpoint.save_checkpoint(path, *parts)
  assert checkpoint.load_checkpoint(path, *parts) == path
  assert (tmp_path / checkpoint.LEGACY).exists()  # Never removed.


# --- Numeric faults ----------------------------------------------------------

class _NonFiniteModel(StubModel):

  def __init__(self, pattern):
    self.pattern = itertools.cycle(pattern)
    self.calls = 0

  def train(self, data):
    self.calls += 1
    return {'model_loss': 1.0, 'model_nonfinite': next(self.pattern),
            'actor_nonfinite': 0.0, 'value_nonfinite': 0.0}


def nonfinite_agent(pattern, pretrain):
  config = make_config(log_images=False, pretrain=pretrain)
  model = _NonFiniteModel(pattern)
  agent = dreamer.Agent(
      config, model, itertools.repeat({}), NullLogger(), tools.Counter(),
      logger.Progress(10, 0), np.random.default_rng(0))
  return agent, model


def test_persistent_non_finite_gradients_stop_the_run():
  agent, model = nonfinite_agent([1.0], dreamer.NONFINITE_LIMIT + 50)
  with pytest.raises(dreamer.NonFiniteError, match='the model loss had non'):
    agent.train()
  assert model.calls == dreamer.NONFINITE_LIMIT


def test_occasional_non_finite_gradients_do_not():
  agent, model = nonfinite_agent([1.0] * 20 + [0.0], 300)
  agent.train()
  assert model.calls == 300


def test_stop_request_ends_a_burst_after_the_current_update():
  agent, model = nonfinite_agent([0.0], 10)
  model.train = lambda data: dreamer.STOP.set() or {'model_loss': 1.0}
  try:
    with pytest.raises(dreamer.StopRequested):
      agent.train()
  finally:
    dreamer.STOP.clear()
  assert agent.updates == 1 and agent.get_state()['pending'] == 9


# --- Workers ----------------------------------------------------------------

def test_hung_worker_times_out_and_is_killed():
  env = workers.Async(functools.partial(time.sleep, 60), timeout=1)
  start = time.time()
  with pytest.raises(workers.WorkerError, match='did not answer within 1 s'):
    env.reset()
  assert time.time() - start < 10
  env._process.join(5)
  assert not env._process.is_alive()
  env.close()


# --- Whole runs: SIGTERM, kill -9, a killed worker ----------------------------

def start_dreamer(logdir, steps):
  return subprocess.Popen(
      [sys.executable, '-u', str(ROOT / 'dreamer.py'), '--logdir', str(logdir),
       '--steps', str(steps)] + TINY_FLAGS,
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
      env=dict(os.environ, PYTHONUNBUFFERED='1'))


def read_until(process, pattern, timeout=300):
  """Output of `process` up to the first line matching `pattern`."""
  lines, deadline = [], time.time() + timeout
  while time.time() < deadline:
    line = process.stdout.readline()
    if not line:
      break
    lines.append(line)
    if re.search(pattern, line):
      return ''.join(lines)
  process.kill()
  raise AssertionError(f'no line matching {pattern!r}:\n' + ''.join(lines))


@pytest.mark.slow
def test_sigterm_finishes_the_update_saves_and_exits_0(tmp_path):
  process = start_dreamer(tmp_path, 400)
  read_until(process, r'^Start collection')
  process.send_signal(signal.SIGTERM)
  output, _ = process.communicate(timeout=300)
  assert process.returncode == 0, output
  assert 'SIGTERM: stopping after the current update' in output
  assert f'Resume with:\n  python dreamer.py --logdir {tmp_path}' in output
  assert (tmp_path / checkpoint.NAME).exists()


@pytest.mark.slow
def test_kill_9_at_a_random_moment_then_resume(tmp_path):
  # A random moment, reproducible: DREAMER_KILL_SEED=N tries another.
  seed = int(os.environ.get('DREAMER_KILL_SEED', '9'))
  delay = random.Random(seed).uniform(0, 15)
  process = start_dreamer(tmp_path, 200)
  read_until(process, r'^Start evaluation')
  time.sleep(delay)
  process.kill()
  process.communicate()
  assert runlock.holder(tmp_path) is None  # The lock died with it.
  output = subprocess.run(
      [sys.executable, str(ROOT / 'dreamer.py'), '--logdir', str(tmp_path),
       '--steps', '240'] + TINY_FLAGS, capture_output=True, text=True,
      cwd=ROOT, timeout=600).stdout
  assert 'Simulating agent' in output, (seed, output[-2000:])
  files = replay.list_episodes(tmp_path / 'episodes')
  for path in files:
    replay.load_episode(path)  # Every file on disk is whole.
  assert not list(tmp_path.rglob('*.tmp'))
  steps = replay.count_steps(tmp_path / 'episodes', 2)
  assert 240 <= steps <= 240 + 80, seed
  assert last_updates(output) == schedule(steps), (seed, delay)


@pytest.mark.slow
def test_killed_worker_saves_and_exits_non_zero(tmp_path):
  process = start_dreamer(tmp_path, 400)
  read_until(process, r'^Start collection')
  children = subprocess.run(
      ['pgrep', '-P', str(process.pid)], capture_output=True, text=True
  ).stdout.split()
  workers = [int(pid) for pid in children if 'spawn_main' in open(
      f'/proc/{pid}/cmdline').read()]
  assert workers
  for pid in workers:
    os.kill(pid, signal.SIGKILL)
  output, _ = process.communicate(timeout=300)
  assert process.returncode == 1, output
  assert 'died with exit code -9' in output
  assert 'The checkpoint is saved' in output
  assert (tmp_path / checkpoint.NAME).exists()
