"""Evaluates a trained agent: test episodes with the actor's mode, no training.

    python evaluate.py --logdir runs/cheetah --episodes 10

Loads the run's config (`config.json`; flags given here override it) and its
checkpoint, runs `--episodes` test episodes in `--envs` environments at once
(as the original's evaluation does: the actor's mode, plus `--eval_noise`
if set, episodes not cut at a lost life), prints a line per episode and a
summary, and writes into `--outdir` (default RUN/eval/STEP, never an earlier
evaluation's folder): `summary.json` (every episode's return and length, the
checkpoint's step and update count, the config and the seed), one video per
episode and the open-loop prediction video of the first (rows of truth,
model, error). Nothing in the run's folder but `eval/` is written.

    python evaluate.py --logdir runs/cheetah --kept --episodes 10

evaluates each of the run's kept checkpoints (--keep_checkpoints) that has
no evaluation of these --episodes and --seed yet, into RUN/eval/STEP.

    python evaluate.py --logdir runs/cheetah --random --episodes 10

runs uniform random actions instead of a checkpoint, the baseline a trained
agent should beat, into RUN/eval/random (the run needs only its config).
"""

import json
import os
import pathlib
import sys
import time

import numpy as np

import checkpoint
import config as config_module
import devices
import dreamer
import kept
import replay
import tasks
import tools
import workers
from driver import Driver
from logger import encode_gif, tile_video, to_rgb_uint8

PROG = 'evaluate.py'
VIDEOS = ('mp4', 'gif', 'none')


def parse(argv):
  """(evaluation options, config): the run's saved config overridden by the
  config flags given; one-line errors and exit code 2 for bad input."""
  first = config_module.Parser(PROG, add_help=False)
  first.add_argument('--logdir', type=pathlib.Path)
  logdir = first.parse_known_args(argv)[0].logdir
  base = config_module.defaults()
  if logdir is not None and logdir.expanduser().is_dir():
    saved = config_module.saved_config(logdir.expanduser()) or {}
    base.update({k: v for k, v in saved.items() if k in base})
    base['logdir'] = pathlib.Path(base['logdir'])
  parser = config_module.Parser(
      PROG, description=__doc__.split('\n')[0] + ' Config flags override '
      "the run's config.json (a logdir without one, such as the original's, "
      'takes them from here).')
  parser.add_argument('--logdir', type=lambda p: pathlib.Path(p).expanduser(),
                      required=True, metavar='PATH', help='the run to evaluate')
  parser.add_argument('--episodes', type=int, default=10,
                      help='test episodes to run [default: 10]')
  parser.add_argument('--checkpoint', type=pathlib.Path, default=None,
                      metavar='PATH', help='checkpoint file [default: the '
                      "run's newest]")
  parser.add_argument('--kept', action='store_true',
                      help="evaluate each of the run's kept checkpoints "
                      '(--keep_checkpoints) not yet evaluated with these '
                      '--episodes and --seed, each into RUN/eval/STEP')
  parser.add_argument('--random', action='store_true',
                      help='uniform random actions instead of a checkpoint '
                      '(the baseline), into RUN/eval/random')
  parser.add_argument('--outdir', type=pathlib.Path, default=None,
                      metavar='PATH', help='where to write [default: '
                      'RUN/eval/STEP]')
  parser.add_argument('--video', choices=VIDEOS, default='mp4',
                      help='one video per episode [default: mp4]')
  parser.add_argument('--seed', type=int, default=0,
                      help='seeds the environments and the policy; the same '
                      'seed gives the same returns [default: 0]')
  config_module.add_config_flags(parser, base, skip=('logdir', 'seed'))
  args = vars(parser.parse_args(argv))
  options = {key: args.pop(key) for key in (
      'logdir', 'episodes', 'checkpoint', 'kept', 'random', 'outdir',
      'video', 'seed')}
  if options['kept'] and (options['checkpoint'] or options['outdir']):
    config_module.fail(
        '--kept evaluates every kept checkpoint into RUN/eval/STEP: pass '
        'it without --checkpoint and --outdir', PROG)
  if options['random'] and (options['checkpoint'] or options['kept']):
    config_module.fail(
        '--random acts without a checkpoint: pass it without --checkpoint '
        'and --kept', PROG)
  if not options['logdir'].is_dir():
    config_module.fail(f'--logdir {options["logdir"]} is not a folder', PROG)
  if options['episodes'] < 1:
    config_module.fail(
        f'--episodes must be at least 1, got {options["episodes"]}', PROG)
  try:
    config = config_module.make_config(
        logdir=options['logdir'], seed=options['seed'], **args)
  except ValueError as error:
    config_module.fail(error, PROG)
  return options, config


def checkpoint_path(options):
  """The checkpoint to load: --checkpoint, else the run's newest."""
  if options['checkpoint'] is not None:
    path = options['checkpoint'].expanduser()
    if not path.is_file():
      config_module.fail(f'--checkpoint {path} is not a file', PROG)
    return path
  for path in checkpoint.candidates(options['logdir'] / checkpoint.NAME):
    if path.exists():
      return path
  config_module.fail(
      f'no checkpoint in {options["logdir"]} ({checkpoint.NAME} or '
      f'{checkpoint.LEGACY}): nothing to evaluate', PROG)


def load_model(config, path, env):
  """(the agent's networks with the checkpoint's weights, the step and
  update count it records: {'step', 'updates'}, either may be absent); one
  line and exit 2 if the file is not a checkpoint or does not fit the
  config."""
  import models
  proprio = {key: space.shape for key, space in env.obs_space.items()
             if key != 'image'}
  model = models.Dreamer(config, env.act_space.shape[0], proprio=proprio)
  try:
    state = checkpoint.read_state(path)
  except Exception as error:  # Damaged files fail in many ways.
    config_module.fail(f'cannot read {path}: {error}', PROG)
  try:
    if isinstance(state, (list, tuple)):  # The original's variables.pkl.
      _, step = checkpoint.load_original(state, model)
      return model, {'step': step}
    if not isinstance(state, dict) or 'model' not in state:
      config_module.fail(
          f'{path} holds a {type(state).__name__}, not a checkpoint', PROG)
    model.set_state(state['model'])
  except (ValueError, KeyError) as error:
    config_module.fail(
        f'{path} does not fit the config ({error}); pass the config flags '
        f'of the run that wrote it', PROG)
  recorded = {'updates': state.get('agent', {}).get('updates')}
  if state.get('logged'):  # Absent in checkpoints of earlier versions.
    recorded['step'] = state['logged']['step']
  return model, recorded


def output_folder(options, step):
  """--outdir, else RUN/eval/STEP (STEP-2, -3, ... if taken)."""
  if options['outdir'] is not None:
    folder = options['outdir'].expanduser()
  else:
    base = options['logdir'] / 'eval' / str(step)
    folder, index = base, 1
    while folder.exists():
      index += 1
      folder = base.with_name(f'{step}-{index}')
  try:
    folder.mkdir(parents=True, exist_ok=options['outdir'] is not None)
  except OSError as error:
    config_module.fail(f'cannot write to {folder}: {error.strerror}', PROG)
  return folder


def mode_policy(config, model, seed):
  """The actor's mode (and --eval_noise), as the original evaluates."""
  rng = np.random.default_rng(seed)

  def policy(obs, reset, state):
    action, latent = dreamer.act(model, obs, reset, state, training=False)
    if config.eval_noise:
      action = dreamer.explore(action, config.eval_noise, config.expl, rng)
    return action, (latent, action)
  return policy


def run_episodes(config, policy, envs, count):
  """`count` test episodes of `policy`: a list of (episode, seconds)."""
  done = []
  start = [time.time()]

  def record(episode, index):
    if len(done) < count:
      now = time.time()
      done.append((episode, now - start[0]))
      start[0] = now
      length = (len(episode['reward']) - 1) * config.action_repeat
      print(f'Episode {len(done)}/{count}: return '
            f'{float(episode["reward"].sum()):.1f}, length {length}, '
            f'{done[-1][1]:.1f} s', flush=True)

  driver = Driver(envs, config.parallel)
  driver.on_episode(record)
  driver(policy, episodes=count)
  return done


def write_video(path, frames, fps=20):
  """uint8 frames (T, H, W, 3) as an mp4 (imageio-ffmpeg) or a GIF."""
  frames = to_rgb_uint8(frames)
  if path.suffix == '.gif':
    data = encode_gif(frames, fps)
    tools.write_atomic(path, lambda file: file.write(data))
    return
  import imageio.v3 as iio
  temp = path.with_name(f'.{path.stem}.tmp{path.suffix}')
  try:
    iio.imwrite(temp, frames, fps=fps, codec='libx264', macro_block_size=1)
    os.replace(temp, path)
  finally:
    temp.unlink(missing_ok=True)


def summarize(episodes, action_repeat):
  returns = np.array([float(e['reward'].sum()) for e, _ in episodes])
  lengths = np.array([(len(e['reward']) - 1) * action_repeat
                      for e, _ in episodes])
  seconds = np.array([s for _, s in episodes])
  return {
      'episodes': len(episodes),
      'return_mean': float(returns.mean()), 'return_std': float(returns.std()),
      'return_min': float(returns.min()), 'return_max': float(returns.max()),
      'length_mean': float(lengths.mean()),
      'seconds_per_episode': float(seconds.mean()),
      'returns': returns.tolist(), 'lengths': lengths.tolist(),
  }


def main(argv=None):
  devices.choose_onednn()
  devices.choose_threads()
  options, config = parse(sys.argv[1:] if argv is None else argv)
  if options['random']:
    paths = [None]
  elif options['kept']:
    paths = kept_paths(options)
  else:
    paths = [checkpoint_path(options)]
  if not paths:
    print('Nothing left to evaluate.', flush=True)
    return 0
  try:
    tasks.check([config.task], {config.task: config})
  except ValueError as error:
    config_module.fail(error, PROG)
  config.precision, _, _ = devices.setup(
      config.precision, options['seed'], config.gpu_growth, config.batch_size,
      doing='Evaluating')
  envs = dreamer.make_envs(config, 'test', seed=options['seed'])
  try:
    for path in paths:
      if path is None:
        evaluate_random(config, options, envs)
      else:
        evaluate(config, options, path, envs)
  except workers.WorkerError as error:
    print(f'{PROG}: error: {error}', file=sys.stderr, flush=True)
    return 1
  finally:
    for env in envs:
      env.close()
  return 0


def kept_paths(options):
  """--kept: the run's kept copies (kept/checkpoint-STEP.npz, the
  original's kept/variables-STEP.pkl) by step, but those whose
  eval/STEP/summary.json already holds --episodes episodes of --seed."""
  folder = options['logdir'] / kept.FOLDER
  found = {**kept.copies(folder, 'variables', '.pkl'),
           **kept.copies(folder, 'checkpoint', '.npz')}
  if not found:
    config_module.fail(
        f'no kept checkpoints in {folder} (runs keep them with '
        f'--keep_checkpoints): nothing to evaluate', PROG)
  todo = []
  for step, path in sorted(found.items()):
    done = [summary for summary in summaries(options['logdir'], step)
            if (summary.get('episodes'), summary.get('seed')) == (
                options['episodes'], options['seed'])]
    if done:
      print(f'{path} is evaluated already ({done[0]["episodes"]} episodes, '
            f'seed {done[0]["seed"]}, mean {done[0]["return_mean"]:.1f}).',
            flush=True)
    else:
      todo.append(path)
  return todo


def summaries(logdir, step):
  """The summary.json of every evaluation of `step` in RUN/eval (STEP,
  STEP-2, ...)."""
  found = []
  for folder in [logdir / 'eval' / str(step)] + sorted(
      (logdir / 'eval').glob(f'{step}-*')):
    try:
      found.append(json.loads((folder / 'summary.json').read_text()))
    except (OSError, ValueError):
      continue
  return found


def evaluate(config, options, path, envs):
  """Evaluates the checkpoint at `path` and writes its folder."""
  model, recorded = load_model(config, path, envs[0])
  step = recorded.get('step', replay.count_steps(
      config.logdir / 'episodes', config.action_repeat))
  updates = recorded.get('updates')
  told = (f'{updates:,} updates' if updates is not None else
          'its update count is not recorded')
  print(f'Evaluating {path} (step {step:,}, {told}) on '
        f'{options["episodes"]} episodes, seed {options["seed"]}.',
        flush=True)
  episodes = run_episodes(config, mode_policy(config, model, options['seed']),
                          envs, options['episodes'])
  folder = output_folder(options, step)
  summary = report(episodes, config.action_repeat)
  if options['video'] != 'none' and 'image' in episodes[0][0]:
    write_videos(folder, episodes, options['video'])
    if len(episodes[0][0]['reward']) > 5:  # Longer than openl's context.
      keys = model.obs_keys + ['action']
      data = {key: episodes[0][0][key][None, :config.batch_length]
              for key in keys}
      openl = model.openl(data).numpy()
      write_video(folder / f'openl.{options["video"]}', tile_video(openl))
  summary.update(checkpoint=str(path), step=step)
  if updates is not None:
    summary['updates'] = updates
  write_summary(folder, summary, config, options)


def evaluate_random(config, options, envs):
  """--random: uniform random actions into RUN/eval/random."""
  print(f'Evaluating uniform random actions on {options["episodes"]} '
        f'episodes, seed {options["seed"]}.', flush=True)
  policy = dreamer.uniform_policy(
      envs[0].act_space, np.random.default_rng(options['seed']))
  episodes = run_episodes(config, policy, envs, options['episodes'])
  folder = output_folder(options, 'random')
  summary = report(episodes, config.action_repeat)
  if options['video'] != 'none' and 'image' in episodes[0][0]:
    write_videos(folder, episodes, options['video'])
  summary.update(checkpoint=None, policy='random')
  write_summary(folder, summary, config, options)


def report(episodes, action_repeat):
  """The summary of `episodes`, printed in one line."""
  summary = summarize(episodes, action_repeat)
  print(f'Return {summary["return_mean"]:.1f} ± {summary["return_std"]:.1f} '
        f'(min {summary["return_min"]:.1f}, max {summary["return_max"]:.1f}) '
        f'over {summary["episodes"]} episodes of mean length '
        f'{summary["length_mean"]:.0f}, {summary["seconds_per_episode"]:.1f} s '
        f'each.', flush=True)
  return summary


def write_videos(folder, episodes, video):
  for index, (episode, _) in enumerate(episodes):
    write_video(folder / f'episode-{index + 1}.{video}', episode['image'])


def write_summary(folder, summary, config, options):
  summary.update(seed=options['seed'],
                 config=config_module.config_dict(config))
  text = json.dumps(summary, indent=2) + '\n'
  tools.write_atomic(folder / 'summary.json',
                     lambda file: file.write(text.encode()))
  print(f'Wrote {folder}.', flush=True)


if __name__ == '__main__':
  sys.exit(main())
