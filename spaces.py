"""What an environment's observations and actions look like (`Space`),
and the arrays it serves: shared by wrappers.py and gym_env.py."""

import collections

import numpy as np


class Space(collections.namedtuple(
    'Space', 'shape dtype low high discrete', defaults=(False,))):
  """Shape, dtype and bounds of an observation or action (gym's Box); a
  `discrete` action is a one-hot vector over shape[-1] choices."""

  __slots__ = ()

  def sample(self, rng):
    """A uniform sample (a uniform one-hot if discrete), from a numpy
    Generator."""
    if self.discrete:
      return np.eye(self.shape[-1], dtype=self.dtype)[
          rng.integers(self.shape[-1])]
    return rng.uniform(self.low, self.high, self.shape).astype(self.dtype)


def state_array(value):
  """A state observation as float32 with at least one axis (scalars (1,))."""
  value = np.asarray(value, np.float32)
  return value.reshape((1,)) if value.ndim == 0 else value


def resize_frame(image, size):
  """A uint8 RGB frame resized bilinearly to `size` (height, width)."""
  from PIL import Image
  return np.asarray(Image.fromarray(image).resize(
      tuple(size)[::-1], Image.BILINEAR), np.uint8)


def state_space(shape):
  """An unbounded float32 array; a scalar is served with shape (1,)."""
  shape = tuple(shape) or (1,)
  return Space(shape, np.dtype(np.float32),
               np.full(shape, -np.inf, np.float32),
               np.full(shape, np.inf, np.float32))


def image_space(size):
  """A uint8 RGB frame of `size` (height, width)."""
  shape = tuple(size) + (3,)
  return Space(shape, np.dtype(np.uint8), np.zeros(shape, np.uint8),
               np.full(shape, 255, np.uint8))
