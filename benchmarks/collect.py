"""Environment steps per second of the acting loop (no training).

    python benchmarks/collect.py                    # dmc_cheetah_run, 500 agent steps
    python benchmarks/collect.py --precision 32 --steps 1000
    python benchmarks/collect.py --envs 4 --parallel process --obs proprio

Runs the agent's policy (dreamer.Agent with its training switched off: the
encoder, one RSSM posterior step and the actor on each 64x64 frame, then the
exploration noise), batched over `--envs` worker environments that step at
once (`--parallel`), at the default config, through the driver that
`dreamer.py` collects with (episodes recorded, no files written), and times
it after a warm-up that traces the policy.
It prints the rate, the time per agent step split between the policy call
and the environment, and the cost of rendering one frame; the last line is
JSON: {"env_steps_per_second": X}.
"""

import argparse
import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import config as config_module  # noqa: E402
import devices  # noqa: E402
import dreamer  # noqa: E402  (imports no TensorFlow)
import tools  # noqa: E402
from driver import Driver  # noqa: E402

NAMES = {'32': 'float32', '16': 'float16', 'bf16': 'bfloat16'}
WARMUP = 10
RENDERS = 20


class ActingAgent(dreamer.Agent):
  """dreamer.Agent that acts (policy and exploration) but never trains."""

  def __init__(self, config, model):
    super().__init__(
        config, model, batches=None, logger=None, step=tools.Counter(),
        progress=None, rng=np.random.default_rng(config.seed))

  def train(self):
    pass


def make_config(args):
  overrides = dict(task=args.task, envs=args.envs, parallel=args.parallel,
                   obs=args.obs)
  if args.tiny:
    overrides['configs'] = ['tiny']
  return config_module.make_config(**overrides)


def act(agent, driver, steps):
  """Runs `steps` agent steps of all the driver's envs at once; returns
  (policy seconds, total seconds). Episodes go on across calls."""
  policy_seconds = [0.0]

  def timed(*args):
    start = time.perf_counter()
    result = agent(*args)
    policy_seconds[0] += time.perf_counter() - start
    return result

  start = time.perf_counter()
  for _ in range(steps):
    driver.step(timed)
  return policy_seconds[0], time.perf_counter() - start


def render_seconds(env, count):
  """Seconds the worker takes to render and send one observed frame."""
  start = time.perf_counter()
  for _ in range(count):
    env.call('render_obs')
  return (time.perf_counter() - start) / count


def measure(config, envs, steps, precision):
  import models
  # The given precision, else what dreamer.py runs for its default 16.
  config.precision = devices.setup(
      precision or '16', config.seed, config.gpu_growth, config.batch_size,
      doing='Acting')[0]
  proprio = {key: space.shape for key, space in envs[0].obs_space.items()
             if key != 'image'}
  model = models.Dreamer(config, envs[0].act_space.shape[0], proprio=proprio)
  agent = ActingAgent(config, model)
  driver = Driver(envs, config.parallel)
  act(agent, driver, WARMUP)
  policy, total = act(agent, driver, steps)
  render = render_seconds(envs[0], RENDERS)
  rate = steps * len(envs) * config.action_repeat / total
  ms = lambda seconds: f'{1000 * seconds / steps:.1f} ms'
  print(
      f'{config.task} {NAMES[config.precision]} obs {config.obs}, '
      f'{len(envs)} env(s) --parallel {config.parallel}: {rate:.1f} env '
      f'steps/s ({steps} agent steps of all envs at action repeat '
      f'{config.action_repeat}, {ms(total)} each: policy {ms(policy)}, '
      f'environments {ms(total - policy)}; rendering one frame '
      f'{1000 * render:.1f} ms); policy traced '
      f'{model.policy.experimental_get_tracing_count()} time(s)', flush=True)
  return rate


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--steps', type=int, default=None,
                      help='agent steps to time (default 500, 20 with --tiny)')
  parser.add_argument('--precision', choices=list(NAMES), default=None,
                      help="default: what dreamer.py runs here for '16'")
  parser.add_argument('--task', default='dmc_cheetah_run')
  parser.add_argument('--envs', type=int, default=1)
  parser.add_argument('--parallel', choices=['none', 'thread', 'process'],
                      default='process')
  parser.add_argument('--obs', choices=['image', 'proprio', 'both'],
                      default='image')
  parser.add_argument('--tiny', action='store_true',
                      help='small networks and few steps: a smoke test only')
  args = parser.parse_args()
  from benchmarks.machine import setup
  print(setup(), flush=True)
  steps = args.steps or (20 if args.tiny else 500)
  config = make_config(args)
  envs = dreamer.make_envs(config, 'train')
  try:
    rate = measure(config, envs, steps, args.precision)
  finally:
    for env in envs:
      env.close()
  print(json.dumps({'env_steps_per_second': round(rate, 2)}))


if __name__ == '__main__':
  main()
