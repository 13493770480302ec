"""Convolutional image encoder and decoder."""

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from networks.common import Module, batch_shape, get_act, reshape, to_float32

tfd = tfp.distributions


class ConvEncoder(Module):
  """Four stride-2 4×4 convolutions with depth·(1, 2, 4, 8) filters.

  (…, 64, 64, 3) images → (…, 32·depth) embeddings.
  """

  def __init__(self, depth=32, act='relu', image_shape=(64, 64, 3),
               dtype=None, name='encoder'):
    super().__init__(name, dtype)
    self._image_shape = tuple(image_shape)
    act = get_act(act)
    shape = (None,) + self._image_shape
    for index, mult in enumerate((1, 2, 4, 8)):
      layer = keras.layers.Conv2D(
          mult * depth, 4, 2, activation=act, dtype=self.dtype_policy,
          name=f'h{index + 1}')
      self.add(f'h{index + 1}', layer, shape)
      shape = layer.compute_output_shape(shape)
    self.embed_size = int(np.prod(shape[1:]))
    self.finish()

  def call(self, image):
    leading = batch_shape(image, 3)
    x = tf.reshape(image, (-1,) + self._image_shape)
    for layer in self.named_layers.values():
      x = layer(x)
    return to_float32(reshape(x, leading, [self.embed_size]))


class ConvDecoder(Module):
  """Dense(32·depth) and four transposed convolutions back to an image.

  (…, feat_size) features → Independent(Normal(mean, 1), 3) over
  (…, 64, 64, 3) images.
  """

  def __init__(self, feat_size, depth=32, act='relu', shape=(64, 64, 3),
               dtype=None, name='decoder'):
    super().__init__(name, dtype)
    self._shape = tuple(shape)
    self._depth = depth
    act = get_act(act)
    self.dense('h1', 32 * depth, feat_size)
    specs = [(4 * depth, 5, act), (2 * depth, 5, act), (depth, 6, act),
             (shape[-1], 6, None)]
    size = (None, 1, 1, 32 * depth)
    for index, (filters, kernel, activation) in enumerate(specs):
      layer = keras.layers.Conv2DTranspose(
          filters, kernel, 2, activation=activation, dtype=self.dtype_policy,
          name=f'h{index + 2}')
      self.add(f'h{index + 2}', layer, size)
      size = layer.compute_output_shape(size)
    if tuple(size[1:]) != self._shape:
      raise ValueError(f'decoder produces {size[1:]}, not {self._shape}')
    self.finish()

  def call(self, features):
    leading = batch_shape(features, 1)
    layers = list(self.named_layers.values())
    x = layers[0](features)
    x = tf.reshape(x, (-1, 1, 1, 32 * self._depth))
    for layer in layers[1:]:
      x = layer(x)
    mean = reshape(to_float32(x), leading, self._shape)
    return tfd.Independent(tfd.Normal(mean, 1.0), len(self._shape))
