"""Distributions the original builds on top of TFP."""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from networks import noise

tfd = tfp.distributions
tfb = tfp.bijectors


class TanhBijector(tfb.Bijector):
  """y = tanh(x), with the inverse clipped so that atanh stays finite.

  forward_log_det_jacobian(x) = log(1 − tanh(x)²)
                              = 2 · (log 2 − x − softplus(−2x))
  """

  def __init__(self, validate_args=False, name='tanh'):
    parameters = dict(locals())
    super().__init__(
        forward_min_event_ndims=0, validate_args=validate_args,
        parameters=parameters, name=name)

  @classmethod
  def _parameter_properties(cls, dtype):
    return {}

  def _forward(self, x):
    return tf.nn.tanh(x)

  def _inverse(self, y):
    limit = tf.constant(0.99999997, y.dtype)
    y = tf.where(tf.abs(y) <= 1.0, tf.clip_by_value(y, -limit, limit), y)
    return tf.atanh(y)

  def _forward_log_det_jacobian(self, x):
    log2 = tf.math.log(tf.constant(2.0, x.dtype))
    return 2.0 * (log2 - x - tf.nn.softplus(-2.0 * x))


class TanhNormal:
  """Normal(loc, scale) through tanh, independent over the last axis.

  The original's `SampleDist(Independent(TransformedDistribution(Normal,
  TanhBijector)))`: sample = tanh(ε · scale + loc) for standard-normal ε;
  mean, mode and entropy are estimated from `samples` samples, mode being
  the sample of highest log-prob, chosen per batch element. Every method
  that samples takes its noise as `eps` (drawn when None; networks/noise.py):
  shaped like `loc` for `sample`, with a leading `samples` axis otherwise.
  """

  def __init__(self, loc, scale, samples=100):
    self.loc = loc
    self.scale = scale
    self._samples = samples
    self._dist = tfd.Independent(tfd.TransformedDistribution(
        tfd.Normal(loc, scale), TanhBijector()), 1)

  @property
  def distribution(self):
    return self._dist

  def sample(self, eps=None):
    if eps is None:
      eps = noise.normal(tf.shape(self.loc))
    return tf.tanh(eps * self.scale + self.loc)

  def log_prob(self, value):
    return self._dist.log_prob(value)

  def mean(self, eps=None):
    return tf.reduce_mean(self._draws(eps), 0)

  def mode(self, eps=None):
    sample = self._draws(eps)
    logprob = self._dist.log_prob(sample)
    best = tf.one_hot(
        tf.argmax(logprob, 0), tf.shape(sample)[0], axis=0, dtype=sample.dtype)
    return tf.reduce_sum(best[..., None] * sample, 0)

  def entropy(self, eps=None):
    return -tf.reduce_mean(self._dist.log_prob(self._draws(eps)), 0)

  def _draws(self, eps):
    """`samples` samples (samples, …, A) from noise of that shape."""
    if eps is None:
      eps = noise.normal(tf.concat([[self._samples], tf.shape(self.loc)], 0))
    return tf.tanh(eps * self.scale + self.loc)


class OneHotDist:
  """One-hot categorical whose samples pass straight-through gradients.

  sample = one_hot + probs − stop_gradient(probs): the value is one-hot, the
  gradient is that of the class probabilities. The class is drawn by
  Gumbel-max, argmax(logits − log(−log u)) for uniform u: the categorical's
  distribution, from noise that passes through networks/noise.py.
  """

  def __init__(self, logits=None, probs=None, dtype=tf.float32):
    self._dist = tfd.OneHotCategorical(logits=logits, probs=probs, dtype=dtype)
    self._dtype = dtype

  @property
  def distribution(self):
    return self._dist

  def probs_parameter(self):
    return self._dist.probs_parameter()

  def sample(self, eps=None):
    """Gumbel-max sample from uniform noise `eps` shaped like the logits."""
    logits = self._dist.logits_parameter()
    if eps is None:
      eps = noise.uniform(tf.shape(logits))
    index = tf.argmax(logits - tf.math.log(-tf.math.log(eps)), -1)
    sample = tf.one_hot(index, logits.shape[-1], dtype=self._dtype)
    probs = tf.cast(self._dist.probs_parameter(), self._dtype)
    return sample + (probs - tf.stop_gradient(probs))  # Exactly one-hot.

  def mode(self):
    logits = self._dist.logits_parameter()
    return tf.one_hot(tf.argmax(logits, -1), logits.shape[-1], dtype=self._dtype)

  def mean(self):
    return self.probs_parameter()

  def log_prob(self, value):
    return self._dist.log_prob(value)

  def entropy(self):
    return self._dist.entropy()


class UnitNormal:
  """Independent(Normal(mean, 1), event_ndims): the decoder's image density.

      log p(x) = Σ_event (−½ (x − mean)² − ½ log 2π)

  the ops and order of TFP's Normal.log_prob (whose divisions by the scale
  1 are exact) and Independent's sum, so the same values; the gradient with
  respect to the mean, g · (x − mean), is one full-size pass where TFP's
  takes five (tile, two products, difference, negation), bit for bit the
  same.
  """

  def __init__(self, mean, event_ndims):
    self._mean = mean
    self._axes = list(range(-event_ndims, 0))

  def mean(self):
    return self._mean

  def mode(self):
    return self._mean

  def log_prob(self, value):
    return _unit_normal_log_prob(
        tf.cast(value, self._mean.dtype), self._mean, self._axes)


def _unit_normal_log_prob(value, mean, axes):
  normalization = tf.constant(0.5 * np.log(2.0 * np.pi), mean.dtype)

  @tf.custom_gradient
  def log_prob(value, mean):
    density = -0.5 * tf.math.squared_difference(value, mean) - normalization

    def grad(upstream):
      upstream = tf.reshape(upstream, tf.concat(
          [tf.shape(upstream), tf.ones([len(axes)], tf.int32)], 0))
      dmean = upstream * (value - mean)
      return -dmean, dmean
    return tf.reduce_sum(density, axes), grad
  return log_prob(value, mean)
