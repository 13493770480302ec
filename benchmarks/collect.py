"""Environment steps per second of the acting loop (no training).

    python benchmarks/collect.py                    # dmc_cheetah_run, 500 agent steps
    python benchmarks/collect.py --precision 32 --steps 1000

Runs the agent's policy (dreamer.Agent with its training switched off: the
encoder, one RSSM posterior step and the actor on each 64x64 frame, then the
exploration noise) in one worker environment at the default config, as
`dreamer.py` collects, and times it after a warm-up that traces the policy.
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

import dreamer  # noqa: E402  (imports no TensorFlow)

NAMES = {'32': 'float32', '16': 'float16', 'bf16': 'bfloat16'}
TINY = dict(cnn_depth=4, deter_size=16, stoch_size=4, num_units=16)
WARMUP = 10
RENDERS = 20


class ActingAgent(dreamer.Agent):
  """dreamer.Agent that acts (policy and exploration) but never trains."""

  def __init__(self, config, model):
    super().__init__(
        config, model, batches=None, logger=None, step=0, progress=None,
        rng=np.random.default_rng(config.seed))

  def train(self):
    pass


def make_config(args):
  overrides = dict(task=args.task)
  if args.tiny:
    overrides.update(TINY)
  return dreamer.make_config(**overrides)


def resolve_precision(config, precision):
  """`precision` if given, else what dreamer.py runs for its default 16."""
  has_gpu = dreamer.setup_tensorflow(config)
  if precision:
    return precision
  return dreamer.resolve_precision('16', has_gpu, dreamer.cpu_has_bf16())[0]


def act(agent, env, steps, carry=None):
  """Runs `steps` agent steps; returns (policy seconds, total seconds, carry).

  `carry` (observation, done, agent state) continues where the last call
  stopped, as `dreamer.simulate` does; episodes that end are reset.
  """
  obs, done, state = carry or (None, True, None)
  policy_seconds = total_seconds = 0.0
  for _ in range(steps):
    start = time.perf_counter()
    if done:
      obs = env.reset()
    batch = {key: np.stack([value]) for key, value in obs.items()}
    tick = time.perf_counter()
    action, state = agent(batch, np.array([done]), state)
    policy_seconds += time.perf_counter() - tick
    obs, _, done, _ = env.step(action[0])
    total_seconds += time.perf_counter() - start
  return policy_seconds, total_seconds, (obs, done, state)


def render_seconds(env, count):
  """Seconds the worker takes to render and send one observed frame."""
  start = time.perf_counter()
  for _ in range(count):
    env.call('render_obs')
  return (time.perf_counter() - start) / count


def measure(config, env, steps, precision):
  import models
  config.precision = resolve_precision(config, precision)
  model = models.Dreamer(config, env.act_space.shape[0])
  agent = ActingAgent(config, model)
  _, _, carry = act(agent, env, WARMUP)
  policy, total, _ = act(agent, env, steps, carry)
  render = render_seconds(env, RENDERS)
  rate = steps * config.action_repeat / total
  ms = lambda seconds: f'{1000 * seconds / steps:.1f} ms'
  print(
      f'{config.task} {NAMES[config.precision]}: {rate:.1f} env steps/s '
      f'({steps} agent steps at action repeat {config.action_repeat}, '
      f'{ms(total)} each: policy {ms(policy)}, environment '
      f'{ms(total - policy)}, of which rendering the frame '
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
  parser.add_argument('--tiny', action='store_true',
                      help='small networks and few steps: a smoke test only')
  args = parser.parse_args()
  from benchmarks.machine import setup
  print(setup(), flush=True)
  steps = args.steps or (20 if args.tiny else 500)
  config = make_config(args)
  env = dreamer.make_envs(config, lambda mode, episode: None, 'train')[0]
  try:
    rate = measure(config, env, steps, args.precision)
  finally:
    env.close()
  print(json.dumps({'env_steps_per_second': round(rate, 2)}))


if __name__ == '__main__':
  main()
