"""Distributions the original builds on top of TFP."""

import tensorflow as tf
import tensorflow_probability as tfp

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


class SampleDist:
  """Estimates mean, mode and entropy of `dist` from `samples` samples.

  mean = average of the samples; mode = the sample of highest log-prob,
  chosen per batch element; entropy = −average log-prob of the samples.
  """

  def __init__(self, dist, samples=100):
    self._dist = dist
    self._samples = samples

  @property
  def distribution(self):
    return self._dist

  def sample(self, sample_shape=(), seed=None):
    return self._dist.sample(sample_shape, seed=seed)

  def log_prob(self, value):
    return self._dist.log_prob(value)

  def mean(self):
    return tf.reduce_mean(self._dist.sample(self._samples), 0)

  def mode(self):
    sample = self._dist.sample(self._samples)
    logprob = self._dist.log_prob(sample)
    best = tf.one_hot(
        tf.argmax(logprob, 0), self._samples, axis=0, dtype=sample.dtype)
    event_rank = sample.shape.rank - logprob.shape.rank
    best = tf.reshape(best, best.shape + [1] * event_rank)
    return tf.reduce_sum(best * sample, 0)

  def entropy(self):
    sample = self._dist.sample(self._samples)
    return -tf.reduce_mean(self._dist.log_prob(sample), 0)


class OneHotDist:
  """One-hot categorical whose samples pass straight-through gradients.

  sample = one_hot + probs − stop_gradient(probs): the value is one-hot, the
  gradient is that of the class probabilities.
  """

  def __init__(self, logits=None, probs=None, dtype=tf.float32):
    self._dist = tfd.OneHotCategorical(logits=logits, probs=probs, dtype=dtype)
    self._dtype = dtype

  @property
  def distribution(self):
    return self._dist

  def probs_parameter(self):
    return self._dist.probs_parameter()

  def sample(self, sample_shape=(), seed=None):
    sample = tf.cast(self._dist.sample(sample_shape, seed=seed), self._dtype)
    probs = tf.cast(self._dist.probs_parameter(), self._dtype)
    return sample + probs - tf.stop_gradient(probs)

  def mode(self):
    logits = self._dist.logits_parameter()
    return tf.one_hot(tf.argmax(logits, -1), logits.shape[-1], dtype=self._dtype)

  def mean(self):
    return self.probs_parameter()

  def log_prob(self, value):
    return self._dist.log_prob(value)

  def entropy(self):
    return self._dist.entropy()
