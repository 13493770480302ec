"""original_train.py (harness/train.py): the original Dreamer's own main() on today's stack.

(a) The environment it is served (our spawned worker, harness/env.py)
    equals the original's own wrapper stack step for step; (b) a tiny run
    of the original stopped by SIGTERM leaves its logdir complete, and the
    same command with more steps resumes from it to its end; (c) its seeding leaves the original's
    latent noise fresh for every sample, as the original draws it.

The checkout comes from DREAMER_ORIGINAL_DIR (default
`<repo>/../shared/original-dreamer`); without it the tests skip and say
why. Both run in subprocesses: (a) in a process that never imports
TensorFlow (dm_control cannot share one with it here), (b) because the
original needs tf_keras and its modules' names clash with ours.
"""

import json
import os
import pathlib
import pickle
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

# Not from helpers: this module is imported by the fresh processes below,
# and helpers imports our `wrappers`, a name the original's modules take.
HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent


def _env():
  env = dict(os.environ)
  env['PYTHONPATH'] = os.pathsep.join(
      [str(ROOT), str(HERE)] + ([env['PYTHONPATH']] if env.get(
          'PYTHONPATH') else []))
  env.setdefault('MUJOCO_GL', 'egl')
  return env


def last_line_of(code):
  """Runs Python `code` in a fresh process (tests/ importable); returns
  the last line it printed, failing the test if it failed."""
  result = subprocess.run(
      [sys.executable, '-c', code], env=_env(), cwd=ROOT,
      capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout.strip().splitlines()[-1]


# --- (a) the served environment equals the original's wrappers --------------

def compare_envs(checkout, task, action_repeat, time_limit, seed, steps):
  """Runs in a process without TensorFlow. Steps the original's
  DeepMindControl -> ActionRepeat -> NormalizeActions -> TimeLimit (its
  wrappers.py, with dm_control's suite.load given task_kwargs={'random':
  seed} from outside, since the original passes no seed) and what
  original_train serves (GymEnv over our worker) with the same uniform
  actions; returns a list of differences (empty when equal)."""
  import functools
  import importlib.util

  import workers
  from harness import compat, env
  compat.install_gym_stand_in()
  from dm_control import suite
  load = suite.load
  suite.load = lambda domain, name, **kwargs: load(
      domain, name, task_kwargs={'random': seed}, **kwargs)
  spec = importlib.util.spec_from_file_location(
      'original_wrappers', pathlib.Path(checkout) / 'wrappers.py')
  theirs_module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(theirs_module)
  w = theirs_module
  theirs = w.DeepMindControl(task.split('_', 1)[1])
  theirs = w.ActionRepeat(theirs, action_repeat)
  theirs = w.NormalizeActions(theirs)
  theirs = w.TimeLimit(theirs, time_limit / action_repeat)
  worker = workers.Async(functools.partial(
      env.worker_env, task, action_repeat, time_limit, seed),
      timeout=120)
  ours = env.GymEnv(worker)
  assert 'tensorflow' not in sys.modules

  problems = []

  def same(what, a, b):
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or not np.array_equal(a, b):
      problems.append(f'{what}: original {a.ravel()[:4]} {a.shape} '
                      f'{a.dtype}, served {b.ravel()[:4]} {b.shape} {b.dtype}')

  for name in ('low', 'high'):
    same(f'action_space.{name}', getattr(theirs.action_space, name),
         getattr(ours.action_space, name))
  their_spaces = theirs.observation_space.spaces
  our_spaces = ours.observation_space.spaces
  if list(their_spaces) != list(our_spaces):
    problems.append(f'observation keys {list(their_spaces)} vs '
                    f'{list(our_spaces)}')
  for key in their_spaces:
    if key in our_spaces and (
        their_spaces[key].shape != our_spaces[key].shape
        or their_spaces[key].dtype != our_spaces[key].dtype):
      problems.append(f'observation_space[{key}]: {their_spaces[key]} vs '
                      f'{our_spaces[key]}')

  def same_obs(when, a, b):
    if sorted(a) != sorted(b):
      problems.append(f'{when}: keys {sorted(a)} vs {sorted(b)}')
      return
    for key in a:
      # The original's state arrays are dm_control's float64, cast to
      # float32 by its Collect at --precision 32; ours are float32.
      value = np.asarray(a[key])
      if value.dtype == np.float64:
        value = value.astype(np.float32)
      same(f'{when} {key}', value, b[key])

  rng = np.random.default_rng(seed)
  shape = theirs.action_space.shape
  same_obs('reset', theirs.reset(), ours.reset())
  done, count = False, 0
  while not done and count < steps:
    action = rng.uniform(-1, 1, shape).astype(np.float32)
    t_obs, t_reward, t_done, t_info = theirs.step(action)
    o_obs, o_reward, o_done, o_info = ours.step(action)
    count += 1
    same_obs(f'step {count}', t_obs, o_obs)
    same(f'step {count} reward', np.float64(t_reward), np.float64(o_reward))
    same(f'step {count} done', bool(t_done), bool(o_done))
    same(f'step {count} discount', np.float32(t_info['discount']),
         np.float32(o_info['discount']))
    done = t_done
  if not done:
    problems.append(f'no episode end within {steps} steps')
  ours.close()
  return problems, count


@pytest.mark.slow
@pytest.mark.parametrize('task, time_limit', [
    ('dmc_cartpole_balance', 60),  # 30 agent steps to the time limit
    ('dmc_walker_walk', 16),       # a scalar state entry (height)
])
def test_served_env_equals_the_originals_wrappers(checkout, task, time_limit):
  problems, count = json.loads(last_line_of(
      'import json, test_original_train as t; '
      f'print(json.dumps(t.compare_envs({str(checkout)!r}, {task!r}, 2, '
      f'{time_limit}, 5, 100)))'))
  assert count == time_limit // 2
  assert not problems, '\n'.join(problems[:20])


def test_gym_stand_in_spaces():
  from harness import compat
  compat.install_gym_stand_in()
  import gym
  box = gym.spaces.Box(-np.ones(2), np.ones(2), dtype=np.float32)
  assert box.shape == (2,) and box.low.dtype == np.float32
  sample = box.sample()
  assert sample.shape == (2,) and sample.dtype == np.float32
  assert np.all(np.abs(sample) <= 1)
  scalar = gym.spaces.Box(-np.inf, np.inf, dtype=np.float32)
  assert scalar.shape == ()
  image = gym.spaces.Box(0, 255, (4, 4, 3), dtype=np.uint8)
  assert image.high.shape == (4, 4, 3) and image.sample().dtype == np.uint8
  spaces = gym.spaces.Dict({'b': scalar, 'a': image}).spaces
  assert list(spaces) == ['a', 'b']  # sorted, as gym's Dict
  assert 0 <= gym.spaces.Discrete(3).sample() < 3
  with pytest.raises(ImportError, match='gym.make'):
    gym.make('Pong-v0')


# --- (b) a tiny run of the original, then its resume ------------------------

TINY = (
    '--task dmc_cartpole_balance --cnn_depth 4 --deter_size 16 '
    '--stoch_size 4 --num_units 16 --batch_size 3 --batch_length 8 '
    '--horizon 4 --precision 32 --prefill 60 --time_limit 40 --eval_every 40 '
    '--log_every 40 --train_every 40 --train_steps 2 --pretrain 3 '
    # One trace of the train step instead of two (with and without the
    # open-loop GIF); the test episode's GIF still goes through encode_gif.
    '--log_images False').split()


def start_original(checkout, logdir, steps, *flags):
  return subprocess.Popen(
      [sys.executable, str(ROOT / 'original_train.py'), '--original',
       str(checkout), '--logdir', str(logdir), *TINY, '--steps', str(steps),
       *flags],
      env=dict(_env(), PYTHONUNBUFFERED='1'), cwd=ROOT, text=True,
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.mark.slow
def test_tiny_original_run_stopped_by_sigterm_then_resumed(checkout, tmp_path):
  """SIGTERM as the second evaluation starts (step 120, after one collected
  episode): the run stops at the next training episode's start, still 120,
  saved; the same command with more steps resumes there and ends."""
  logdir = tmp_path / 'original'
  keep = ('--keep_checkpoints', '80,100,140')
  process = start_original(checkout, logdir, 1000, *keep)
  lines = []
  for line in process.stdout:
    lines.append(line)
    if sum(x.startswith('Start evaluation.') for x in lines) == 2:
      process.send_signal(signal.SIGTERM)
      break
  out = ''.join(lines) + process.communicate(timeout=600)[0]
  assert process.returncode == 0, out[-3000:]
  assert 'replaced:' in out and 'dreamer.make_env' in out
  assert 'Load checkpoint.' not in out
  assert 'SIGTERM: stopping at the start of the next training episode' in out
  assert re.search(r'Stopped at step 120: variables.pkl and the episodes are '
                   r'saved', out), out[-3000:]
  lines = [json.loads(line) for line in
           (logdir / 'metrics.jsonl').read_text().splitlines()]
  assert any('test/return' in line for line in lines)
  assert any('model_loss' in line for line in lines)
  episodes = sorted((logdir / 'episodes').glob('*.npz'))
  assert len(episodes) == 3  # 2 prefill + 1 collected, 20 agent steps each
  with np.load(episodes[0]) as episode:
    assert episode['image'].shape == (21, 64, 64, 3)
    assert episode['action'].shape == (21, 1)
    assert episode['position'].dtype == np.float32
  with open(logdir / 'variables.pkl', 'rb') as file:
    assert int(pickle.load(file)[0]) == 120  # The agent's step variable.
  assert list(logdir.glob('events.out.tfevents.*'))
  # Kept: 80 after the pretrain in the test episode's first call, 100 at the
  # first call at 100 (no training due there).
  assert re.findall(r'Kept the checkpoint of step (\d+)', out) == ['80', '100']
  first = {path.name: path.read_bytes()
           for path in (logdir / 'kept').glob('variables-*.pkl')}
  assert sorted(first) == ['variables-100.pkl', 'variables-80.pkl']
  with open(logdir / 'kept' / 'variables-80.pkl', 'rb') as file:
    assert int(pickle.load(file)[0]) == 80

  process = start_original(checkout, logdir, 160, *keep)
  out = process.communicate(timeout=600)[0]
  assert process.returncode == 0, out[-3000:]
  assert 'Load checkpoint.' in out and 'Prefill dataset with 0 steps.' in out
  assert re.findall(r'Kept the checkpoint of step (\d+)', out) == ['140']
  assert {name: (logdir / 'kept' / name).read_bytes()
          for name in first} == first
  assert len(list((logdir / 'episodes').glob('*.npz'))) == 4
  steps = [json.loads(line)['step'] for line in
           (logdir / 'metrics.jsonl').read_text().splitlines()]
  assert max(steps) == 160
  # Ours evaluates a kept copy, at the step it was kept.
  result = subprocess.run(
      [sys.executable, str(ROOT / 'evaluate.py'), '--logdir', str(logdir),
       '--checkpoint', str(logdir / 'kept' / 'variables-140.pkl'),
       '--episodes', '1', '--video', 'none', '--task', 'dmc_cartpole_balance',
       '--cnn_depth', '4', '--deter_size', '16', '--stoch_size', '4',
       '--num_units', '16', '--batch_length', '8', '--time_limit', '40',
       '--precision', '32'],
      capture_output=True, text=True, timeout=600, cwd=ROOT, env=_env())
  assert result.returncode == 0, result.stderr[-2000:]
  assert json.loads((logdir / 'eval' / '140' / 'summary.json').read_text())[
      'step'] == 140


def test_a_logdir_in_use_is_refused(checkout, tmp_path):
  import runlock
  logdir = tmp_path / 'original'
  with runlock.LogdirLock(logdir):
    result = subprocess.run(
        [sys.executable, str(ROOT / 'original_train.py'), '--original',
         str(checkout), '--logdir', str(logdir), *TINY, '--steps', '120'],
        env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1].startswith(
      f'error: --logdir {logdir} is in use by another run (process '
      f'{os.getpid()} ')
  assert not (logdir / 'episodes').exists()


# --- (c) the harness's seeding leaves the original's noise fresh -------------

def distinct_latent_noise(checkout, tf_seed):
  """Runs in a process of its own (tf_keras). Seeds as original_train does
  (plus TensorFlow's global seed when `tf_seed`), observes 5 steps of two
  sequences with the original's RSSM inside a tf.function, as its train
  step does, and returns how many distinct ε = (stoch − mean) / std its
  10 latent samples of the first sequence (5 priors, 5 posteriors) drew."""
  os.environ['TF_USE_LEGACY_KERAS'] = '1'
  from harness import compat, train
  original = compat.load_original(checkout)
  import tensorflow as tf
  train.seed_globals(3)
  if tf_seed:
    tf.random.set_seed(3)
  rssm = original.models.RSSM(stoch=4, deter=6, hidden=6)
  embed, action = tf.zeros((2, 5, 8)), tf.zeros((2, 5, 1))

  @tf.function
  def observe():
    post, prior = rssm.observe(embed, action)
    return [(s['stoch'] - s['mean']) / s['std'] for s in (post, prior)]

  eps = np.concatenate([e.numpy()[0] for e in observe()], 0)
  return len(np.unique(eps.round(4), axis=0))


@pytest.mark.parametrize('tf_seed, expected', [(False, 10), (True, 1)])
def test_seeding_keeps_the_originals_latent_noise_fresh(
    checkout, tf_seed, expected):
  # With TensorFlow's global seed set (what this harness used to do), every
  # inlined copy of obs_step's and img_step's random op gets one op seed:
  # all ten samples share one ε. Unseeded, as the original runs, ten.
  assert int(last_line_of(
      'import test_original_train as t; '
      f'print(t.distinct_latent_noise({str(checkout)!r}, {tf_seed}))')) == (
          expected)
