"""Gymnasium tasks (gym_ID and MODULE:FUNCTION) with real environments:
whole runs from pixels and from state, discounts at terminated and
truncated ends, sequences across short episodes, and one line for every
bad input. The factories below are imported by path in the workers
(PYTHONPATH holds tests/)."""

import functools
import os
import subprocess
import sys

import gymnasium
import numpy as np
import pytest

import replay
import workers
import wrappers
from helpers import ROOT, last_updates, make_episode, tiny_flags, user_env

GYM_FLAGS = tiny_flags('--time_limit', '60', '--prefill', '60')
DISCRETE = ['--action_dist', 'onehot', '--expl', 'epsilon_greedy']


# --- Factories a user could write ------------------------------------------

def make_cartpole():
  """A Discrete environment, served from state."""
  return gymnasium.make('CartPole-v1')


def make_pendulum():
  """A Box environment, served from state."""
  return gymnasium.make('Pendulum-v1')


def make_list():
  return [gymnasium.make('CartPole-v1')]


class Spaces(gymnasium.Env):
  """An environment with the given spaces, to check what is refused."""

  def __init__(self, observation_space, action_space):
    self.observation_space = observation_space
    self.action_space = action_space

  def reset(self, seed=None, options=None):
    super().reset(seed=seed)
    return self.observation_space.sample(), {}

  def step(self, action):
    assert self.action_space.contains(action), action
    return self.observation_space.sample(), 0.0, False, False, {}


def make_multidiscrete():
  box = gymnasium.spaces.Box(-1, 1, (3,))
  return Spaces(box, gymnasium.spaces.MultiDiscrete([2, 3]))


def make_tuple_obs():
  box = gymnasium.spaces.Box(-1, 1, (3,))
  return Spaces(gymnasium.spaces.Tuple([box, box]), box)


def make_image_obs():
  image = gymnasium.spaces.Box(0, 255, (32, 32, 3), np.uint8)
  return Spaces(image, gymnasium.spaces.Box(-1, 1, (2,)))


def make_dict_obs():
  box = lambda *shape: gymnasium.spaces.Box(-1, 1, shape)
  spaces = gymnasium.spaces.Dict(
      {'velocity': box(2), 'reward': box(), 'angle': box(3, 2)})
  return Spaces(spaces, gymnasium.spaces.Discrete(3, start=1))


class Breaks(Spaces):
  """Raises at its fifth step."""

  def reset(self, seed=None, options=None):
    self.steps = 0
    return super().reset(seed=seed)

  def step(self, action):
    self.steps += 1
    if self.steps == 5:
      raise RuntimeError('the simulator broke')
    return super().step(action)


def make_breaking():
  box = gymnasium.spaces.Box(-1, 1, (3,))
  return Breaks(box, box)


# --- Whole runs ---------------------------------------------------------------

def run(logdir, steps, *flags):
  """dreamer.py to `steps` with GYM_FLAGS and `flags`; returns stdout."""
  env = dict(os.environ, PYTHONUNBUFFERED='1', MUJOCO_GL='egl',
             PYTHONPATH=str(ROOT / 'tests'))
  result = subprocess.run(
      [sys.executable, str(ROOT / 'dreamer.py'), '--logdir', str(logdir),
       '--steps', str(steps)] + tiny_flags(*GYM_FLAGS, *flags),
      capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  return result.stdout


def episodes(logdir):
  return [replay.load_episode(path)
          for path in replay.list_episodes(logdir / 'episodes')]


@pytest.mark.slow
def test_pixels_run_on_short_mujoco_episodes(tmp_path):
  # InvertedPendulum ends after ~4 agent steps, batch_length is 8.
  out = run(tmp_path, 200, '--task', 'gym_InvertedPendulum-v5')
  assert last_updates(out) >= 4 and 'Test episode' in out
  stored = episodes(tmp_path)
  assert max(len(e['reward']) for e in stored) < 8
  assert all(e['image'].shape[1:] == (64, 64, 3) for e in stored)
  assert all(e['discount'][-1] == 0 for e in stored)  # Terminated.


@pytest.mark.slow
def test_state_run_with_two_envs(tmp_path):
  out = run(tmp_path, 200, '--task', 'gym_Hopper-v5', '--obs', 'proprio',
            '--envs', '2')
  assert last_updates(out) >= 4
  # Done as sweep.py counts it: the steps of the episodes on disk.
  assert replay.count_steps(tmp_path / 'episodes', 2) >= 200
  assert all('image' not in e and e['state'].shape[1:] == (11,)
             for e in episodes(tmp_path))


@pytest.mark.slow
def test_factory_with_discrete_actions_from_state(tmp_path):
  out = run(tmp_path, 160, '--task', 'test_gym:make_cartpole', '--obs',
            'proprio', *DISCRETE)
  assert last_updates(out) >= 4
  for episode in episodes(tmp_path):
    assert (episode['action'][1:].sum(-1) == 1).all()  # One-hot.


# --- Environments and sequences ---------------------------------------------

def finish(task, action_repeat=2, time_limit=1000):
  """Random steps in a worker until done: (agent steps, last discount)."""
  env = workers.Async(functools.partial(
      wrappers.make_env, task, action_repeat, time_limit, image=False))
  try:
    env.reset()
    rng = np.random.default_rng(0)
    for steps in range(1, 10_000):
      _, _, done, info = env.step(env.act_space.sample(rng))
      if done:
        return steps, info['discount']
  finally:
    env.close()


def test_terminated_and_truncated_discounts():
  steps, discount = finish('gym_InvertedPendulum-v5')
  assert steps < 20 and discount == 0  # Terminated: the pole fell.
  assert finish('gym_Pendulum-v1') == (100, 1)  # Its own limit: truncated.
  assert finish('gym_HalfCheetah-v5', time_limit=30) == (15, 1)


def test_dict_observations_and_discrete_actions_with_a_start():
  env = workers.Async(functools.partial(
      wrappers.make_env, 'test_gym:make_dict_obs', 1, 100, image=False))
  try:
    assert {k: v.shape for k, v in env.obs_space.items()} == {
        'velocity': (2,), 'obs_reward': (1,), 'angle': (3, 2)}
    assert env.act_space.shape == (3,) and env.act_space.discrete
    obs = env.reset()
    assert obs['angle'].dtype == np.float32 and obs['obs_reward'].shape == (1,)
    env.step(np.eye(3, dtype=np.float32)[0])  # Index 0: action 1.
  finally:
    env.close()


def test_sequences_run_across_short_episodes(tmp_path):
  for ident, length in enumerate([3, 4, 2, 5]):
    replay.save_episode(tmp_path, make_episode(length, ident))
  sampler = replay.EpisodeSampler(tmp_path, 6, seed=0, across=True)
  for _ in range(20):
    seq = next(sampler)
    assert len(seq['reward']) == 6
    starts = seq['index'] == 0
    np.testing.assert_array_equal(seq['is_first'], starts)
    assert (np.diff(seq['ident'])[~starts[1:]] == 0).all()
  with pytest.raises(RuntimeError, match='are 20 steps'):
    next(replay.EpisodeSampler(tmp_path, 20, seed=0, across=True))


# --- Bad input: one line, exit code 2 ---------------------------------------

@pytest.mark.parametrize('flags, message', [
    (['--task', 'gym_HalfCheeta-v5'],
     "unknown Gymnasium id 'HalfCheeta-v5' in --task gym_HalfCheeta-v5; "
     'closest: gym_HalfCheetah-v5'),
    (['--task', 'no_such_module:make'],
     "cannot import module 'no_such_module' of --task no_such_module:make "
     "(ModuleNotFoundError: No module named 'no_such_module'); put its "
     'folder on PYTHONPATH'),
    (['--task', 'test_gym:make_nothing'],
     "module 'test_gym' has no function 'make_nothing'"),
    (['--task', 'test_gym:make_list'],
     'the factory test_gym:make_list returned list, not a gymnasium.Env'),
    (['--task', 'test_gym:make_multidiscrete'],
     'action space MultiDiscrete([2 3]) cannot be served: use a 1-D Box or '
     'a Discrete'),
    (['--task', 'test_gym:make_tuple_obs', '--obs', 'proprio'],
     'observation space Tuple(') ,
    (['--task', 'test_gym:make_image_obs', '--obs', 'both'],
     'observation state is an image (32, 32, 3): pass --obs image'),
    (['--task', 'test_gym:make_cartpole'] + DISCRETE,
     "render() returned None: make the environment with "
     "render_mode='rgb_array', or pass --obs proprio"),
    (['--task', 'gym_CartPole-v1'] + DISCRETE,
     'render() of gym_CartPole-v1 raised DependencyNotInstalled: pygame is '
     'not installed'),
    (['--task', 'gym_CartPole-v1', '--obs', 'proprio'],
     'gym_CartPole-v1 has Discrete(2) actions: pass --action_dist onehot '
     '--expl epsilon_greedy'),
    (['--task', 'gym_Hopper-v5', '--obs', 'proprio'] + DISCRETE,
     'gym_Hopper-v5 has continuous (Box) actions: pass --action_dist '
     'tanh_normal'),
])
def test_bad_input_is_one_line(tmp_path, flags, message):
  env = user_env(MUJOCO_GL='egl', PYTHONPATH=str(ROOT / 'tests'))
  result = subprocess.run(
      [sys.executable, str(ROOT / 'dreamer.py'), '--logdir', str(tmp_path)]
      + flags, capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
  err = result.stderr.strip()
  assert result.returncode == 2 and len(err.splitlines()) == 1, err
  assert err.startswith('dreamer.py: error: ') and message in err, err


@pytest.mark.slow  # Imports TensorFlow before it fails.
def test_environment_raising_during_the_run(tmp_path):
  env = user_env(PYTHONPATH=str(ROOT / 'tests'))
  result = subprocess.run(
      [sys.executable, str(ROOT / 'dreamer.py'), '--logdir', str(tmp_path),
       '--task', 'test_gym:make_breaking', '--obs', 'proprio'],
      capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
  assert result.returncode == 1
  assert result.stderr.startswith(
      'error: environment worker failed: RuntimeError: the simulator broke')


@pytest.mark.slow  # Imports TensorFlow.
def test_rssm_starts_from_zeros_at_is_first():
  import tensorflow as tf
  import networks
  rssm = networks.RSSM(2, 5, 4, 8, 8, 'independent')
  rng = np.random.default_rng(0)
  embed, action = rng.normal(size=(2, 6, 5)), rng.normal(size=(2, 6, 2))
  eps = {k: rng.normal(size=(2, 6, 4)) for k in ('prior', 'post')}
  cast = lambda x: tf.constant(x, tf.float32)
  first = np.zeros((2, 6), np.float32)
  first[:, 3] = 1
  post, _ = rssm.observe(
      cast(embed), cast(action), eps={k: cast(v) for k, v in eps.items()},
      is_first=first)
  fresh, _ = rssm.observe(
      cast(embed[:, 3:]), cast(action[:, 3:]),
      eps={k: cast(v[:, 3:]) for k, v in eps.items()})
  for key in ('deter', 'stoch'):
    np.testing.assert_allclose(post[key][:, 3:], fresh[key], atol=1e-6)
