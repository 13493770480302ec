"""The noise seam: shared latent noise like the original's, or independent."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import models
import networks
from helpers import tiny_config
from synthetic import random_batch


def latent_eps(state):
  """The standard noise behind each latent sample: (stoch − mean) / std."""
  return (state['stoch'].numpy() - state['mean'].numpy()) / state['std'].numpy()


def spread_over_batch(eps):
  """Largest difference between batch elements, for (B, …) noise."""
  return float(np.abs(eps - eps[:1]).max())


@pytest.mark.parametrize('traced', [False, True])
@pytest.mark.parametrize('mode', ['shared', 'independent'])
def test_observe_and_imagine_share_latent_noise_across_the_batch(
    mode, traced):
  # Traced with the global seed set, as a run's train step: each draw must
  # still be fresh (the original's nested tf.functions then repeat theirs,
  # see harness/train.py seed_globals).
  keras.utils.set_random_seed(0)
  rssm = networks.RSSM(2, 8, stoch=4, deter=6, hidden=6, latent_noise=mode)
  rng = np.random.default_rng(0)
  embed = rng.normal(size=(5, 3, 8)).astype(np.float32)
  action = rng.uniform(-1, 1, (5, 3, 2)).astype(np.float32)
  run = lambda: (*rssm.observe(embed, action), rssm.imagine(action))
  post, prior, imagined = tf.function(run)() if traced else run()
  for state in (post, prior, imagined):
    eps = latent_eps(state)
    assert spread_over_batch(eps) < 1e-4 if mode == 'shared' else (
        spread_over_batch(eps) > 0.1)
    assert np.abs(eps[:, 0] - eps[:, 1]).max() > 0.1  # New noise each step.
  assert np.abs(latent_eps(post) - latent_eps(prior)).max() > 0.1


@pytest.mark.parametrize('mode', ['shared', 'independent'])
def test_imagined_trajectories_share_latent_noise(mode):
  config = tiny_config(latent_noise=mode)
  agent = models.Dreamer(config, 2)
  # Equal start states and zero actor noise: trajectories differ only by
  # their latent noise.
  start = agent.rssm.initial(4)
  post = {k: tf.stack([v] * 2, 1) for k, v in start.items()}
  zeros = np.zeros((config.horizon, 8, 2), np.float32)
  feat, action = agent.imagine_ahead(post, {'actor': zeros})
  spread = spread_over_batch(np.swapaxes(feat.numpy(), 0, 1))
  assert spread < 1e-5 if mode == 'shared' else spread > 0.01
  assert action.shape == (config.horizon, 8, 2)


@pytest.mark.parametrize('mode', ['shared', 'independent'])
def test_policy_shares_latent_but_not_action_noise(mode):
  agent = models.Dreamer(tiny_config(latent_noise=mode), 2)
  image = np.repeat(random_batch(agent._c, 2)['image'][0, :1], 3, 0)
  latent, action = agent.initial_state(3)
  action, latent = agent.policy({'image': image}, latent, action, True)
  stoch = latent['stoch'].numpy()
  assert (spread_over_batch(stoch) < 1e-6) == (mode == 'shared')
  assert spread_over_batch(action.numpy()) > 1e-3


def test_given_noise_replaces_every_draw():
  config = tiny_config(latent_noise='independent')
  agent = models.Dreamer(config, 2)
  data = random_batch(config, 2)
  rng = np.random.default_rng(1)
  b, t, s, h = 3, 6, 4, config.horizon
  noise = {
      'obs_prior': rng.normal(size=(b, t, s)), 'post': rng.normal(size=(b, t, s)),
      'imag': rng.normal(size=(h, b * t, s)),
      'actor': rng.normal(size=(h, b * t, 2))}
  noise = {k: v.astype(np.float32) for k, v in noise.items()}
  first = agent.gradients(data, noise)
  second = agent.gradients(data, noise)
  for key in ('model_loss', 'actor_loss', 'value_loss', 'actor_grad_norm'):
    assert float(first[0][key]) == float(second[0][key]), key
  np.testing.assert_array_equal(first[2]['imag_feat'], second[2]['imag_feat'])
  np.testing.assert_allclose(
      latent_eps({k[5:]: v for k, v in first[2].items()
                  if k.startswith('post_')}), noise['post'], atol=1e-4)
  drawn = agent.gradients(data)
  assert float(drawn[0]['actor_loss']) != float(first[0]['actor_loss'])


def test_onehot_sample_follows_the_class_probabilities():
  logits = tf.math.log(tf.constant([[0.1, 0.6, 0.3]]))
  dist = networks.OneHotDist(logits=tf.tile(logits, [20000, 1]))
  freq = dist.sample().numpy().mean(0)
  np.testing.assert_allclose(freq, [0.1, 0.6, 0.3], atol=0.015)
  eps = np.full((1, 3), 0.5, np.float32)  # Equal Gumbel noise: the argmax.
  np.testing.assert_array_equal(
      networks.OneHotDist(logits=logits).sample(eps), [[0, 1, 0]])
