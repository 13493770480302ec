"""Dreamer: config, agent and the training loop (Algorithm 1 of the paper).

    python dreamer.py --logdir runs/cheetah --task dmc_cheetah_run

TensorFlow is imported inside functions, not at the top: environment worker
processes are started with `spawn`, which re-imports this file, and they must
never load TensorFlow (see wrappers.py).
"""

import argparse
import json
import pathlib
import sys
import types

CHOICES = {
    'parallel': ('none', 'thread', 'process'),
    'clip_rewards': ('none', 'tanh'),
    'dense_act': ('elu', 'relu', 'swish', 'leaky_relu'),
    'cnn_act': ('elu', 'relu', 'swish', 'leaky_relu'),
    'action_dist': ('tanh_normal', 'onehot'),
    'expl': ('additive_gaussian', 'completely_random', 'epsilon_greedy'),
    'precision': ('16', '32', 'bf16'),
}


def defaults():
  """Every config key with its default: the original's, plus `jit`."""
  return dict(
      # General.
      logdir=pathlib.Path('.'), seed=0, steps=int(5e6), eval_every=int(1e4),
      log_every=int(1e3), log_scalars=True, log_images=True, gpu_growth=True,
      precision='16', jit=False,
      # Environment.
      task='dmc_walker_walk', envs=1, parallel='none', action_repeat=2,
      time_limit=1000, prefill=5000, eval_noise=0.0, clip_rewards='none',
      # Model.
      deter_size=200, stoch_size=30, num_units=400, dense_act='elu',
      cnn_act='relu', cnn_depth=32, pcont=False, free_nats=3.0, kl_scale=1.0,
      pcont_scale=10.0, weight_decay=0.0, weight_decay_pattern=r'.*',
      # Training.
      batch_size=50, batch_length=50, train_every=1000, train_steps=100,
      pretrain=100, model_lr=6e-4, value_lr=8e-5, actor_lr=8e-5,
      grad_clip=100.0, dataset_balance=False,
      # Behavior.
      discount=0.99, disclam=0.95, horizon=15, action_dist='tanh_normal',
      action_init_std=5.0, expl='additive_gaussian', expl_amount=0.3,
      expl_decay=0.0, expl_min=0.0,
  )


def make_config(**overrides):
  """The default config with `overrides`, as an attribute namespace."""
  config = defaults()
  unknown = sorted(set(overrides) - set(config))
  if unknown:
    raise ValueError(f'unknown config keys: {", ".join(unknown)}')
  config.update(overrides)
  config['precision'] = str(config['precision'])
  check_config(config)
  return types.SimpleNamespace(**config)


def check_config(config):
  for key, allowed in CHOICES.items():
    if str(config[key]) not in allowed:
      raise ValueError(
          f'--{key} {config[key]!r} is not allowed; choose one of: '
          f'{", ".join(allowed)}')
  for key in ('steps', 'envs', 'action_repeat', 'batch_size', 'batch_length',
              'horizon', 'train_steps', 'time_limit'):
    if config[key] < 1:
      raise ValueError(f'--{key} must be at least 1, got {config[key]}')
  if config['batch_length'] < 2:
    raise ValueError('--batch_length must be at least 2')


def _parser_type(default):
  """How a flag's value parses, from its default's type."""
  if isinstance(default, bool):
    def parse_bool(text):
      if text not in ('True', 'False'):
        raise argparse.ArgumentTypeError(f'expected True or False, got {text!r}')
      return text == 'True'
    return parse_bool
  if isinstance(default, int):
    def parse_int(text):
      value = float(text)
      if value != int(value):
        raise argparse.ArgumentTypeError(f'expected an integer, got {text!r}')
      return int(value)
    return parse_int
  if isinstance(default, pathlib.Path):
    return lambda text: pathlib.Path(text).expanduser()
  return type(default)


def parse_args(argv=None):
  """Parses `--key value` flags; unknown flags and bad values exit with usage."""
  parser = argparse.ArgumentParser(
      description='Dreamer on DeepMind Control from pixels.',
      allow_abbrev=False)
  for key, value in defaults().items():
    parser.add_argument(
        f'--{key}', type=_parser_type(value), default=value,
        required=(key == 'logdir'), metavar=type(value).__name__.upper())
  args = parser.parse_args(argv)
  try:
    return make_config(**vars(args))
  except ValueError as error:
    parser.error(str(error))


def config_dict(config):
  """The config as JSON-ready values."""
  return {k: str(v) if isinstance(v, pathlib.Path) else v
          for k, v in vars(config).items()}


def main(argv=None):
  config = parse_args(argv)
  print(json.dumps(config_dict(config), indent=2))
  raise SystemExit('the training loop is not implemented yet')


if __name__ == '__main__':
  main(sys.argv[1:])
