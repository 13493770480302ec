"""The compiled train step at a tiny config."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import models
from helpers import tiny_config
from synthetic import random_batch, recorded_noise

SPEC_METRICS = {
    'model_grad_norm', 'value_grad_norm', 'actor_grad_norm', 'prior_ent',
    'post_ent', 'image_loss', 'reward_loss', 'div', 'model_loss',
    'value_loss', 'actor_loss', 'action_ent'}
# Ours besides the original's: skipped updates and the actor's diagnostics.
EXTRA_METRICS = {
    'model_nonfinite', 'actor_nonfinite', 'value_nonfinite', 'actor_mean_abs',
    'actor_std', 'action_saturated', 'imag_return', 'value_mean'}


def snapshot(variables):
  return [np.array(v.numpy()) for v in variables]


def changed(before, variables):
  return [not np.array_equal(b, v.numpy()) for b, v in zip(before, variables)]


@pytest.mark.parametrize('precision,pcont,jit', [
    pytest.param('32', False, True, marks=pytest.mark.slow),  # XLA: 25 s.
    ('32', True, False), ('16', False, False), ('bf16', True, False)])
def test_train_step_returns_finite_spec_metrics(precision, pcont, jit):
  keras.utils.set_random_seed(0)
  config = tiny_config(precision=precision, pcont=pcont, jit=jit)
  agent = models.Dreamer(config, 2)
  data = random_batch(config, 2)
  metrics = agent.train(data)
  # float16 gradients overflow at the initial loss scale 2^15: those updates
  # are skipped and each optimizer's scale halves until its gradients are
  # finite.
  norms = ('model_grad_norm', 'value_grad_norm', 'actor_grad_norm')
  for _ in range(25 if precision == '16' else 0):
    if all(np.isfinite(metrics[name].numpy()) for name in norms):
      break
    metrics = agent.train(data)
  expected = SPEC_METRICS | EXTRA_METRICS | ({'pcont_loss'} if pcont else set())
  assert set(metrics) == expected
  for name, value in metrics.items():
    assert value.dtype == tf.float32, name
    assert np.isfinite(value.numpy()), name


def test_onehot_actor_trains():
  config = tiny_config(action_dist='onehot')
  agent = models.Dreamer(config, 4)
  metrics = agent.train(random_batch(config, 4))
  assert np.isfinite(metrics['actor_loss'].numpy())
  assert float(metrics['actor_grad_norm']) > 0


def test_repeated_steps_on_one_batch_lower_the_model_loss():
  config = tiny_config(model_lr=3e-3)
  agent = models.Dreamer(config, 2)
  data = random_batch(config, 2)
  # Learnable frames: a bright and a dark horizontal ramp.
  ramp = np.linspace(0, 1, 64)[None, None, None, :, None]
  level = np.array([200, 40, 120])[:, None, None, None, None]
  data['image'] = np.broadcast_to(
      level * ramp + 20, data['image'].shape).astype(np.uint8)
  losses = [float(agent.train(data)['model_loss']) for _ in range(40)]
  # The image log-likelihood holds a constant 12288 · log √(2π) ≈ 11292.
  excess = [loss - 11292 for loss in losses]
  assert min(excess[-5:]) < 0.5 * excess[0]


@pytest.mark.parametrize('part', ['actor', 'value'])
def test_behaviour_updates_change_only_their_own_variables(part):
  lrs = {'model_lr': 0.0, 'actor_lr': 0.0, 'value_lr': 0.0}
  lrs[f'{part}_lr'] = 1e-3
  agent = models.Dreamer(tiny_config(**lrs), 2)
  before = {name: snapshot(m.trainable_variables)
            for name, m in agent.modules.items()}
  metrics = agent.train(random_batch(agent._c, 2))
  assert float(metrics[f'{part}_grad_norm']) > 0
  for name, module in agent.modules.items():
    moved = changed(before[name], module.trainable_variables)
    if name == part:
      assert all(moved), name
    else:
      assert not any(moved), name


def test_model_update_leaves_actor_and_value_alone():
  agent = models.Dreamer(
      tiny_config(actor_lr=0.0, value_lr=0.0, pcont=True), 2)
  model = [v for n in ('encoder', 'rssm', 'decoder', 'reward', 'pcont')
           for v in agent.modules[n].trainable_variables]
  behaviour = agent.actor.trainable_variables + agent.value.trainable_variables
  before_model, before_behaviour = snapshot(model), snapshot(behaviour)
  agent.train(random_batch(agent._c, 2))
  assert sum(changed(before_model, model)) > 0.9 * len(model)
  assert not any(changed(before_behaviour, behaviour))


def test_optimizers_cover_disjoint_parts():
  agent = models.Dreamer(tiny_config(pcont=True), 2)
  ids = [{id(v) for v in opt.variables} for opt in agent.optimizers]
  assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
  every = {id(v) for m in agent.modules.values() for v in m.trainable_variables}
  assert ids[0] | ids[1] | ids[2] == every


def numpy_adam(value, grads, lr, clip=0.0, wd=0.0):
  """The original's update in float64: clip, decay, then Adam (ε 1e-7)."""
  value, m, v = np.array(value, np.float64), 0.0, 0.0
  for t, grad in enumerate(grads, 1):
    grad = np.asarray(grad, np.float64)
    norm = np.sqrt(np.sum(grad ** 2))
    if clip and norm > clip:
      grad = grad * clip / norm
    value = (1 - wd) * value
    m = 0.9 * m + 0.1 * grad
    v = 0.999 * v + 0.001 * grad ** 2
    step = lr * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
    value = value - step * m / (np.sqrt(v) + 1e-7)
  return value


def apply_all(opt, grads):
  for grad in grads:
    grad = [tf.constant(g, tf.float32) for g in grad]
    opt.apply(grad, tf.linalg.global_norm(grad))


@pytest.mark.parametrize('clip', [0.0, 3.0])
def test_adam_step_equals_numpy_adam_with_clipping_and_decay(clip):
  a, b = tf.Variable([1.0, -2.0, 0.5]), tf.Variable([[0.3, 0.2]])
  opt = models.Optimizer(
      'test', [a, b], 0.01, clip, wd=0.1, wd_pattern='^test/x/',
      names=['x/a', 'y/b'])
  assert opt.decayed_names == ['test/x/a']
  rng = np.random.default_rng(0)
  # Joint norms around 0.3, 30 (clipped if clip) and 1e-6 (ε matters).
  grads = [[rng.normal(size=(3,)) * s, rng.normal(size=(1, 2)) * s]
           for s in (0.2, 20.0, 1e-6, 1.0)]
  apply_all(opt, grads)
  # Clipping scales both variables' gradients by one joint factor.
  joint = [np.concatenate([ga, gb.ravel()]) for ga, gb in grads]
  expected = numpy_adam(np.r_[1.0, -2.0, 0.5, 0.3, 0.2], joint, 0.01, clip)
  np.testing.assert_allclose(b.numpy().ravel(), expected[3:], rtol=1e-6)
  decayed = numpy_adam([1.0, -2.0, 0.5], [
      g * min(1, clip / np.linalg.norm(j)) if clip else g
      for (g, _), j in zip(grads, joint)], 0.01, 0.0, 0.1)
  np.testing.assert_allclose(a.numpy(), decayed, rtol=1e-6)
  assert int(opt.skipped) == 0


@pytest.mark.parametrize('loss_scale', [False, True])
def test_non_finite_gradients_skip_the_update_and_are_counted(loss_scale):
  var = tf.Variable([1.0, 2.0])
  opt = models.Optimizer('test', [var], 0.1, 100.0, loss_scale=loss_scale)
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(var) * np.inf
  grads, norm = opt.gradients(tape, loss)
  assert float(opt.apply(grads, norm)) == 1.0
  np.testing.assert_array_equal(var.numpy(), [1.0, 2.0])
  assert int(opt.skipped) == 1
  if loss_scale:
    assert float(opt.loss_scale) == 2.0 ** 14
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(var ** 2)
  assert float(opt(tape, loss)) == pytest.approx(np.sqrt(2 ** 2 + 4 ** 2))
  np.testing.assert_allclose(
      var.numpy(), numpy_adam([1.0, 2.0], [[2.0, 4.0]], 0.1), rtol=1e-6)
  assert int(opt.skipped) == 1


def test_gradient_clipping_reports_the_norm_before_clipping():
  var = tf.Variable([3.0, 4.0])
  opt = models.Optimizer('test', [var], 1.0, 1.0)
  with tf.GradientTape() as tape:
    loss = 10 * tf.reduce_sum(var)
  assert float(opt(tape, loss)) == pytest.approx(10 * np.sqrt(2))


def test_weight_decay_pattern_sees_optimizer_module_layer_weight_names():
  agent = models.Dreamer(tiny_config(
      weight_decay=0.1, weight_decay_pattern=r'^model/(encoder|rssm)/.*kernel'), 2)
  names = agent.model_opt.decayed_names
  assert 'model/encoder/h1/kernel' in names
  assert 'model/rssm/gru/recurrent_kernel' in names
  assert not [n for n in names if 'bias' in n or 'decoder' in n]
  assert agent.actor_opt.decayed_names == []


def test_update_applies_the_computed_gradients():
  config = tiny_config(weight_decay=0.01, weight_decay_pattern='kernel')
  agent = models.Dreamer(config, 2)
  data, noise = random_batch(config, 2), recorded_noise(config, 2)
  before = {opt.name: snapshot(opt.variables) for opt in agent.optimizers}
  computed, grads, _ = agent.gradients(data, noise)
  metrics = agent.train(data, noise)
  for name in ('model_loss', 'actor_loss', 'value_loss', 'model_grad_norm'):
    assert float(metrics[name]) == pytest.approx(float(computed[name]), 1e-6)
  for opt in agent.optimizers:
    norm = float(computed[f'{opt.name}_grad_norm'])
    scale = min(1.0, config.grad_clip / norm)
    lr = getattr(config, f'{opt.name}_lr')
    for name, value, grad, var in zip(
        opt.names, before[opt.name], grads[opt.name], opt.variables):
      wd = config.weight_decay if 'kernel' in name else 0.0
      expected = numpy_adam(value, [grad.numpy() * scale], lr, 0.0, wd)
      np.testing.assert_allclose(
          var.numpy(), expected, rtol=1e-5, atol=1e-7, err_msg=name)


def test_bad_values_give_clear_errors():
  with pytest.raises(ValueError, match='allowed: 16, 32, bf16'):
    models.dtype_policy('8')
  with pytest.raises(ValueError, match='action_dist'):
    tiny_config(action_dist='beta')
