"""Synthetic inputs of the right shapes, for benchmarks, tests and diffs:
a random training batch and recorded noise for every random draw of one
update (networks/noise.py)."""

import numpy as np


def random_batch(config, action_size, seed=0):
  """A (batch_size, batch_length) batch: uniform uint8 images, uniform
  actions in [−1, 1], standard-normal rewards, discounts 1."""
  rng = np.random.default_rng(seed)
  shape = (config.batch_size, config.batch_length)
  return {
      'image': rng.integers(0, 256, shape + (64, 64, 3), dtype=np.uint8),
      'action': rng.uniform(-1, 1, shape + (action_size,)).astype(np.float32),
      'reward': rng.normal(size=shape).astype(np.float32),
      'discount': np.ones(shape, np.float32),
  }


def recorded_noise(config, action_size, seed=0):
  """Standard-normal noise for models.Dreamer.gradients/train, independent
  per element: obs_prior and post (B, T, stoch), imag (H, N, stoch) and
  actor (H, N, A), with N = B·T imagination starts (B·(T − 1) with pcont)."""
  rng = np.random.default_rng(seed)
  b, t, s, h = (config.batch_size, config.batch_length, config.stoch_size,
                config.horizon)
  normal = lambda *shape: rng.normal(size=shape).astype(np.float32)
  n = b * (t - 1 if config.pcont else t)
  return {'obs_prior': normal(b, t, s), 'post': normal(b, t, s),
          'imag': normal(h, n, s), 'actor': normal(h, n, action_size)}
