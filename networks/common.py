"""Pieces shared by the networks."""

import keras
import tensorflow as tf

from config import CHOICES

# The activations --dense_act and --cnn_act allow, by their tf.nn names.
ACTIVATIONS = {name: getattr(tf.nn, name) for name in CHOICES['dense_act']}


def get_act(name):
  """The activation function called `name` (one of ACTIVATIONS)."""
  if name not in ACTIVATIONS:
    raise ValueError(
        f'unknown activation {name!r}; allowed: {", ".join(ACTIVATIONS)}')
  return ACTIVATIONS[name]


def add_bias(x, bias):
  """x + bias over the last axis; the bias gradient Σ dy sums in float32.

  TensorFlow's BiasAdd, which Keras layers use, sums the bias gradient in
  the input's dtype on CPUs: over unit gradients it stalls at 2,048 in
  float16 and at 256 in bfloat16, whatever the number of positions. At
  16-bit compute the sum here runs in float32 and is then cast back; float32
  inputs take tf.nn.bias_add unchanged (it fuses with the matmul).
  """
  bias = tf.cast(bias, x.dtype)  # A tensor: the variable is read out here.
  if x.dtype == tf.float32:
    return tf.nn.bias_add(x, bias)
  return _add_bias_wide(x, bias)


@tf.custom_gradient
def _add_bias_wide(x, bias):
  def grad(dy):
    axes = list(range(dy.shape.rank - 1))
    wide = tf.reduce_sum(tf.cast(dy, tf.float32), axes)
    return dy, tf.cast(wide, bias.dtype)
  return tf.nn.bias_add(x, bias), grad


class Dense(keras.layers.Dense):
  """Keras's Dense, whose bias gradient sums in float32 (`add_bias`) when
  it computes in 16 bits; the same layer and weights in float32."""

  def call(self, inputs):
    if self.compute_dtype == 'float32':
      return super().call(inputs)
    return self.activation(
        add_bias(keras.ops.matmul(inputs, self.kernel), self.bias))


def built(layer, input_shape):
  """Builds a Keras layer for inputs of `input_shape` and returns it."""
  layer.build(input_shape)
  return layer


def to_float32(x):
  return tf.cast(x, tf.float32)


class Module(keras.layers.Layer):
  """A Keras layer whose sublayers are built at construction.

  Subclasses create and build their layers in `__init__`, so that parameter
  counts are known before the first call, and list them by the original's
  layer names in `self.named_layers` (see weights.py).
  """

  def __init__(self, name, dtype=None):
    super().__init__(name=name, dtype=dtype)
    self.named_layers = {}

  def add(self, name, layer, input_shape):
    self.named_layers[name] = built(layer, input_shape)
    return layer

  def dense(self, name, units, inputs, act=None):
    layer = Dense(units, activation=act, dtype=self.dtype_policy, name=name)
    return self.add(name, layer, (None, inputs))

  def finish(self):
    self.built = True


def batch_shape(x, event_ndims):
  """The leading shape of `x` without its last `event_ndims` axes.

  A list of ints when static, else a tensor.
  """
  rank = x.shape.rank
  static = x.shape[:rank - event_ndims]
  if static.is_fully_defined():
    return static.as_list()
  return tf.shape(x)[:rank - event_ndims]


def apply_flat(layers, x):
  """Runs `layers` on `x` (…, D) as one 2-D batch; restores the leading axes.

  Keras Dense on a rank-3 input runs a tensordot, which keeps TensorFlow from
  fusing the matmul, bias and activation into one kernel; a 2-D input fuses.
  """
  x = tf.convert_to_tensor(x)
  leading = batch_shape(x, 1)
  x = tf.reshape(x, [-1, x.shape[-1]])
  for layer in layers:
    x = layer(x)
  return reshape(x, leading, [x.shape[-1]])


def reshape(x, leading, tail):
  """Reshapes `x` to `leading + tail` (`leading` from batch_shape)."""
  if isinstance(leading, list):
    return tf.reshape(x, leading + list(tail))
  return tf.reshape(x, tf.concat([leading, tail], 0))
