"""Flags, config values, devices and the exploration noise."""

import pathlib
import re

import numpy as np
import pytest

import devices
import dreamer
from config import (
    CONFIGS, OURS, defaults, make_config, original_flags, parse_args)


def test_flags_parse_like_the_original():
  config = parse_args([
      '--logdir', '~/runs/x', '--steps', '1e6', '--pcont', 'True',
      '--precision', '32', '--free_nats', '2.5', '--task', 'dmc_cheetah_run'])
  assert config.logdir == pathlib.Path('~/runs/x').expanduser()
  assert config.steps == 1_000_000 and isinstance(config.steps, int)
  assert config.pcont is True and config.precision == '32'
  assert config.free_nats == 2.5 and config.batch_size == 50


@pytest.mark.parametrize('argv,message', [
    (['--logdir', 'x', '--nonsense', '1'], 'unrecognized arguments: --nonsense'),
    (['--logdir', 'x', '--pcont', 'yes'], 'expected True or False'),
    (['--logdir', 'x', '--steps', '1.5'], 'expected an integer'),
    (['--logdir', 'x', '--action_dist', 'beta'], 'choose one of: tanh_normal, onehot'),
    (['--logdir', 'x', '--precision', '8'], 'choose one of: 16, 32, bf16'),
    (['--logdir', 'x', '--batch_length', '1'], 'batch_length'),
    ([], 'the following arguments are required: --logdir'),
])
def test_bad_flags_exit_with_a_clear_message(argv, message, capsys):
  with pytest.raises(SystemExit) as info:
    parse_args(argv)
  assert info.value.code == 2
  assert message in capsys.readouterr().err


# The original's defaults (its dreamer.py, commit 56d4d44), written out so a
# change to the config table cannot move one unnoticed.
ORIGINAL_DEFAULTS = dict(
    seed=0, steps=int(5e6), eval_every=int(1e4), log_every=int(1e3),
    log_scalars=True, log_images=True, gpu_growth=True, precision='16',
    task='dmc_walker_walk', envs=1, parallel='none', action_repeat=2,
    time_limit=1000, prefill=5000, eval_noise=0.0, clip_rewards='none',
    deter_size=200, stoch_size=30, num_units=400, dense_act='elu',
    cnn_act='relu', cnn_depth=32, pcont=False, free_nats=3.0, kl_scale=1.0,
    pcont_scale=10.0, weight_decay=0.0, weight_decay_pattern=r'.*',
    batch_size=50, batch_length=50, train_every=1000, train_steps=100,
    pretrain=100, model_lr=6e-4, value_lr=8e-5, actor_lr=8e-5,
    grad_clip=100.0, dataset_balance=False, discount=0.99, disclam=0.95,
    horizon=15, action_dist='tanh_normal', action_init_std=5.0,
    expl='additive_gaussian', expl_amount=0.3, expl_decay=0.0, expl_min=0.0)


def test_defaults_are_the_originals():
  ours = defaults()
  assert {key: ours[key] for key in ORIGINAL_DEFAULTS} == ORIGINAL_DEFAULTS


def test_every_default_is_a_flag():
  flags = vars(parse_args(['--logdir', 'x']))
  assert set(flags) == set(defaults())


def test_precision_16_without_gpu_says_what_runs():
  assert devices.resolve_precision('16', True, True) == ('16', None)
  assert devices.resolve_precision('32', False, True) == ('32', None)
  precision, note = devices.resolve_precision('16', False, True)
  assert precision == '32' and '--precision bf16' in note
  precision, note = devices.resolve_precision('16', False, False)
  assert precision == '32' and 'float32' in note and 'bf16' not in note


def test_exploration():
  rng = np.random.default_rng(0)
  action = np.full((1000, 2), 0.9, np.float32)
  noisy = dreamer.explore(action, 0.3, 'additive_gaussian', rng)
  assert noisy.max() <= 1 and noisy.min() >= -1
  assert abs(np.std(noisy[noisy < 1] - 0.9) - 0.3) < 0.1
  uniform = dreamer.explore(action, 0.3, 'completely_random', rng)
  assert abs(uniform.mean()) < 0.1
  onehot = np.eye(4, dtype=np.float32)[np.zeros(2000, int)]
  greedy = dreamer.explore(onehot, 0.4, 'epsilon_greedy', rng)
  assert np.all(greedy.sum(-1) == 1)
  changed = (greedy.argmax(-1) != 0).mean()
  assert abs(changed - 0.4 * 3 / 4) < 0.05


def test_named_config_overlays_the_defaults_and_flags_override_it():
  config = parse_args(['--logdir', 'x', '--configs', 'small'])
  assert config.configs == ['small']
  for key, value in CONFIGS['small'].items():
    assert getattr(config, key) == value
  assert config.batch_length == defaults()['batch_length']
  config = parse_args(
      ['--logdir', 'x', '--configs', 'small', '--batch_size', '7'])
  assert config.batch_size == 7 and config.cnn_depth == 16
  assert parse_args(['--logdir', 'x']).configs == []


def test_unknown_config_name_lists_the_known_ones(capsys):
  with pytest.raises(SystemExit) as info:
    parse_args(['--logdir', 'x', '--configs', 'huge'])
  assert info.value.code == 2
  assert "unknown config 'huge'; known: small" in capsys.readouterr().err


def test_onednn_is_chosen_unless_the_user_did():
  environ = {}
  assert devices.choose_onednn(environ).startswith('oneDNN on')
  assert environ['TF_ENABLE_ONEDNN_OPTS'] == '1'
  message = devices.choose_onednn({'TF_ENABLE_ONEDNN_OPTS': '0'})
  assert message.startswith('oneDNN off') and 'your setting' in message


def test_threads_are_one_per_op_on_two_cpus_unless_the_user_chose():
  environ = {}
  message = devices.choose_threads(environ, cpus=2)
  assert environ == {'TF_NUM_INTRAOP_THREADS': '1',
                     'TF_NUM_INTEROP_THREADS': '2'}, message
  for cpus in (1, 4, 64):
    environ = {}
    assert 'defaults' in devices.choose_threads(environ, cpus=cpus)
    assert environ == {}
  environ = {'TF_NUM_INTRAOP_THREADS': '2'}
  message = devices.choose_threads(environ, cpus=2)
  assert environ == {'TF_NUM_INTRAOP_THREADS': '2'}
  assert 'your setting' in message


def test_help_explains_every_flag(capsys):
  import config
  with pytest.raises(SystemExit) as info:
    parse_args(['--help'])
  assert info.value.code == 0
  text = ' '.join(capsys.readouterr().out.split())
  for key, flag in config.FLAGS.items():
    help_text = flag.help
    assert help_text and f'--{key} ' in text, key
    assert ' '.join(help_text.split()) in text, key
  assert set(config.FLAGS) | {'configs'} == set(defaults())


TENSORFLOW_START = '''\
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1795989651.484084    9854 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
I0000 00:00:1795989651.5 9854 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use available CPU instructions.
To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the appropriate compiler flags.
E0000 00:00:1795989654.945973    9854 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)
E0000 00:00:1795989654.9 9854 some_kernel.cc:10] Out of memory allocating 1 GB
  while building the graph
Python says something
'''


def test_tensorflow_start_keeps_only_the_lines_that_matter():
  assert devices.tensorflow_lines_that_matter(TENSORFLOW_START) == (
      'E0000 00:00:1795989654.9 9854 some_kernel.cc:10] Out of memory '
      'allocating 1 GB\n  while building the graph\nPython says something\n')


def test_start_up_names_the_devices_without_tensorflow_noise():
  import os
  import subprocess
  import sys
  env = {k: v for k, v in os.environ.items() if k != 'TF_CPP_MIN_LOG_LEVEL'}
  result = subprocess.run(
      [sys.executable, '-c', 'import devices; '
       'devices.setup_tensorflow(0, True, 1)'], env=env, capture_output=True,
      text=True, timeout=120, cwd=pathlib.Path(__file__).parents[1])
  assert result.returncode == 0, result.stderr
  assert result.stdout.startswith('Training on the CPU: '), result.stdout
  assert 'I0000' not in result.stderr and 'cuInit' not in result.stderr, (
      result.stderr)


def test_the_originals_program_gets_the_same_config_in_its_flags():
  small = make_config(configs=['small'], precision='32', steps=105000,
                      keep_checkpoints='5000,25000', task='dmc_walker_run',
                      seed=3, logdir='x')
  assert original_flags(small) == [
      '--steps', '105000', '--keep_checkpoints', '5000,25000',
      '--precision', '32', '--deter_size', '100', '--num_units', '200',
      '--cnn_depth', '16', '--batch_size', '16']
  assert original_flags(make_config(pcont=True, model_lr=1e-4)) == [
      '--pcont', 'True', '--model_lr', '0.0001']
  assert set(OURS) == set(defaults()) - set(ORIGINAL_DEFAULTS) - {
      'logdir', 'configs'}


@pytest.mark.parametrize('overrides, message', [
    (dict(obs='proprio'), "--obs is ours: the original's program has no such"),
    (dict(jit=True), '--jit is ours'),
    (dict(precision='bf16'), "--precision bf16 is ours: the original's "
     'program takes 16 or 32')])
def test_a_flag_the_original_lacks_is_named(overrides, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    original_flags(make_config(**overrides))
