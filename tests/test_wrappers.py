"""The environments and wrappers that run inside a worker."""

import numpy as np
import pytest

import tasks
import wrappers
from helpers import FakeEnv


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


@pytest.mark.parametrize('task, message', [
    ('gymm_Pendulum', "unknown suite 'gymm'"),
    ('dmc_walker', 'dmc_DOMAIN_TASK'),
    ('dmc', "unknown suite 'dmc'"),
    ('atari_', "unknown suite 'atari'"),
])
def test_check_task_errors(task, message):
  with pytest.raises(ValueError, match=message):
    tasks.parse(task)
