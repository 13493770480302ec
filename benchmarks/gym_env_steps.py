"""Environment steps per second of Gymnasium tasks, from pixels and from
state, without the agent: random actions through wrappers.make_env (action
repeat 2, resets included), in this process (no TensorFlow).

    MUJOCO_GL=egl python benchmarks/gym_env_steps.py
    python benchmarks/gym_env_steps.py --tasks gym_Hopper-v5 --seconds 10
"""

import argparse
import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
os.environ.setdefault('MUJOCO_GL', 'egl')

import numpy as np  # noqa: E402

import wrappers  # noqa: E402

TASKS = ('gym_InvertedPendulum-v5', 'gym_HalfCheetah-v5', 'gym_Hopper-v5')


def steps_per_second(task, image, seconds, action_repeat=2):
  """Environment steps per second of random actions for `seconds`."""
  env = wrappers.make_env(task, action_repeat, 1000, image=image, seed=0)
  rng = np.random.default_rng(0)
  env.reset()
  env.step(env.act_space.sample(rng))  # The first frame sets up rendering.
  steps, start = 0, time.perf_counter()
  while time.perf_counter() - start < seconds:
    _, _, done, _ = env.step(env.act_space.sample(rng))
    steps += action_repeat
    if done:
      env.reset()
  rate = steps / (time.perf_counter() - start)
  env.close()
  return rate


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--tasks', nargs='+', default=TASKS)
  parser.add_argument('--seconds', type=float, default=4.0)
  args = parser.parse_args()
  for task in args.tasks:
    pixels = steps_per_second(task, True, args.seconds)
    state = steps_per_second(task, False, args.seconds)
    print(f'{task}: {pixels:,.0f} env steps/s from pixels, {state:,.0f} from '
          'state', flush=True)


if __name__ == '__main__':
  main()
