"""What several test files (of tests/ and tests_harness/) share: the tiny
config and run, stand-ins for the model, episodes on disk, reading a run's
output, the golden data's folder and comparisons, the benchmark scripts."""

import json
import os
import pathlib
import re
import subprocess
import sys
import uuid

import numpy as np

import config
import replay
from spaces import Space

ROOT = pathlib.Path(__file__).resolve().parents[1]

# A whole run in seconds: the tiny networks, short episodes, a short schedule.
# Per variable, ‖float16 gradient − reference‖ ≤ F16_L2·‖reference‖ by
# optimizer: float16 round-off (tests/test_reference_updates.py says why).
F16_L2 = {'model': 0.15, 'actor': 1e-2, 'value': 1e-2}

TINY_FLAGS = [
    '--configs', 'tiny', '--task', 'dmc_cartpole_balance', '--prefill', '60',
    '--time_limit', '40', '--eval_every', '80', '--log_every', '40',
    '--train_every', '40', '--train_steps', '2', '--pretrain', '3',
    '--batch_length', '8', '--seed', '3']


def tiny_config(**overrides):
  """The `tiny` named config with `overrides`."""
  return config.make_config(configs=['tiny'], **overrides)


def tiny_flags(*extra):
  """TINY_FLAGS with the `--key value` pairs of `extra` overriding theirs."""
  merged = dict(zip(TINY_FLAGS[::2], TINY_FLAGS[1::2]))
  merged.update(dict(zip(extra[::2], extra[1::2])))
  return [item for pair in merged.items() for item in pair]


def user_env(**extra):
  """The environment of a user's shell, with `extra`: without the test-only
  write failures, and without TF_CPP_MIN_LOG_LEVEL (CI sets it), so that
  dreamer.py keeps TensorFlow's start-up lines off stderr as it does for a
  user and a failure's stderr is its one line."""
  env = {key: value for key, value in os.environ.items()
         if key not in ('TF_CPP_MIN_LOG_LEVEL', 'DREAMER_FAIL_WRITE')}
  return dict(env, PYTHONUNBUFFERED='1', **extra)


def run_dreamer(logdir, steps, flags=TINY_FLAGS):
  """Runs dreamer.py to `steps` in a fresh process; returns its stdout."""
  env = dict(os.environ, PYTHONUNBUFFERED='1')
  result = subprocess.run(
      [sys.executable, str(ROOT / 'dreamer.py'), '--logdir', str(logdir),
       '--steps', str(steps)] + list(flags),
      capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  return result.stdout


def run_benchmark(name, *flags):
  """The parsed last stdout line of `benchmarks/name` run with `flags`."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  result = subprocess.run(
      [sys.executable, str(ROOT / 'benchmarks' / name), *flags], cwd=ROOT,
      env=env, capture_output=True, text=True, timeout=180)
  assert result.returncode == 0, result.stderr[-2000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


def read_metrics(logdir):
  lines = (logdir / 'metrics.jsonl').read_text().splitlines()
  return [json.loads(line) for line in lines]


def last_updates(output):
  """The update count of the last progress line."""
  return int(re.findall(r'updates ([\d,]+) \(', output)[-1].replace(',', ''))


def schedule(steps, prefilled=80, action_repeat=2, train_every=40,
             pretrain=3, train_steps=2):
  """Updates the tiny run has done when `steps` are on disk: the initial
  update, the pretrain, then train_steps per train_every (TINY_FLAGS)."""
  bursts = (steps - action_repeat - prefilled) // train_every
  return 1 + pretrain + train_steps * bursts


class Action:

  def __init__(self, value):
    self._value = value

  def numpy(self):
    return self._value


class StubModel:
  """Stands in for models.Dreamer: zero actions, no state."""

  obs_keys = ['image']

  def initial_state(self, batch_size):
    return {}, np.zeros((batch_size, 1), np.float32)

  def policy(self, obs, latent, action, training):
    return Action(np.zeros((len(obs['image']), 1), np.float32)), latent


class NullLogger:

  def scalar(self, name, value):
    pass

  def video(self, name, frames):
    pass

  def write(self, *args, **kwargs):
    pass


def make_episode(length, ident=0):
  """An episode whose arrays record their own index and episode number."""
  return {
      'image': np.full((length, 4, 4, 3), ident, np.uint8),
      'action': np.zeros((length, 2), np.float32),
      'reward': np.arange(length, dtype=np.float32),
      'discount': np.ones(length, np.float32),
      'index': np.arange(length),
      'ident': np.full(length, ident),
  }


def episode_name(length):
  return f'20200101T000000-{uuid.uuid4().hex}-{length}.npz'


def fill(directory, lengths):
  for ident, length in enumerate(lengths):
    replay.save_episode(directory, make_episode(length, ident))


class FakeEnv:
  """Observation `pos` = [t, -t]; reward t at step t; done at `length`."""

  def __init__(self, length=5, low=(-2.0, 0.0), high=(2.0, 10.0)):
    self.length = length
    self.renders = 0
    self.actions = []
    self.t = 0
    self.obs_space = {
        'pos': Space((2,), np.dtype(np.float32), -np.inf, np.inf),
        'image': Space((4, 4, 3), np.dtype(np.uint8), 0, 255)}
    self.act_space = Space(
        (len(low),), np.dtype(np.float32), np.array(low, np.float32),
        np.array(high, np.float32))

  def reset(self):
    self.t = 0
    return self._obs(render=True)

  def step(self, action, render=True):
    self.t += 1
    self.actions.append(np.array(action))
    done = self.t >= self.length
    info = {'discount': np.float32(0.0 if done else 1.0)}
    return self._obs(render), float(self.t), done, info

  def render_obs(self):
    self.renders += 1
    return {'image': np.full((4, 4, 3), self.t, np.uint8)}

  def _obs(self, render):
    obs = {'pos': np.array([self.t, -self.t], np.float64)}
    if render:
      obs.update(self.render_obs())
    return obs


# --- The golden data (tests/reference/) -------------------------------------

def reference_dir():
  """DREAMER_REFERENCE_DIR, or the golden files committed in
  tests/reference/ (written by diff_original.py --write-reference)."""
  default = ROOT / 'tests' / 'reference'
  return pathlib.Path(os.environ.get('DREAMER_REFERENCE_DIR', default))


NOISE = {'obs_prior': 'eps_obs_prior', 'post': 'eps_post',
         'imag': 'eps_imag', 'actor': 'eps_actor'}
BATCH = ('image_uint8', 'action', 'reward', 'discount')
SMALL_KEYS = (
    'cnn_depth', 'stoch_size', 'deter_size', 'num_units', 'batch_size',
    'batch_length', 'horizon', 'pcont', 'free_nats', 'kl_scale',
    'pcont_scale', 'discount', 'disclam', 'action_init_std', 'grad_clip')


def close(ours, ref):
  """Scalars and intermediates: allclose(rtol 1e-4, atol 1e-5)."""
  ours, ref = np.asarray(ours), np.asarray(ref)
  return ours.shape == ref.shape and np.allclose(ours, ref, 1e-4, 1e-5)


def grad_close(ours, ref):
  """|ours − ref| ≤ 1e-3·|ref| + 1e-4·max|ref| + 1e-9, per variable."""
  ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
  if ours.shape != ref.shape:
    return False
  bound = 1e-3 * np.abs(ref) + 1e-4 * np.abs(ref).max() + 1e-9
  return bool(np.all(np.abs(ours - ref) <= bound))


def check(key, ours, ref):
  return (grad_close if key.startswith('grad/') else close)(ours, ref)


def reference_of(arrays, variant):
  """{key: array} of one variant, the noise and config left out."""
  prefix = f'{variant}/'
  skip = {f'{prefix}config'} | {prefix + name for name in NOISE.values()}
  return {k[len(prefix):]: v for k, v in arrays.items()
          if k.startswith(prefix) and k not in skip}


def mismatches(ours, ref):
  """{key: what is wrong} for every reference number we miss or differ on."""
  problems = {}
  for key, value in ref.items():
    if key not in ours:
      problems[key] = 'missing on our side'
    elif not check(key, ours[key], value):
      diff = np.abs(np.asarray(ours[key], np.float64) - value).max()
      problems[key] = f'max |diff| {diff:.3g}, max |ref| {np.abs(value).max():.3g}'
  return problems
