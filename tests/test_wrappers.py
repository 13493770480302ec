import functools
import os
import signal
import sys
import time

import numpy as np
import pytest

import wrappers
from wrappers import Space


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


def test_action_repeat_sums_rewards_and_renders_last_frame():
  fake = FakeEnv(length=5)
  env = wrappers.ActionRepeat(fake, 2)
  env.reset()
  fake.renders = 0
  obs, reward, done, _ = env.step(np.zeros(2))
  assert (reward, done, fake.t, fake.renders) == (3.0, False, 2, 1)
  assert obs['image'][0, 0, 0] == 2
  env.step(np.zeros(2))
  obs, reward, done, info = env.step(np.zeros(2))
  assert (reward, done, fake.t, fake.renders) == (5.0, True, 5, 3)
  assert obs['image'][0, 0, 0] == 5 and info['discount'] == 0


def test_action_repeat_can_skip_rendering():
  fake = FakeEnv()
  env = wrappers.ActionRepeat(fake, 3)
  env.reset()
  fake.renders = 0
  obs, *_ = env.step(np.zeros(2), render=False)
  assert 'image' not in obs and fake.renders == 0


def test_normalize_actions_maps_to_bounds():
  fake = FakeEnv(low=(-2.0, 0.0, -np.inf), high=(2.0, 10.0, np.inf))
  env = wrappers.NormalizeActions(fake)
  space = env.act_space
  np.testing.assert_array_equal(space.low, [-1, -1, -np.inf])
  np.testing.assert_array_equal(space.high, [1, 1, np.inf])
  env.reset()
  env.step(np.array([-1.0, 1.0, 7.0]))
  env.step(np.array([1.0, 0.0, -3.0]))
  np.testing.assert_allclose(fake.actions[0], [-2, 10, 7])
  np.testing.assert_allclose(fake.actions[1], [2, 5, -3])


def test_time_limit_ends_with_discount_one():
  env = wrappers.TimeLimit(FakeEnv(length=100), 3)
  for _ in range(2):
    env.reset()
    results = [env.step(np.zeros(2)) for _ in range(3)]
    assert [done for _, _, done, _ in results] == [False, False, True]
    discount = results[-1][3]['discount']
    assert discount == 1.0 and discount.dtype == np.float32


def test_time_limit_keeps_terminal_discount():
  env = wrappers.TimeLimit(FakeEnv(length=3), 3)
  env.reset()
  *_, (_, _, done, info) = [env.step(np.zeros(2)) for _ in range(3)]
  assert done and info['discount'] == 0.0


def test_time_limit_needs_reset():
  env = wrappers.TimeLimit(FakeEnv(), 3)
  with pytest.raises(RuntimeError, match='reset'):
    env.step(np.zeros(2))


def test_collect_records_episode():
  episodes = []
  env = wrappers.Collect(wrappers.TimeLimit(FakeEnv(length=100), 4),
                         [episodes.append])
  for _ in range(2):
    env.reset()
    for _ in range(4):
      obs, reward, done, info = env.step(np.array([0.5, -0.5]))
  assert done and info['episode'] is episodes[-1] and len(episodes) == 2
  episode = episodes[0]
  assert set(episode) == {'pos', 'image', 'action', 'reward', 'discount'}
  assert {len(value) for value in episode.values()} == {5}
  assert episode['image'].dtype == np.uint8
  for key in ('pos', 'action', 'reward', 'discount'):
    assert episode[key].dtype == np.float32, key
  np.testing.assert_array_equal(episode['action'][0], [0, 0])
  np.testing.assert_array_equal(episode['action'][1], [0.5, -0.5])
  np.testing.assert_array_equal(episode['reward'], [0, 1, 2, 3, 4])
  np.testing.assert_array_equal(episode['discount'], [1, 1, 1, 1, 1])
  np.testing.assert_array_equal(episode['pos'][:, 0], [0, 1, 2, 3, 4])


def test_collect_promise_and_terminal_discount():
  env = wrappers.Collect(FakeEnv(length=2))
  env.reset(blocking=False)()
  env.step(np.zeros(2))
  promise = env.step(np.zeros(2), blocking=False)
  _, _, done, info = promise()
  assert done and promise()[3] is info
  np.testing.assert_array_equal(info['episode']['discount'], [1, 1, 0])


def test_reward_obs():
  env = wrappers.RewardObs(FakeEnv())
  assert env.obs_space['reward'].shape == ()
  obs = env.reset()
  assert obs['reward'] == 0 and obs['reward'].dtype == np.float32
  obs, reward, _, _ = env.step(np.zeros(2))
  assert obs['reward'] == reward == 1.0


@pytest.mark.parametrize('strategy', wrappers.STRATEGIES)
def test_step_all_in_process(strategy):
  envs = [wrappers.Collect(FakeEnv(length=n)) for n in (2, 3)]
  assert len(wrappers.reset_all(envs, strategy)) == 2
  results = wrappers.step_all(envs, [np.zeros(2)] * 2, strategy)
  assert [reward for _, reward, _, _ in results] == [1.0, 1.0]
  results = wrappers.step_all(envs, [np.zeros(2)] * 2, strategy)
  assert [done for _, _, done, _ in results] == [True, False]


@pytest.mark.parametrize('task, message', [
    ('gym_Pendulum', "unknown suite 'gym'"),
    ('dmc_walker', 'dmc_DOMAIN_TASK'),
    ('dmc', "unknown suite 'dmc'"),
    ('atari_', "unknown suite 'atari'"),
])
def test_check_task_errors(task, message):
  with pytest.raises(ValueError, match=message):
    wrappers.check_task(task)


def test_check_strategy():
  with pytest.raises(ValueError, match='allowed: none, thread, process'):
    wrappers.step_all([], [], 'threads')


def test_dmc_through_async_worker():
  episodes = []
  env = wrappers.make_async_env(
      'dmc_cartpole_balance', action_repeat=2, time_limit=20,
      callbacks=[episodes.append])
  try:
    assert env.obs_space['image'].shape == (64, 64, 3)
    space = env.act_space
    assert space.shape == (1,) and space.low[0] == -1 and space.high[0] == 1
    obs = env.reset()
    assert obs['image'].shape == (64, 64, 3) and obs['image'].dtype == np.uint8
    assert obs['position'].dtype == np.float32 and obs['reward'] == 0
    rng = np.random.default_rng(0)
    steps, done = 0, False
    while not done:
      obs, reward, done, info = env.step(space.sample(rng))
      steps += 1
    assert steps == 10 and info['discount'] == 1.0
    assert obs['image'].shape == (64, 64, 3) and obs['image'].std() > 0
    episode = info['episode']
    assert episodes == [episode] and len(episode['reward']) == 11
    assert episode['image'].dtype == np.uint8
    assert episode['action'].shape == (11, 1)
    assert np.isfinite(episode['reward']).all()
    assert episode['reward'].dtype == np.float32
  finally:
    env.close()
  assert 'dm_control' not in sys.modules and 'mujoco' not in sys.modules


def test_step_all_through_workers():
  ctor = functools.partial(wrappers.make_env, 'dmc_cartpole_swingup', 2, 8)
  envs = [wrappers.Collect(wrappers.Async(ctor)) for _ in range(2)]
  try:
    for strategy in wrappers.STRATEGIES:
      wrappers.reset_all(envs, strategy)
      for _ in range(4):
        results = wrappers.step_all(envs, [np.zeros(1)] * 2, strategy)
      assert [done for _, _, done, _ in results] == [True, True]
      assert [len(info['episode']['image']) for *_, info in results] == [5, 5]
  finally:
    for env in envs:
      env.close()
  assert 'dm_control' not in sys.modules


def test_worker_reports_unknown_dmc_task():
  env = wrappers.make_async_env('dmc_walker_fly', 2, 1000)
  with pytest.raises(RuntimeError) as error:
    env.reset()
  message = str(error.value)
  expected = "ValueError: unknown DeepMind Control task 'dmc_walker_fly'"
  assert expected in message
  assert 'dmc_walker_walk' in message and 'Traceback' in message
  with pytest.raises(RuntimeError, match='unknown DeepMind Control task'):
    env.act_space
  env.close()


def test_worker_ctor_error_is_raised():
  env = wrappers.Async(functools.partial(int, 'not a number'))
  with pytest.raises(RuntimeError, match="invalid literal for int"):
    env.reset()
  env.close()


def test_worker_killed_is_reported():
  env = wrappers.Async(functools.partial(time.sleep, 60))
  os.kill(env.pid, signal.SIGKILL)
  with pytest.raises(RuntimeError, match='died with exit code -9'):
    env.step(np.zeros(1))
  with pytest.raises(RuntimeError, match='died with exit code -9'):
    env.reset()
  env.close()


def test_unpicklable_ctor():
  with pytest.raises(TypeError, match='must be picklable'):
    wrappers.Async(lambda: FakeEnv())


def test_close_stops_worker():
  env = wrappers.Async(functools.partial(dict, a=1))
  assert env.call('get', 'a', blocking=False)() == 1
  process = env._process
  env.close()
  assert not process.is_alive() and process.exitcode == 0
  with pytest.raises(RuntimeError, match='closed'):
    env.reset()
