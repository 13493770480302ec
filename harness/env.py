"""Serves our environment worker to the original Dreamer's main loop.

harness/train.py replaces the original's `dreamer.make_env` with
`EnvFactory` here: the environment stack the original builds in process
(DeepMindControl -> ActionRepeat -> NormalizeActions -> TimeLimit, or
Atari -> OneHotAction -> TimeLimit) runs instead in one of our spawned
workers (workers.Async of wrappers.make_env, seeded), and the main process
wraps it in the ORIGINAL's own Collect and RewardObs with the original's
own callbacks (tools.save_episodes, dreamer.summarize_episode).

Two halves, because the main process holds the original's modules under
the names `wrappers`, `tools` and `dreamer` (ours share two of those
names):
- `worker_env` and `Served` run in the worker, which imports our
  wrappers.py and never TensorFlow; what they send back is plain numpy
  and Python data (no class of ours the main process could not unpickle).
- `GymEnv` runs in the main process: it gives the worker the gym-style
  interface the original's wrappers expect (`observation_space`,
  `action_space` built from harness.compat's gym stand-in, `reset()`,
  `step(action)`, `close()`).

This module imports neither TensorFlow nor dm_control.
"""

import collections
import functools
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]  # the port's modules
TEST_SEED_OFFSET = 10_000  # test envs are seeded apart, as in our dreamer.py


# ---------------------------------------------------------------- worker side

def worker_env(task, action_repeat, time_limit, seed):
  """Builds, in the worker, our stack of `task` in the original's wrapper
  order: wrappers.make_env with `seed`, episodes ending at a lost life on
  Atari (the original's make_env passes life_done=True to train and test
  envs alike)."""
  if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
  import wrappers  # Ours: this process holds no module of that name.
  if pathlib.Path(wrappers.__file__).resolve().parent != ROOT:
    raise ImportError(
        f'the environment worker imported {wrappers.__file__}, not the '
        f'port\'s wrappers.py in {ROOT}')
  suite = task.split('_', 1)[0]
  env = wrappers.make_env(
      task, action_repeat, time_limit, seed=seed, image=True,
      life_done=(suite == 'atari'))
  return Served(env, wrappers)


class Served:
  """Our environment as the worker serves it to GymEnv: observations with
  the shapes the original's DeepMindControl gives (ours reshape a scalar
  state entry to shape (1,); the original keeps shape ()), and the spaces
  as plain data."""

  def __init__(self, env, wrappers):
    self._env = env
    self._scalars = set()
    inner = env
    while not isinstance(inner, wrappers.DeepMindControl):
      inner = getattr(inner, '_env', None)
      if inner is None:
        break
    if inner is not None:
      spec = inner._env.observation_spec()
      self._scalars = {key for key, value in spec.items() if value.shape == ()}

  @property
  def spaces(self):
    """{'obs': {key: (shape, dtype, low, high)}, 'act': (shape, dtype, low,
    high, discrete)}."""
    obs = {}
    for key, space in self._env.obs_space.items():
      shape = () if key in self._scalars else tuple(space.shape)
      obs[key] = (shape, np.dtype(space.dtype).str,
                  np.asarray(space.low).reshape(shape),
                  np.asarray(space.high).reshape(shape))
    act = self._env.act_space
    return {'obs': obs, 'act': (
        tuple(act.shape), np.dtype(act.dtype).str, np.asarray(act.low),
        np.asarray(act.high), bool(act.discrete))}

  def reset(self):
    return self._observe(self._env.reset())

  def step(self, action):
    obs, reward, done, info = self._env.step(action)
    return self._observe(obs), reward, done, info

  def close(self):
    self._env.close()

  def _observe(self, obs):
    for key in self._scalars:
      obs[key] = obs[key].reshape(())
    return obs


# ------------------------------------------------------------------ main side

class GymEnv:
  """A workers.Async serving `Served`, with the interface the original's
  Collect, RewardObs and main() use: `observation_space` (a fresh
  gym.spaces.Dict on each access, as the original's DeepMindControl
  builds it: RewardObs adds a key to it), `action_space` (one
  gym.spaces.Box kept for the run; a discrete game's box samples uniform
  one-hot vectors, as the original's OneHotAction), `reset()`,
  `step(action)` and `close()`."""

  def __init__(self, worker):
    import gym  # harness.compat's stand-in (or gym, when installed)
    self._gym = gym
    self._worker = worker
    self._spaces = worker.access('spaces')
    shape, dtype, low, high, discrete = self._spaces['act']
    self._action_space = gym.spaces.Box(low, high, shape, np.float32)
    if discrete:
      space = self._action_space
      space.sample = functools.partial(_one_hot_sample, space)

  @property
  def observation_space(self):
    spaces = {}  # a plain dict: gym's Dict sorts it, as for the original's
    for key, (shape, dtype, low, high) in self._spaces['obs'].items():
      spaces[key] = self._gym.spaces.Box(low, high, shape, np.dtype(dtype))
    return self._gym.spaces.Dict(spaces)

  @property
  def action_space(self):
    return self._action_space

  def reset(self):
    return self._worker.reset()

  def step(self, action):
    return self._worker.step(action)

  def close(self):
    self._worker.close()


def _one_hot_sample(space):
  count = space.shape[-1]
  sample = np.zeros(count, np.float32)
  sample[space.np_random.randint(count)] = 1.0
  return sample


class EnvFactory:
  """The replacement of the original's `make_env(config, writer, prefix,
  datadir, store)`. The original's main() calls it once per environment,
  train envs first, then test envs; the i-th env of a prefix gets seed
  `config.seed + i` (train) or `config.seed + 10000 + i` (test), as ours."""

  def __init__(self, original, timeout=None):
    self._original = original
    self._timeout = timeout
    self._counts = collections.Counter()

  def __call__(self, config, writer, prefix, datadir, store):
    import workers  # ours; imports neither TensorFlow nor dm_control
    suite = config.task.split('_', 1)[0]
    if suite not in ('dmc', 'atari'):
      raise NotImplementedError(suite)  # as the original's make_env
    index = self._counts[prefix]
    self._counts[prefix] += 1
    seed = config.seed + (0 if prefix == 'train' else TEST_SEED_OFFSET) + index
    worker = workers.Async(functools.partial(
        worker_env, config.task, config.action_repeat, config.time_limit,
        seed), timeout=self._timeout)
    env = GymEnv(worker)
    tools, dreamer = self._original.tools, self._original.dreamer
    callbacks = []
    if store:
      callbacks.append(lambda ep: tools.save_episodes(datadir, [ep]))
    callbacks.append(lambda ep: dreamer.summarize_episode(
        ep, config, datadir, writer, prefix))
    env = self._original.wrappers.Collect(env, callbacks, config.precision)
    return self._original.wrappers.RewardObs(env)
