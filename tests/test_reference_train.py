"""One whole train step against the original's: losses, metrics, gradients.

`train_step.npz` (see the reference README) holds what the original computed
for one update at the small configuration with the reference weights, the
noise of every random draw, in two variants (the default losses; pcont on
with free nats 0). We load the same weights and batch, inject the same
noise, compute the update without applying it and compare everything.
"""

import json

import numpy as np
import pytest

import models
import networks
from config import make_config
from helpers import (
    BATCH, NOISE, SMALL_KEYS, mismatches, reference_dir, reference_of)

VARIANTS = ('default', 'pcont')
@pytest.fixture(scope='module')
def golden():
  path = reference_dir() / 'train_step.npz'
  weights = reference_dir() / 'reference_weights.npz'
  if not (path.exists() and weights.exists()):
    pytest.skip(
        f'train_step.npz or reference_weights.npz not found in '
        f'{reference_dir()} (set DREAMER_REFERENCE_DIR)')
  with np.load(path) as data:
    arrays = dict(data)
  with np.load(weights) as data:
    return arrays, dict(data)


def our_step(arrays, weights, variant, latent_noise='shared'):
  """Our losses, metrics, intermediates and gradients under golden names.

  The golden noise has independent rows: full-shape noise replaces the
  draws of either latent noise mode.
  """
  original = json.loads(str(arrays[f'{variant}/config']))
  config = make_config(
      precision='32', latent_noise=latent_noise,
      **{k: original[k] for k in SMALL_KEYS})
  agent = models.Dreamer(config, original['A'])
  networks.load_weights(agent.modules, weights)
  batch = {k.replace('_uint8', ''): arrays[k] for k in BATCH}
  noise = {ours: arrays[f'{variant}/{theirs}'] for ours, theirs in NOISE.items()}
  metrics, grads, outs = agent.gradients(batch, noise)
  result = {k: np.asarray(v) for k, v in {**metrics, **outs}.items()}
  for opt in agent.optimizers:
    for name, grad in zip(opt.names, grads[opt.name]):
      result[f'grad/{opt.name}/{name}'] = np.asarray(grad)
  return result


@pytest.fixture(scope='module', params=[
    (variant, mode) for variant in VARIANTS
    for mode in ('shared', 'independent')], ids=lambda p: '-'.join(p))
def step(request, golden):
  arrays, weights = golden
  variant, mode = request.param
  ref = reference_of(arrays, variant)
  return variant, our_step(arrays, weights, variant, mode), ref


def test_every_reference_number_is_matched(step):
  variant, ours, ref = step
  assert not mismatches(ours, ref), variant


def test_every_gradient_key_is_ours_and_theirs(step):
  variant, ours, ref = step
  ours_grads = {k for k in ours if k.startswith('grad/')}
  ref_grads = {k for k in ref if k.startswith('grad/')}
  assert ours_grads == ref_grads
  counts = {loss: sum(k.startswith(f'grad/{loss}/') for k in ref_grads)
            for loss in ('model', 'actor', 'value')}
  assert counts == {'model': 45 if variant == 'pcont' else 37,
                    'actor': 10, 'value': 8}


def test_free_nats_cut_the_kl_only_layers_in_default(step):
  variant, ours, _ = step
  cut = [k for k in ours if k.startswith(('grad/model/rssm/img2/',
                                          'grad/model/rssm/img3/'))]
  assert len(cut) == 4
  for key in cut:
    assert (np.abs(ours[key]).max() == 0) == (variant == 'default'), key


def test_comparison_fails_for_a_one_percent_change(step):
  variant, ours, ref = step
  undetected = []
  for key, value in ref.items():
    value = np.asarray(value, np.float64)
    if not np.any(value):
      changed = value + 1e-6  # All-zero gradients must be zero to 1e-9.
    else:
      changed = value.copy().reshape(-1)
      changed[np.argmax(np.abs(changed))] *= 1.01
      changed = changed.reshape(value.shape)
    if key not in mismatches({**ours, key: changed}, ref):
      undetected.append(key)
  assert not undetected, f'{variant}: a 1% change passes for {undetected}'


def test_comparison_fails_when_a_gradient_key_is_missing(step):
  _, ours, ref = step
  for key in [k for k in ref if k.startswith('grad/')]:
    partial = {k: v for k, v in ours.items() if k != key}
    assert mismatches(partial, ref) == {key: 'missing on our side'}
