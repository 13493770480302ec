"""Our modules against the numbers the original code produced."""

import json

import numpy as np
import pytest

import models
import networks
import tools
from helpers import tiny_config

RTOL, ATOL = 1e-4, 1e-5
OUTPUTS = (
    'embed', 'prior_mean', 'prior_std', 'prior_deter', 'post_mean',
    'post_std', 'post_deter', 'decoder_mean', 'reward_mean', 'value_mean',
    'pcont_mean', 'actor_loc', 'actor_scale', 'actor_logprob', 'onehot_probs',
    'lr_returns', 'lr_returns_zero_bootstrap', 'tanh_log_det_jacobian')


def small_modules(config, action_size):
  c = config
  encoder = networks.ConvEncoder(c['cnn_depth'])
  rssm = networks.RSSM(
      action_size, encoder.embed_size, c['stoch_size'], c['deter_size'],
      c['deter_size'])
  feat, units = rssm.feat_size, c['num_units']
  return {
      'encoder': encoder,
      'rssm': rssm,
      'decoder': networks.ConvDecoder(feat, c['cnn_depth']),
      'reward': networks.DenseDecoder(feat, (), 2, units, name='reward'),
      'value': networks.DenseDecoder(feat, (), 3, units, name='value'),
      'pcont': networks.DenseDecoder(feat, (), 3, units, 'binary', name='pcont'),
      'actor': networks.ActionDecoder(feat, action_size, 4, units),
      'actor_onehot': networks.ActionDecoder(
          feat, action_size, 4, units, 'onehot', name='actor_onehot'),
  }


@pytest.fixture(scope='module')
def golden(reference):
  counts = json.loads((reference / 'param_counts.json').read_text())
  config = counts['small']['config']
  modules = small_modules(config, config['action_dim'])
  networks.load_weights(modules, reference / 'reference_weights.npz')
  with np.load(reference / 'reference_io.npz') as data:
    io = dict(data)
  return modules, io


@pytest.fixture(scope='module')
def ours(golden):
  m, io = golden
  prev = {k: io[f'prev_{k}'] for k in ('mean', 'std', 'stoch', 'deter')}
  prior = m['rssm'].img_step(prev, io['prev_action'])
  post, _ = m['rssm'].obs_step(prev, io['prev_action'], io['embed'][:, 0])
  loc, scale = m['actor'].tanh_normal_params(io['feat'])
  lr_args = (io['lr_reward'], io['lr_value'], io['lr_pcont'])
  out = {
      'embed': m['encoder'](io['image']),
      'decoder_mean': m['decoder'](io['feat']).mean(),
      'reward_mean': m['reward'](io['feat']).mean(),
      'value_mean': m['value'](io['feat']).mean(),
      'pcont_mean': m['pcont'](io['feat']).mean(),
      'actor_loc': loc,
      'actor_scale': scale,
      'actor_logprob': m['actor'](io['feat']).log_prob(io['actions']),
      'onehot_probs': m['actor_onehot'](io['feat']).probs_parameter(),
      'lr_returns': tools.lambda_return(
          *lr_args, io['lr_bootstrap'], io['lr_lambda']),
      'lr_returns_zero_bootstrap': tools.lambda_return(
          *lr_args, None, io['lr_lambda']),
      'tanh_log_det_jacobian': networks.TanhBijector().forward_log_det_jacobian(
          io['tanh_x'], event_ndims=0),
  }
  for key in ('mean', 'std', 'deter'):
    out[f'prior_{key}'] = prior[key]
    out[f'post_{key}'] = post[key]
  return {k: np.asarray(v) for k, v in out.items()}


def close(actual, expected):
  return actual.shape == expected.shape and np.allclose(
      actual, expected, rtol=RTOL, atol=ATOL)


def test_image_input_is_the_preprocessed_frames(golden):
  _, io = golden
  image = np.asarray(models.preprocess({'image': io['image_uint8']})['image'])
  np.testing.assert_allclose(image, io['image'], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize('key', OUTPUTS)
def test_output_matches_original(golden, ours, key):
  _, io = golden
  assert ours[key].shape == io[key].shape
  np.testing.assert_allclose(ours[key], io[key], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize('key', OUTPUTS)
def test_comparison_detects_one_percent_change(golden, ours, key):
  _, io = golden
  assert not close(ours[key], io[key] * 1.01)


def test_loaded_weights_export_unchanged(golden, reference):
  modules, _ = golden
  exported = networks.export_weights(modules)
  with np.load(reference / 'reference_weights.npz') as data:
    assert sorted(exported) == sorted(data.files)
    for key in data.files:
      np.testing.assert_array_equal(exported[key], data[key])


def test_load_rejects_wrong_shapes(golden, reference):
  modules, _ = golden
  with np.load(reference / 'reference_weights.npz') as data:
    weights = dict(data)
  weights['reward/h0/kernel'] = weights['reward/h0/kernel'][:-1]
  with pytest.raises(ValueError, match='reward/h0/kernel has shape'):
    networks.load_weights({'reward': modules['reward']}, weights)
  del weights['reward/h0/kernel']
  with pytest.raises(ValueError, match='missing for: reward/h0/kernel'):
    networks.load_weights({'reward': modules['reward']}, weights)


def param_count_cases():
  from helpers import reference_dir
  path = reference_dir() / 'param_counts.json'
  return sorted(json.loads(path.read_text())) if path.exists() else ['absent']


@pytest.mark.parametrize('case', param_count_cases())
def test_param_counts(reference, case):
  entry = json.loads((reference / 'param_counts.json').read_text())[case]
  config, expected = entry['config'], entry['counts']
  action_size = config['action_dim']
  modules = small_modules(config, action_size)
  ours = models.count_params(modules)
  ours['actor_tanh_normal'] = ours['actor']
  assert {k: ours[k] for k in expected} == expected


def test_world_model_optimizer_covers_the_model(reference):
  config = tiny_config(
      cnn_depth=32, stoch_size=30, deter_size=200, num_units=400)
  agent = models.Dreamer(config, 6)
  count = sum(int(np.prod(v.shape)) for v in agent.model_opt.variables)
  assert count == 5_296_820
