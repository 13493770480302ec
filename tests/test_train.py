"""The compiled train step at a tiny config."""

import numpy as np
import pytest
import tensorflow as tf

import models
from conftest import random_batch, tiny_config

SPEC_METRICS = {
    'model_grad_norm', 'value_grad_norm', 'actor_grad_norm', 'prior_ent',
    'post_ent', 'image_loss', 'reward_loss', 'div', 'model_loss',
    'value_loss', 'actor_loss', 'action_ent'}


def snapshot(variables):
  return [np.array(v.numpy()) for v in variables]


def changed(before, variables):
  return [not np.array_equal(b, v.numpy()) for b, v in zip(before, variables)]


@pytest.mark.parametrize('precision,pcont,jit', [
    ('32', False, True), ('32', True, False), ('16', False, False),
    ('bf16', True, False)])
def test_train_step_returns_finite_spec_metrics(precision, pcont, jit):
  config = tiny_config(precision=precision, pcont=pcont, jit=jit)
  agent = models.Dreamer(config, 2)
  data = random_batch(config, 2)
  metrics = agent.train(data)
  # float16 gradients overflow at the initial loss scale 2^15: those updates
  # are skipped and the scale halves until the gradients are finite.
  for _ in range(25 if precision == '16' else 0):
    if np.isfinite(metrics['model_grad_norm'].numpy()):
      break
    metrics = agent.train(data)
  expected = SPEC_METRICS | ({'pcont_loss'} if pcont else set())
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


def test_loss_scale_skips_non_finite_updates():
  var = tf.Variable([1.0, 2.0])
  opt = models.Optimizer('test', [var], 0.1, 100.0, loss_scale=True)
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(var) * np.inf
  opt(tape, loss)
  np.testing.assert_array_equal(var.numpy(), [1.0, 2.0])
  assert float(opt.state_variables[-2]) == 2.0 ** 14
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(var ** 2)
  norm = opt(tape, loss)
  assert float(norm) == pytest.approx(np.sqrt(2 ** 2 + 4 ** 2))
  assert var.numpy()[0] < 1.0


def test_gradient_clipping_reports_the_norm_before_clipping():
  var = tf.Variable([3.0, 4.0])
  opt = models.Optimizer('test', [var], 1.0, 1.0)
  with tf.GradientTape() as tape:
    loss = 10 * tf.reduce_sum(var)
  assert float(opt(tape, loss)) == pytest.approx(10 * np.sqrt(2))


def test_weight_decay_multiplies_by_one_minus_wd_where_matched():
  a, b = tf.Variable([1.0]), tf.Variable([1.0])
  opt = models.Optimizer(
      'test', [a, b], 0.0, 100.0, wd=0.1, wd_pattern='^x/', names=['x/a', 'y/b'])
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(a + b)
  opt(tape, loss)
  assert float(a[0]) == pytest.approx(0.9) and float(b[0]) == 1.0


def test_bad_values_give_clear_errors():
  with pytest.raises(ValueError, match='allowed: 16, 32, bf16'):
    models.dtype_policy('8')
  with pytest.raises(ValueError, match='action_dist'):
    tiny_config(action_dist='beta')
