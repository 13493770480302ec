"""Trains the ORIGINAL Dreamer (danijar/dreamer, TF 2.2) with its own main()
on today's stack, so that its learning can be compared with the port's.

    python original_train.py --original PATH [--force]
        [--keep_checkpoints STEPS] [its flags...]
    e.g. --logdir DIR --task dmc_cartpole_balance --precision 32

PATH is a checkout of the original (harness.compat.check_checkout must
recognise it, unless --force). Every other flag is the original's, parsed
as its own `__main__` parses them (argparse over its define_config, types
from its tools.args_type). Then its `main(config)` runs unchanged: prefill,
training schedule, dataset, exploration, evaluation, metrics.jsonl,
TensorBoard summaries, episodes/ and variables.pkl in --logdir, and its own
resume (run the same command again after a stop).

Replaced from outside its files, only where it cannot run here:
- the TensorFlow 2.2 APIs removed since (harness.compat's shims; the
  original needs tf_keras, so TF_USE_LEGACY_KERAS=1);
- `dreamer.make_env`: dm_control cannot share a process with TensorFlow
  here and a forked child of a TensorFlow process hangs, so the
  environment (the same wrappers in the same order) runs in our spawned
  worker, wrapped in the main process by the original's own Collect and
  RewardObs with its own callbacks (harness/env.py); gym is not
  installed, so harness.compat's gym stand-in provides the spaces;
- `--parallel process` (the original forks a TensorFlow process) runs as
  `thread`: every environment is already a process of its own;
- `tools.encode_gif` (ffmpeg binary, numpy's removed `tostring`): GIF
  bytes from imageio instead, for the same TensorBoard summaries.
- the agent is a subclass of the original's Dreamer (harness/agent.py)
  that stops cleanly on SIGTERM or Ctrl-C (variables.pkl saved at the
  start of a training episode) and, with `--keep_checkpoints 5000,25000`
  (ours, as dreamer.py's), keeps copies of its variables as
  LOGDIR/kept/variables-STEP.pkl at those environment steps.
- The original never uses `--seed`: here it seeds Python's and NumPy's
  global generators and the environments (train env i: seed + i, test env
  i: seed + 10000 + i, as the port). Not TensorFlow's (see seed_globals).
"""

import argparse
import gc
import os
import pathlib
import random
import sys

import kept  # ours: the standard library only

ENV_TIMEOUT = 300  # seconds an environment worker may take to answer


def encode_gif(frames, fps):
  """GIF bytes of `frames` (T, H, W, C uint8, C 1 or 3) at `fps`, looping:
  what the original's tools.encode_gif returns, made with imageio instead
  of an ffmpeg binary."""
  import imageio.v3 as iio
  import numpy as np
  frames = np.asarray(frames, np.uint8)
  if frames.shape[-1] == 1:
    frames = frames[..., 0]
  return iio.imwrite(
      '<bytes>', frames, extension='.gif', duration=1000 / fps, loop=0)


def seed_globals(seed):
  """Seeds Python's and NumPy's global generators, and not TensorFlow's.

  The original never sets TensorFlow's global seed, and setting it changes
  its noise: its RSSM draws its latent samples inside nested tf.functions
  (obs_step, img_step), whose bodies are inlined into the train step once
  per call, and with a global seed every inlined copy of a random op gets
  the same op seed. Each train step then draws one ε for all 2·T observe
  samples (prior and posterior alike) and another for all H imagination
  steps, instead of a fresh one per sample
  (tests_harness/test_original_train.py).
  """
  import numpy as np
  random.seed(seed)
  np.random.seed(seed)


def parse(argv):
  """(checkout path, force, kept steps, the original's flags). Loads the
  original (TensorFlow) on the way."""
  pre = argparse.ArgumentParser(add_help=False)
  pre.add_argument('--original', type=pathlib.Path)
  pre.add_argument('--force', action='store_true')
  pre.add_argument(
      '--keep_checkpoints', default='',
      help='(ours) environment steps at which a copy of variables.pkl is '
      'kept as kept/variables-STEP.pkl, comma-separated')
  known, rest = pre.parse_known_args(argv)
  if known.original is None:
    argparse.ArgumentParser(
        prog='original_train.py', parents=[pre],
        description='Trains the original Dreamer with its own main(); '
                    'the other flags are the original\'s.').error(
        '--original PATH (a checkout of danijar/dreamer) is required')
  try:
    keep = kept.parse(known.keep_checkpoints)
  except ValueError as error:
    sys.exit(f'original_train.py: error: {error}')
  return known.original.expanduser(), known.force, keep, rest


def main(argv=None):
  path, force, keep, rest = parse(sys.argv[1:] if argv is None else argv)

  import devices  # ours: only reads and sets the environment here
  print(devices.choose_onednn(), flush=True)
  os.environ['TF_USE_LEGACY_KERAS'] = '1'  # the original needs tf_keras
  os.environ.setdefault('MUJOCO_GL', 'egl')
  # The original's dreamer.py sets 3 at import, after TensorFlow is loaded
  # here (harness.compat imports it first): set it before, unless chosen.
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

  from harness import compat
  try:
    commit = compat.check_checkout(path, force)
  except (ValueError, OSError) as error:
    sys.exit(f'error: {error}')
  original = compat.load_original(path)

  # The original's __main__, over its define_config.
  parser = argparse.ArgumentParser(
      prog='original_train.py',
      description='Trains the original Dreamer with its own main(). '
                  '--original PATH [--force] plus these, its flags:')
  for key, value in original.dreamer.define_config().items():
    parser.add_argument(
        f'--{key}', type=original.tools.args_type(value), default=value)
  config = parser.parse_args(rest)

  from harness import agent, env
  seed_globals(config.seed)

  replaced = [
      'TF 2.2 APIs (harness.compat shims, tf_keras)',
      'dreamer.make_env -> our spawned env worker (same wrapper order, '
      'seeded) inside its own Collect/RewardObs',
      'gym -> stand-in spaces',
      'tools.encode_gif -> imageio']
  if config.parallel == 'process':
    config.parallel = 'thread'
    replaced.append('--parallel process -> thread (envs are processes '
                    'already; a forked TensorFlow process hangs here)')
  original.dreamer.make_env = env.EnvFactory(original, ENV_TIMEOUT)
  original.tools.encode_gif = encode_gif
  original.dreamer.Dreamer = agent.subclass(
      original.dreamer.Dreamer, config.logdir, keep)
  replaced.append(
      'Dreamer -> a subclass that stops cleanly on SIGTERM' + (
          f' and keeps copies at steps {", ".join(map(str, keep))}'
          if keep else ''))
  print(f'Original Dreamer {commit or "(unknown commit, --force)"} from '
        f'{original.path}; replaced: {"; ".join(replaced)}; --seed '
        f'{config.seed} seeds Python/NumPy and the envs (train seed+i, '
        f'test seed+10000+i).', flush=True)
  import runlock  # ours: the standard library and filelock only
  agent.handle_signals()
  try:
    with runlock.LogdirLock(config.logdir):  # One run per logdir, as ours.
      original.dreamer.main(config)
  except runlock.LogdirLocked as error:
    sys.exit(f'error: {error}')
  except agent.Stopped as stop:
    print(f'Stopped at step {stop.args[0]:,}: variables.pkl and the episodes '
          f'are saved. Resume with the same command.', flush=True)
    gc.freeze()  # No last garbage collection over TensorFlow's objects.
    return 0
  except KeyboardInterrupt:
    print('Interrupted; the same command resumes from variables.pkl and '
          'the episodes in the logdir.', flush=True)
    return 130
  return 0


if __name__ == '__main__':
  sys.exit(main())
