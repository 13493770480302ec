"""The small math functions against plain-Python loops."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import models
import networks
import tools

tfd = tfp.distributions


def loop_lambda_return(reward, value, pcont, bootstrap, lambda_):
  steps = len(reward)
  returns = [None] * steps
  last = bootstrap
  for t in reversed(range(steps)):
    next_value = value[t + 1] if t + 1 < steps else bootstrap
    last = reward[t] + pcont[t] * ((1 - lambda_) * next_value + lambda_ * last)
    returns[t] = last
  return np.stack(returns)


@pytest.mark.parametrize('bootstrap', [True, False])
def test_lambda_return_matches_loop(bootstrap):
  rng = np.random.default_rng(1)
  reward, value = rng.normal(size=(2, 9, 4)).astype(np.float32)
  pcont = rng.uniform(0.5, 1, (9, 4)).astype(np.float32)
  boot = rng.normal(size=4).astype(np.float32) if bootstrap else None
  ours = tools.lambda_return(reward, value, pcont, boot, 0.9)
  expected = loop_lambda_return(
      reward, value, pcont, boot if bootstrap else np.zeros(4), 0.9)
  np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)


def test_lambda_return_other_axis_and_scalar_discount():
  rng = np.random.default_rng(2)
  reward, value = rng.normal(size=(2, 3, 7)).astype(np.float32)
  boot = rng.normal(size=3).astype(np.float32)
  ours = tools.lambda_return(reward, value, 0.99, boot, 0.95, axis=1)
  expected = loop_lambda_return(
      reward.T, value.T, np.full((7, 3), 0.99), boot, 0.95).T
  np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)


def test_lambda_one_is_discounted_return_and_zero_is_td():
  reward = np.ones((4, 1), np.float32)
  value = np.full((4, 1), 10.0, np.float32)
  mc = tools.lambda_return(reward, value, 0.5, np.zeros(1, np.float32), 1.0)
  np.testing.assert_allclose(mc[:, 0], [1.875, 1.75, 1.5, 1.0])
  td = tools.lambda_return(reward, value, 0.5, np.zeros(1, np.float32), 0.0)
  np.testing.assert_allclose(td[:, 0], [6.0, 6.0, 6.0, 1.0])


def test_lambda_return_rejects_mismatched_shapes():
  with pytest.raises(ValueError):
    tools.lambda_return(np.ones((5, 2)), np.ones((5, 3)), 0.9, None, 0.9)


def test_free_nats_apply_after_averaging():
  prior = tfd.MultivariateNormalDiag(tf.zeros((2, 3)), tf.ones((2, 3)))
  # KL(N(μ, 1) ‖ N(0, 1)) summed over 3 dims = 3 · μ² / 2: 1.5 and 24.
  post = tfd.MultivariateNormalDiag(
      tf.constant([[1.0] * 3, [4.0] * 3]), tf.ones((2, 3)))
  per_element = 0.5 * np.array([3.0, 48.0])
  kl, div = models.kl_loss(post, prior, 3.0)
  assert float(kl) == float(div) == pytest.approx(per_element.mean())
  # Element 0 is below 3 nats alone, but only the mean is floored.
  kl, div = models.kl_loss(post, prior, 30.0)
  assert float(div) == 30.0 and float(kl) == pytest.approx(12.75)
  with tf.GradientTape() as tape:
    mean = tf.Variable(tf.fill((2, 3), 0.1))
    post = tfd.MultivariateNormalDiag(mean, tf.ones((2, 3)))
    _, loss = models.kl_loss(post, prior, 3.0)
  assert float(loss) == 3.0
  assert float(tf.reduce_sum(tf.abs(tape.gradient(loss, mean)))) == 0.0


def test_discount_weights_are_cumulative_products():
  pcont = np.array([[0.9], [0.8], [0.5], [0.1]], np.float32)
  weights = models.discount_weights(tf.constant(pcont))
  np.testing.assert_allclose(weights[:, 0], [1.0, 0.9, 0.72])


def test_tanh_normal_mode_is_chosen_per_element():
  loc = tf.constant([[-1.0, 0.0], [0.0, 1.0], [0.5, -0.5]])
  dist = networks.TanhNormal(loc, tf.fill(loc.shape, 0.05), samples=200)
  np.testing.assert_allclose(dist.mode(), np.tanh(loc), atol=0.1)


def test_tanh_normal_samples_are_tanh_of_the_noise():
  loc, scale = tf.constant([[0.3, -2.0]]), tf.constant([[0.5, 2.0]])
  dist = networks.TanhNormal(loc, scale)
  eps = np.array([[1.5, -0.25]], np.float32)
  np.testing.assert_allclose(
      dist.sample(eps), np.tanh(eps * scale + loc), rtol=1e-6)
  eps = np.random.default_rng(0).normal(size=(3, 1, 2)).astype(np.float32)
  draws = np.tanh(eps * scale.numpy() + loc.numpy())
  np.testing.assert_allclose(dist.mean(eps), draws.mean(0), rtol=1e-6)
  np.testing.assert_allclose(
      dist.entropy(eps), -dist.log_prob(draws).numpy().mean(0), rtol=1e-5)
  best = np.argmax(dist.log_prob(draws).numpy(), 0)
  np.testing.assert_allclose(dist.mode(eps), draws[best[0], :], rtol=1e-6)


def test_tanh_normal_mean_and_entropy_estimates():
  loc, scale = tf.fill((2, 3), 0.5), tf.fill((2, 3), 0.3)
  dist = networks.TanhNormal(loc, scale, samples=4000)
  base = tfd.Normal(0.5, 0.3)
  x = base.sample(200_000, seed=1).numpy()
  np.testing.assert_allclose(dist.mean(), np.tanh(x).mean(), atol=0.02)
  # h(tanh X) = h(X) + E[log(1 − tanh² X)], summed over 3 dimensions.
  entropy = 3 * (base.entropy().numpy() + np.mean(np.log(1 - np.tanh(x) ** 2)))
  np.testing.assert_allclose(dist.entropy(), entropy, atol=0.1)


@pytest.mark.parametrize('mean_scale', [5.0, 1.0])
def test_actor_loc_and_scale_follow_the_formula(mean_scale):
  # loc = mean_scale tanh(m / mean_scale), scale = softplus(s + log(e^5 - 1))
  # + 1e-4, with (m, s) the actor's last layer, computed here in numpy.
  from helpers import tiny_config
  config = tiny_config(action_mean_scale=mean_scale)
  actor = models.Dreamer(config, 2).modules['actor']
  feat = np.random.default_rng(0).normal(0, 30, (64, 20)).astype(np.float32)
  hidden = feat
  for name, layer in actor.named_layers.items():
    hidden = hidden @ layer.kernel.numpy() + layer.bias.numpy()
    if name != 'hout':
      hidden = np.where(hidden > 0, hidden, np.expm1(np.minimum(hidden, 0)))
  m, s = np.split(hidden, 2, -1)
  loc, scale = actor.tanh_normal_params(tf.constant(feat))
  np.testing.assert_allclose(
      loc, mean_scale * np.tanh(m / mean_scale), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(
      scale, np.log1p(np.exp(s + np.log(np.expm1(5.0)))) + 1e-4, rtol=1e-4,
      atol=1e-4)
  assert np.abs(loc).max() <= mean_scale and np.abs(m).max() > 2 * mean_scale


def test_tanh_inverse_is_finite_at_the_bounds():
  bijector = networks.TanhBijector()
  x = bijector.inverse(tf.constant([-1.0, -0.5, 0.0, 0.5, 1.0]))
  assert np.all(np.isfinite(x))
  np.testing.assert_allclose(x[1:4], np.arctanh([-0.5, 0.0, 0.5]), rtol=1e-6)


def test_onehot_sample_is_one_hot_with_probability_gradients():
  logits = tf.Variable([[0.2, 1.0, -0.5]])
  weights = tf.constant([1.0, 2.0, 3.0])
  with tf.GradientTape(persistent=True) as tape:
    dist = networks.OneHotDist(logits=logits)
    sample = dist.sample()
    via_sample = tf.reduce_sum(sample * weights)
    via_probs = tf.reduce_sum(dist.probs_parameter() * weights)
  np.testing.assert_array_equal(np.sort(sample[0]), [0, 0, 1])
  np.testing.assert_allclose(
      tape.gradient(via_sample, logits), tape.gradient(via_probs, logits),
      rtol=1e-6)
  np.testing.assert_array_equal(dist.mode(), [[0.0, 1.0, 0.0]])


def test_static_scan_stacks_nested_states_in_time_order():
  inputs = tf.range(4, dtype=tf.float32)
  start = {'sum': tf.constant(0.0), 'count': tf.constant(0.0)}
  out = tools.static_scan(
      lambda s, x: {'sum': s['sum'] + x, 'count': s['count'] + 1},
      inputs, start)
  np.testing.assert_array_equal(out['sum'], [0, 1, 3, 6])
  back = tools.static_scan(lambda s, x: s + x, inputs, tf.constant(0.0), True)
  np.testing.assert_array_equal(back, [6, 6, 5, 3])


def test_schedules():
  every = tools.Every(10)
  assert [every(s) for s in (0, 5, 10, 12, 25, 29, 30)] == [
      True, False, True, False, True, False, True]
  zero = tools.Every(0)  # Every call, as in the original.
  assert [zero(s) for s in (100, 100, 101)] == [True, True, True]
  once = tools.Once()
  assert [once(), once()] == [True, False]
  assert tools.exploration_amount(100, 0.3, 100, 0.0) == pytest.approx(0.15)
  assert tools.exploration_amount(10 ** 6, 0.3, 100, 0.05) == 0.05
  assert tools.exploration_amount(10 ** 6, 0.3, 0, 0.0) == 0.3


def test_gru_step_matches_keras_gru_cell():
  import keras
  from networks.rssm import gru_step
  cell = keras.layers.GRUCell(8)
  rng = np.random.default_rng(0)
  x = rng.normal(size=(4, 5)).astype(np.float32)
  h = rng.normal(size=(4, 8)).astype(np.float32)
  cell.build((None, 5))
  cell.bias.assign(rng.normal(size=cell.bias.shape))  # Nonzero biases too.
  expected, _ = cell(x, [h])
  actual = gru_step(x, h, cell.kernel, cell.recurrent_kernel, cell.bias)
  np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-6)
  assert not np.allclose(actual, h)


def loop_conv_transpose(x, kernel, bias):
  """Stride-2 'valid' transposed convolution: each input pixel adds its
  weighted (k, k, out) patch at twice its position."""
  n, height, width, _ = x.shape
  size, _, filters, _ = kernel.shape
  out = np.zeros((n, 2 * (height - 1) + size, 2 * (width - 1) + size, filters))
  for i in range(height):
    for j in range(width):
      out[:, 2 * i:2 * i + size, 2 * j:2 * j + size] += np.einsum(
          'nc,hwoc->nhwo', x[:, i, j], kernel)
  return out + bias


def outputs_and_gradients(layer, x, upstream):
  """layer(x) and the gradients of Σ layer(x)·upstream for x, kernel, bias."""
  with tf.GradientTape() as tape:
    tape.watch(x)
    outputs = layer(x)
    loss = tf.reduce_sum(outputs * upstream)
  return outputs, tape.gradient(loss, [x, layer.kernel, layer.bias])


# Filters 5 and 16: the two ways of bias_gradient.
@pytest.mark.parametrize('size,phases,act,filters', [
    (6, True, None, 5), (5, True, 'relu', 5), (6, True, 'relu', 16),
    (6, False, 'relu', 5), (5, False, None, 5)])
def test_phase_conv_transpose_matches_loop_and_keras_gradients(
    size, phases, act, filters):
  import keras
  from networks.conv import PhaseConv2DTranspose
  rng = np.random.default_rng(size)
  x = tf.constant(rng.normal(size=(3, 7, 6, 4)), tf.float32)
  ours = PhaseConv2DTranspose(filters, size, 2, phases=phases, activation=act)
  keras_layer = keras.layers.Conv2DTranspose(filters, size, 2, activation=act)
  for layer in (ours, keras_layer):
    layer.build(x.shape)
  keras_layer.kernel.assign(rng.normal(size=keras_layer.kernel.shape))
  keras_layer.bias.assign(rng.normal(size=filters))
  ours.kernel.assign(keras_layer.kernel)
  ours.bias.assign(keras_layer.bias)
  expected = loop_conv_transpose(
      x.numpy(), keras_layer.kernel.numpy(), keras_layer.bias.numpy())
  if act == 'relu':
    expected = np.maximum(expected, 0)
  upstream = tf.constant(rng.normal(size=expected.shape), tf.float32)
  grads = []
  for layer in (ours, keras_layer):
    outputs, layer_grads = outputs_and_gradients(layer, x, upstream)
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-5)
    grads.append(layer_grads)
  for actual, wanted in zip(*grads):
    np.testing.assert_allclose(actual, wanted, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize('height,act', [(6, 'relu'), (9, None)])
def test_conv_by_patches_matches_keras_conv_and_gradients(height, act):
  import keras
  from networks.conv import Conv2D
  rng = np.random.default_rng(height)
  x = tf.constant(rng.normal(size=(3, height, height, 5)), tf.float32)
  ours = Conv2D(7, 4, 2, patches=True, activation=act)
  keras_layer = keras.layers.Conv2D(7, 4, 2, activation=act)
  for layer in (ours, keras_layer):
    layer.build(x.shape)
  keras_layer.bias.assign(rng.normal(size=7))
  ours.kernel.assign(keras_layer.kernel)
  ours.bias.assign(keras_layer.bias)
  upstream = tf.constant(
      rng.normal(size=keras_layer.compute_output_shape(x.shape)), tf.float32)
  results = []
  for layer in (ours, keras_layer):
    outputs, grads = outputs_and_gradients(layer, x, upstream)
    results.append([outputs] + grads)
  assert results[0][0].shape == results[1][0].shape
  for actual, wanted in zip(*results):
    np.testing.assert_allclose(actual, wanted, rtol=1e-5, atol=1e-5)


def test_encoder_halves_give_the_whole_batch_result():
  from networks.conv import ConvEncoder, halves
  assert len(halves(tf.zeros([63, 2]))) == 1
  assert [int(h.shape[0]) for h in halves(tf.zeros([65, 2]))] == [32, 33]
  encoder = ConvEncoder(depth=2)
  images = tf.random.stateless_uniform([2, 40, 64, 64, 3], [0, 1], -0.5, 0.5)
  whole = encoder(images)
  one_by_one = tf.stack([encoder(images[:, t:t + 1])[:, 0] for t in range(40)], 1)
  np.testing.assert_allclose(whole, one_by_one, rtol=1e-5, atol=1e-6)
