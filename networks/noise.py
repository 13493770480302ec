"""The noise seam: every random draw of the train step and the policy.

Samples are written as deterministic functions of standard noise: the RSSM's
latent `stoch = ε · std + mean`, the actor's `action = tanh(ε · scale + loc)`
(and its 100-sample mode and entropy estimates), the one-hot actor's
Gumbel-max `argmax(logits − log(−log u))`. Each such function takes its noise
as an argument `eps`; when that is None the noise is drawn here, with
TensorFlow's random ops (seeded by the run's seed). A test hands in recorded
noise instead, of the full shape or of a shape that broadcasts to it.

Latent noise is shared across the batch by default, as in the original: its
patched `MultivariateNormalDiag.sample` draws one ε of shape (stoch,) per call
and broadcasts it, so every sequence at an observe step, and every imagined
trajectory at an imagination step, gets the same ε. `independent` draws one
ε per batch element.
"""

import numpy as np
import tensorflow as tf

from config import CHOICES

LATENT_NOISE = CHOICES['latent_noise']
_TINY = float(np.finfo(np.float32).tiny)


def normal(shape):
  """Standard-normal float32 noise of `shape`."""
  return tf.random.normal(shape, dtype=tf.float32)


def uniform(shape):
  """Uniform float32 noise in (0, 1) of `shape` (never exactly 0)."""
  return tf.random.uniform(shape, _TINY, 1.0, dtype=tf.float32)


def latent_shape(mean, mode):
  """The noise shape of latent samples shaped like `mean` (…, stoch).

  shared: (stoch,), one ε broadcast over the batch (the original's draw);
  independent: the shape of `mean`.
  """
  if mode == 'shared':
    return mean.shape[-1:]
  return tf.shape(mean)
