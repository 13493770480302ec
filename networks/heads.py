"""Dense heads: reward, value and pcont decoders and the actor."""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from config import CHOICES
from networks.common import (
    Module, apply_flat, batch_shape, get_act, reshape, to_float32)
from networks.distributions import OneHotDist, TanhNormal

tfd = tfp.distributions

DENSE_DISTS = ('normal', 'binary')
ACTION_DISTS = CHOICES['action_dist']


class DenseDecoder(Module):
  """`layers` hidden Dense(units, act) layers, then Dense(prod(shape)).

  normal: Independent(Normal(x, 1)); binary: Independent(Bernoulli(logits=x))
  over the axes of `shape`.
  """

  def __init__(self, feat_size, shape=(), layers=2, units=400, dist='normal',
               act='elu', dtype=None, name='dense_decoder'):
    super().__init__(name, dtype)
    if dist not in DENSE_DISTS:
      raise ValueError(
          f'unknown dense distribution {dist!r}; allowed: {", ".join(DENSE_DISTS)}')
    self._shape = tuple(shape)
    self._dist = dist
    act = get_act(act)
    size = feat_size
    for index in range(layers):
      self.dense(f'h{index}', units, size, act)
      size = units
    self.dense('hout', int(np.prod(self._shape)), size)
    self.finish()

  def call(self, features):
    leading = batch_shape(features, 1)
    x = apply_flat(self.named_layers.values(), features)
    x = reshape(to_float32(x), leading, self._shape)
    if self._dist == 'normal':
      return tfd.Independent(tfd.Normal(x, 1.0), len(self._shape))
    return tfd.Independent(
        tfd.Bernoulli(logits=x, dtype=tf.float32), len(self._shape))


class DenseEncoder(Module):
  """`layers` Dense(units, act) layers: a state vector → an embedding."""

  def __init__(self, inputs, layers=4, units=400, act='elu', dtype=None,
               name='dense_encoder'):
    super().__init__(name, dtype)
    act = get_act(act)
    for index in range(layers):
      self.dense(f'h{index}', units, inputs if index == 0 else units, act)
    self.embed_size = units
    self.finish()

  def call(self, features):
    return to_float32(apply_flat(self.named_layers.values(), features))


class ActionDecoder(Module):
  """The actor: `layers` hidden Dense(units, act) layers, then the action head.

  tanh_normal: Dense(2A) → m, s; loc = mean_scale · tanh(m / mean_scale);
  scale = softplus(s + log(e^init_std − 1)) + min_std; TanhNormal(loc,
  scale): Normal through tanh, independent over A, with sample-based
  mean/mode/entropy.
  onehot: Dense(A) logits of a straight-through one-hot categorical.
  """

  def __init__(self, feat_size, size, layers=4, units=400, dist='tanh_normal',
               act='elu', init_std=5.0, min_std=1e-4, mean_scale=5.0,
               dtype=None, name='actor'):
    super().__init__(name, dtype)
    if dist not in ACTION_DISTS:
      raise ValueError(
          f'unknown action_dist {dist!r}; allowed: {", ".join(ACTION_DISTS)}')
    self._size = size
    self._dist = dist
    self._min_std = min_std
    self._mean_scale = mean_scale
    self._raw_init_std = float(np.log(np.exp(init_std) - 1))
    act = get_act(act)
    width = feat_size
    for index in range(layers):
      self.dense(f'h{index}', units, width, act)
      width = units
    outputs = 2 * size if dist == 'tanh_normal' else size
    self.dense('hout', outputs, width)
    self.finish()

  def _head(self, features):
    return to_float32(apply_flat(self.named_layers.values(), features))

  def tanh_normal_params(self, features):
    """The pre-tanh Normal's loc and scale, each (…, A)."""
    mean, std = tf.split(self._head(features), 2, -1)
    mean = self._mean_scale * tf.tanh(mean / self._mean_scale)
    std = tf.nn.softplus(std + self._raw_init_std) + self._min_std
    return mean, std

  def call(self, features):
    if self._dist == 'onehot':
      return OneHotDist(logits=self._head(features))
    return TanhNormal(*self.tanh_normal_params(features))
