"""The driver records episodes where the step happens; the environment
workers that it steps, and what happens when they fail."""

import functools
import os
import signal
import sys
import time

import numpy as np
import pytest

import workers
import wrappers
from driver import Driver
from helpers import FakeEnv


def constant_policy(action):
  """A policy that sends `action` to every env; counts its calls."""

  def policy(obs, reset, state):
    state = (state or 0) + 1
    return np.stack([np.asarray(action, np.float32)] * len(reset)), state
  return policy


def test_driver_records_episodes():
  episodes, transitions = [], []
  driver = Driver([wrappers.TimeLimit(FakeEnv(length=100), 4)])
  driver.on_episode(lambda episode, index: episodes.append(episode))
  driver.on_step(lambda transition, index: transitions.append(transition))
  driver(constant_policy([0.5, -0.5]), episodes=2)
  assert len(episodes) == 2 and len(transitions) == 8
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
  assert transitions[0]['reward'] == 1.0
  np.testing.assert_array_equal(transitions[0]['action'], [0.5, -0.5])


def test_driver_keeps_the_terminal_discount():
  episodes = []
  driver = Driver([FakeEnv(length=2)])
  driver.on_episode(lambda episode, index: episodes.append(episode))
  driver(constant_policy([0.0, 0.0]), episodes=1)
  np.testing.assert_array_equal(episodes[0]['discount'], [1, 1, 0])


def test_policy_sees_observations_and_resets_without_the_reward():
  seen = []

  def policy(obs, reset, state):
    seen.append((sorted(obs), reset.tolist(), state))
    return np.zeros((len(reset), 2), np.float32), 'state'

  driver = Driver([FakeEnv(length=2), FakeEnv(length=3)])
  driver(policy, steps=3)
  assert seen[0] == (['image', 'pos'], [True, True], None)
  assert seen[1] == (['image', 'pos'], [False, False], 'state')
  assert seen[2] == (['image', 'pos'], [True, False], 'state')


def test_driver_counts_steps_of_finished_episodes_and_carries_the_rest():
  lengths = []
  driver = Driver([FakeEnv(length=3)])
  driver.on_episode(lambda episode, index: lengths.append(len(episode['reward'])))
  driver(constant_policy([0.0, 0.0]), steps=4)  # Two episodes: 6 steps.
  assert lengths == [4, 4]
  driver(constant_policy([0.0, 0.0]), steps=4)  # 2 carried: one more.
  assert lengths == [4, 4, 4]
  driver.reset()
  driver(constant_policy([0.0, 0.0]), steps=1)
  assert lengths == [4, 4, 4, 4]


def test_unfinished_episodes_go_on_in_the_next_call_until_reset():
  episodes = []
  driver = Driver([FakeEnv(length=5)])
  driver.on_episode(lambda episode, index: episodes.append(episode))
  policy = constant_policy([0.0, 0.0])
  driver(policy, episodes=1)
  driver.step(policy)  # Two steps into the next episode...
  driver.step(policy)
  driver(policy, episodes=1)  # ...which this call finishes.
  assert [len(e['reward']) for e in episodes] == [6, 6]
  driver.step(policy)
  driver.reset()  # Drops the unfinished episode.
  driver(policy, episodes=1)
  assert [len(e['reward']) for e in episodes] == [6, 6, 6]


@pytest.mark.parametrize('parallel', workers.PARALLEL)
def test_step_all_in_process(parallel):
  envs = [FakeEnv(length=n) for n in (2, 3)]
  assert len(workers.reset_all(envs, parallel)) == 2
  results = workers.step_all(envs, [np.zeros(2)] * 2, parallel)
  assert [reward for _, reward, _, _ in results] == [1.0, 1.0]
  results = workers.step_all(envs, [np.zeros(2)] * 2, parallel)
  assert [done for _, _, done, _ in results] == [True, False]


def test_check_parallel():
  with pytest.raises(ValueError, match='allowed: none, thread, process'):
    workers.step_all([], [], 'threads')


def test_dmc_through_a_worker():
  episodes = []
  env = workers.Async(functools.partial(
      wrappers.make_env, 'dmc_cartpole_balance', 2, 20))
  try:
    assert env.obs_space['image'].shape == (64, 64, 3)
    space = env.act_space
    assert space.shape == (1,) and space.low[0] == -1 and space.high[0] == 1
    obs = env.reset()
    assert obs['image'].shape == (64, 64, 3) and obs['image'].dtype == np.uint8
    assert obs['position'].dtype == np.float32
    driver = Driver([env])
    driver.on_episode(lambda episode, index: episodes.append(episode))
    rng = np.random.default_rng(0)
    driver(lambda obs, reset, state: (space.sample(rng)[None], None),
           episodes=1)
    episode, = episodes
    assert len(episode['reward']) == 11 and episode['discount'][-1] == 1.0
    assert episode['image'].dtype == np.uint8 and episode['image'].std() > 0
    assert episode['action'].shape == (11, 1)
    assert np.isfinite(episode['reward']).all()
    assert episode['reward'].dtype == np.float32
  finally:
    env.close()
  assert 'dm_control' not in sys.modules and 'mujoco' not in sys.modules


def test_driver_steps_workers_under_every_parallel_setting():
  ctor = functools.partial(wrappers.make_env, 'dmc_cartpole_swingup', 2, 8)
  envs = [workers.Async(ctor) for _ in range(2)]
  try:
    for parallel in workers.PARALLEL:
      episodes = []
      driver = Driver(envs, parallel)
      driver.on_episode(lambda episode, index: episodes.append(index))
      driver(constant_policy([0.0]), episodes=2)
      assert sorted(episodes) == [0, 1]
  finally:
    for env in envs:
      env.close()
  assert 'dm_control' not in sys.modules


def test_workers_and_the_driver_import_no_tensorflow():
  import subprocess
  code = ('import sys, driver, replay, workers, wrappers, config, checkpoint, '
          'tools; assert "tensorflow" not in sys.modules, "tensorflow"; '
          'assert "dm_control" not in sys.modules, "dm_control"')
  subprocess.run([sys.executable, '-c', code], check=True,
                 cwd=os.path.dirname(os.path.dirname(__file__)))


def test_worker_reports_unknown_dmc_task():
  env = workers.Async(functools.partial(
      wrappers.make_env, 'dmc_walker_fly', 2, 1000))
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
  env = workers.Async(functools.partial(int, 'not a number'))
  with pytest.raises(RuntimeError, match="invalid literal for int"):
    env.reset()
  env.close()


def test_worker_killed_is_reported():
  env = workers.Async(functools.partial(time.sleep, 60))
  os.kill(env.pid, signal.SIGKILL)
  with pytest.raises(RuntimeError, match='died with exit code -9'):
    env.step(np.zeros(1))
  with pytest.raises(RuntimeError, match='died with exit code -9'):
    env.reset()
  env.close()


def test_unpicklable_ctor():
  with pytest.raises(TypeError, match='must be picklable'):
    workers.Async(lambda: FakeEnv())


def test_close_stops_worker():
  env = workers.Async(functools.partial(dict, a=1))
  assert env.call('get', 'a', blocking=False)() == 1
  process = env._process
  env.close()
  assert not process.is_alive() and process.exitcode == 0
  with pytest.raises(RuntimeError, match='closed'):
    env.reset()
