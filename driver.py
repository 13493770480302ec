"""The driver: steps environments with a policy and records their episodes.

    driver = Driver(envs, parallel)
    driver.on_step(lambda transition, index: ...)
    driver.on_episode(lambda episode, index: ...)
    driver(policy, steps=2500)      # until 2,500 agent steps of finished episodes
    driver(policy, episodes=1)

`policy(obs, reset, state)` gets the observations of all environments (a
dict of arrays stacked over them), the mask of those that were just reset
and the state it returned last (None at first), and returns (actions,
state). A transition is the observation an environment returned with the
action that led to it, the reward and the discount; the first of an
episode, at reset, has a zero action, reward 0 and discount 1, as in the
original. An episode is a dict of arrays over its transitions (floats as
float32, signed integers as int32), handed to the `on_episode` callbacks when
it ends.

Imports neither TensorFlow nor dm_control.
"""

import numpy as np

import workers


class Driver:
  """Runs a policy in `envs` (workers.Async or any environment with the
  API of wrappers.py), stepping them under `parallel` (none, thread or
  process); unfinished episodes go on in the next call."""

  def __init__(self, envs, parallel='none'):
    self._envs = envs
    self._parallel = parallel
    self._on_steps = []
    self._on_episodes = []
    self.reset()

  def on_step(self, callback):
    """Calls `callback(transition, index)` after each step of each env."""
    self._on_steps.append(callback)

  def on_episode(self, callback):
    """Calls `callback(episode, index)` when an env's episode ends, after
    the `on_step` callbacks of that step."""
    self._on_episodes.append(callback)

  def reset(self):
    """Drops unfinished episodes and the policy's state: the next call
    resets every environment."""
    count = len(self._envs)
    self._carry = (0, 0)  # Steps and episodes past the last call's target.
    self._done = np.ones(count, bool)
    self._length = np.zeros(count, np.int64)
    self._obs = [None] * count
    self._episodes = [None] * count
    self._state = None

  def __call__(self, policy, steps=0, episodes=0):
    """Runs `policy` for at least `steps` agent steps of finished episodes
    or `episodes` episodes. As in the original, what a call runs past its
    target counts towards the next call's."""
    step, episode = self._carry
    while (steps and step < steps) or (episodes and episode < episodes):
      done = self.step(policy)
      episode += int(done.sum())
      self._length += 1
      step += int((done * self._length).sum())
      self._length *= 1 - done
    self._carry = (step - steps, episode - episodes)

  def step(self, policy):
    """One agent step of every env; returns the mask of envs now done."""
    self._reset_done()
    batch = {key: np.stack([obs[key] for obs in self._obs])
             for key in self._obs[0]}
    actions, self._state = policy(batch, self._done.copy(), self._state)
    results = workers.step_all(self._envs, list(actions), self._parallel)
    ended = []
    for index, (action, (obs, reward, done, info)) in enumerate(
        zip(actions, results)):
      discount = info.get('discount', np.float32(1 - float(done)))
      transition = dict(
          obs, action=np.array(action, np.float32), reward=reward,
          discount=discount)
      self._obs[index] = obs
      self._episodes[index].append(transition)
      for callback in self._on_steps:
        callback(transition, index)
      if done:
        ended.append(index)
    for index in ended:
      episode = _stack(self._episodes[index])
      self._episodes[index] = None
      for callback in self._on_episodes:
        callback(episode, index)
    self._done = np.array([result[2] for result in results], bool)
    return self._done

  def _reset_done(self):
    indices = np.flatnonzero(self._done)
    if not len(indices):
      return
    observations = workers.reset_all(
        [self._envs[i] for i in indices], self._parallel)
    for index, obs in zip(indices, observations):
      action = np.zeros(self._envs[index].act_space.shape, np.float32)
      self._obs[index] = obs
      self._episodes[index] = [
          dict(obs, action=action, reward=0.0, discount=1.0)]


def _stack(transitions):
  """{key: array over the transitions}, floats float32, signed ints int32."""
  episode = {}
  for key in transitions[0]:
    array = np.array([transition[key] for transition in transitions])
    if np.issubdtype(array.dtype, np.floating):
      array = array.astype(np.float32)
    elif np.issubdtype(array.dtype, np.signedinteger):
      array = array.astype(np.int32)
    episode[key] = array
  return episode
