"""Convolutional image encoder and decoder."""

import keras
import numpy as np
import tensorflow as tf

from networks.common import (
    Module, add_bias, batch_shape, get_act, reshape, to_float32)
from networks.distributions import UnitNormal


class PhaseConv2DTranspose(keras.layers.Conv2DTranspose):
  """Keras's stride-2 'valid' Conv2DTranspose, computed with stride-1 ops.

  Same weights, layout (k, k, out, in) and math, summed in another order:

      out[2u + a, 2v + b] = Σ_{p,q} x[u − p, v − q] · W[a + 2p, b + 2q]

  so each of the four output phases (a, b) is a stride-1 correlation of the
  padded input with a flipped sub-kernel W[a::2, b::2]. The phases run as
  one convolution with 4·out channels, then interleaved; at float32 the
  gradient is the transposed convolution's own (transpose_by_phases). A 1×1
  input is a plain matmul. Measured on a 2-core CPU (benchmarks/README.md),
  the matmul is 6× faster than the transposed-convolution kernel and the
  phases 1.1–2× faster for few output channels but slower for many, so
  `phases` picks them per layer; without it, other inputs use Keras's kernel
  (all inputs if `matmul` is False too).
  """

  def __init__(self, filters, kernel_size, strides=2, phases=True,
               matmul=True, **kwargs):
    super().__init__(filters, kernel_size, strides, padding='valid', **kwargs)
    self._use_phases = phases
    self._use_matmul = matmul
    if tuple(self.strides) != (2, 2) or self.kernel_size[0] != self.kernel_size[1]:
      raise ValueError('PhaseConv2DTranspose needs stride 2 and a square kernel')

  def call(self, inputs):
    kernel = tf.cast(self.kernel, self.compute_dtype)
    size, height, width = self.kernel_size[0], inputs.shape[1], inputs.shape[2]
    if height == 1 and width == 1 and self._use_matmul:
      matrix = tf.reshape(tf.transpose(kernel, [3, 0, 1, 2]), [inputs.shape[-1], -1])
      outputs = tf.reshape(
          tf.matmul(tf.reshape(inputs, [-1, inputs.shape[-1]]), matrix),
          [-1, size, size, self.filters])
    elif self._use_phases and self.compute_dtype == 'float32':
      relu = _is_relu(self.activation)
      outputs = transpose_by_phases(
          inputs, kernel, tf.convert_to_tensor(self.bias), relu)
      return outputs if relu else self.activation(outputs)
    elif self._use_phases:
      outputs = crop(
          interleave(convolve_phases(inputs, kernel)), height, width, size)
    else:
      outputs = keras.ops.conv_transpose(
          inputs, kernel, strides=list(self.strides), padding=self.padding,
          output_padding=self.output_padding,
          dilation_rate=self.dilation_rate, data_format=self.data_format)
    outputs = add_bias(outputs, tf.cast(self.bias, self.compute_dtype))
    return self.activation(outputs) if self.activation else outputs


def transpose_by_phases(inputs, kernel, bias, relu=False):
  """Stride-2 'valid' transposed convolution plus bias, then relu if
  `relu`, float32.

  Forward by phases (PhaseConv2DTranspose), the bias and relu fused into
  their convolution. The gradient is the transposed convolution's own, of
  dy masked by relu: dx = conv2d(dy, W, stride 2), dW =
  Conv2DBackpropFilter(dy, x) and db = Σ dy (`bias_gradient`), rather than
  the gradients of the phases and their interleave: for 3 output channels
  those kernels are 1.5× slower.
  """
  scope = _gradient_scope()

  @tf.custom_gradient
  def forward(inputs, kernel, bias):
    size, height, width = kernel.shape[0], inputs.shape[1], inputs.shape[2]
    phases = tf.nn.bias_add(convolve_phases(inputs, kernel), tf.tile(bias, [4]))
    phases = tf.nn.relu(phases) if relu else phases
    outputs = crop(interleave(phases), height, width, size)

    def grad(dy):
      with tf.name_scope(scope):
        if relu:
          dy = tf.raw_ops.ReluGrad(gradients=dy, features=outputs)
        strides = [1, 2, 2, 1]
        dx = tf.nn.conv2d(dy, kernel, strides, 'VALID')
        dkernel = tf.raw_ops.Conv2DBackpropFilter(
            input=dy, filter_sizes=tf.shape(kernel), out_backprop=inputs,
            strides=strides, padding='VALID')
        return dx, dkernel, bias_gradient(dy)
    return outputs, grad
  return forward(inputs, kernel, bias)


def _is_relu(activation):
  """Whether a Keras layer's `activation` is relu, which the custom
  gradients below fuse and mask themselves."""
  return activation in (tf.nn.relu, keras.activations.relu)


def _gradient_scope():
  """The absolute name scope for a custom gradient's ops, under the
  layer's as the tape's own are, so that profiles file them there."""
  return f'gradient_tape/{tf.get_current_name_scope()}/'


def bias_gradient(dy):
  """Σ dy over all axes but the last (channels). With 8 or more channels
  BiasAddGrad, Keras's own op; with fewer, that op and reduce_sum run 3×
  slower than a matmul: ones (1, n·h) · dy (n·h, w·c), then Σ over w."""
  channels = dy.shape[-1]
  if channels >= 8:
    return tf.raw_ops.BiasAddGrad(out_backprop=dy)
  rows = tf.reshape(dy, [-1, dy.shape[-2] * channels])
  ones = tf.ones([1, tf.shape(rows)[0]], dy.dtype)
  return tf.reduce_sum(tf.reshape(tf.matmul(ones, rows), [-1, channels]), 0)


def phase_kernel(kernel):
  """The (k, k, out, in) kernel → the (t, t, in, 4·out) kernel of its four
  phases, t = ⌈k/2⌉: phase (a, b) takes W[a::2, b::2], flipped."""
  size, _, filters, _ = kernel.shape
  even = size + size % 2
  taps = even // 2
  kernel = tf.pad(kernel, [[0, even - size], [0, even - size], [0, 0], [0, 0]])
  kernel = tf.reshape(kernel, [taps, 2, taps, 2, filters, -1])
  kernel = tf.reverse(kernel, [0, 2])
  kernel = tf.transpose(kernel, [0, 2, 5, 1, 3, 4])
  return tf.reshape(kernel, [taps, taps, -1, 4 * filters])


def convolve_phases(inputs, kernel):
  """The four phases of the transposed convolution, (n, h', w', 4·out)
  before they interleave: the padded inputs correlated with phase_kernel."""
  kernel = phase_kernel(kernel)
  pad = kernel.shape[0] - 1
  padded = tf.pad(inputs, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
  return tf.nn.conv2d(padded, kernel, 1, 'VALID')


def interleave(phases):
  """(n, h, w, 2·2·c) phases → (n, 2h, 2w, c), as depth_to_space(·, 2)
  does; a reshape and transpose, faster on CPUs than that op's kernel."""
  _, height, width, channels = phases.shape
  filters = channels // 4
  phases = tf.reshape(phases, [-1, height, width, 2, 2, filters])
  phases = tf.transpose(phases, [0, 1, 3, 2, 4, 5])
  return tf.reshape(phases, [-1, 2 * height, 2 * width, filters])


def crop(outputs, height, width, size):
  """Cuts an odd kernel's extra row and column off the interleaved phases."""
  out_height, out_width = 2 * (height - 1) + size, 2 * (width - 1) + size
  if outputs.shape[1:3] == (out_height, out_width):
    return outputs
  return outputs[:, :out_height, :out_width]


class Conv2D(keras.layers.Conv2D):
  """Keras's 'valid' Conv2D, whose bias gradient sums in float32 (`add_bias`)
  when it computes in 16 bits; the same layer and weights in float32, there
  by `conv_by_patches` if `patches`."""

  def __init__(self, filters, kernel_size, strides, patches=False, **kwargs):
    super().__init__(filters, kernel_size, strides, padding='valid', **kwargs)
    self._use_patches = patches

  def call(self, inputs):
    if self.compute_dtype == 'float32' and self._use_patches:
      relu = _is_relu(self.activation)
      outputs = conv_by_patches(
          inputs, tf.convert_to_tensor(self.kernel),
          tf.convert_to_tensor(self.bias), self.strides[0], relu)
      return outputs if relu else self.activation(outputs)
    if self.compute_dtype == 'float32':
      return super().call(inputs)
    outputs = add_bias(self.convolution_op(inputs, self.kernel), self.bias)
    return self.activation(outputs) if self.activation else outputs


def conv_by_patches(inputs, kernel, bias, stride, relu=False):
  """'valid' convolution plus bias, then relu if `relu`, as a matmul:

      y[n, i, j] = patches(x)[n, i, j] · reshape(W, (k·k·in, out)) + b

  with patches(x)[n, i, j] the k×k×in input window of output (i, j). For
  a layer with few output positions (the encoder's last: 2×2) the
  convolution kernels of oneDNN reach 40–60% of its matmul's rate. The
  gradient: dW = patchesᵀ · dy, db = Σ dy, dx = Conv2DBackpropInput(dy).
  """
  scope = _gradient_scope()
  size = kernel.shape[0]

  @tf.custom_gradient
  def forward(inputs, kernel, bias):
    patches = tf.image.extract_patches(
        inputs, [1, size, size, 1], [1, stride, stride, 1], [1, 1, 1, 1],
        'VALID')
    shape = tf.concat([tf.shape(patches)[:3], [kernel.shape[-1]]], 0)
    rows = tf.reshape(patches, [-1, patches.shape[-1]])
    outputs = tf.nn.bias_add(
        tf.matmul(rows, tf.reshape(kernel, [-1, kernel.shape[-1]])), bias)
    outputs = tf.nn.relu(outputs) if relu else outputs

    def grad(dy):
      with tf.name_scope(scope):
        dy = tf.reshape(dy, tf.shape(outputs))
        if relu:
          dy = tf.raw_ops.ReluGrad(gradients=dy, features=outputs)
        dkernel = tf.matmul(rows, dy, transpose_a=True)
        dx = tf.raw_ops.Conv2DBackpropInput(
            input_sizes=tf.shape(inputs), filter=kernel,
            out_backprop=tf.reshape(dy, shape),
            strides=[1, stride, stride, 1], padding='VALID')
        return (dx, tf.reshape(dkernel, tf.shape(kernel)),
                tf.raw_ops.BiasAddGrad(out_backprop=dy))
    return tf.reshape(outputs, shape), grad
  return forward(inputs, kernel, bias)


class ConvEncoder(Module):
  """Four stride-2 4×4 convolutions with depth·(1, 2, 4, 8) filters.

  (…, 64, 64, 3) images → (…, 32·depth) embeddings; a training batch runs
  as two halves (`halves`). `keras_kernels`: every layer by Keras's own
  convolution, the original's ops (benchmarks count FLOPs on those).
  """

  def __init__(self, depth=32, act='relu', image_shape=(64, 64, 3),
               dtype=None, name='encoder', keras_kernels=False):
    super().__init__(name, dtype)
    self._image_shape = tuple(image_shape)
    act = get_act(act)
    shape = (None,) + self._image_shape
    for index, mult in enumerate((1, 2, 4, 8)):
      layer = Conv2D(
          mult * depth, 4, 2, patches=(index == 3 and not keras_kernels),
          activation=act,
          dtype=self.dtype_policy, name=f'h{index + 1}')
      self.add(f'h{index + 1}', layer, shape)
      shape = layer.compute_output_shape(shape)
    self.embed_size = int(np.prod(shape[1:]))
    self.finish()

  def call(self, image):
    leading = batch_shape(image, 3)
    x = tf.reshape(image, (-1,) + self._image_shape)
    parts = [self._convolve(part) for part in halves(x)]
    x = parts[0] if len(parts) == 1 else tf.concat(parts, 0)
    return to_float32(reshape(x, leading, [self.embed_size]))

  def _convolve(self, x):
    for layer in self.named_layers.values():
      x = layer(x)
    return x


def halves(x, least=64):
  """[x] split in two along its first axis when that has `least` or more
  rows, else [x]. Independent halves run at once on two inter-op threads:
  with one thread per op (devices.choose_threads) a training batch's
  encoder would otherwise leave one of two cores idle for ~80 ms of a
  0.59 s update (--configs small)."""
  rows = x.shape[0]
  if rows is None or rows < least:
    return [x]
  return tf.split(x, [rows // 2, rows - rows // 2], 0)


class ConvDecoder(Module):
  """Dense(32·depth) and four transposed convolutions back to an image.

  (…, feat_size) features → UnitNormal(mean, 3), that is
  Independent(Normal(mean, 1), 3), over (…, 64, 64, 3) images.
  `keras_kernels`: every layer by Keras's own transposed convolution.
  """

  def __init__(self, feat_size, depth=32, act='relu', shape=(64, 64, 3),
               dtype=None, name='decoder', keras_kernels=False):
    super().__init__(name, dtype)
    self._shape = tuple(shape)
    self._depth = depth
    act = get_act(act)
    self.dense('h1', 32 * depth, feat_size)
    specs = [(4 * depth, 5, act), (2 * depth, 5, act), (depth, 6, act),
             (shape[-1], 6, None)]
    size = (None, 1, 1, 32 * depth)
    float32 = self.dtype_policy.compute_dtype == 'float32'
    for index, (filters, kernel, activation) in enumerate(specs):
      # Phases for the last layer, and at float32 for every even kernel
      # (an odd one pads its phases to the next even size: 1.44× the work).
      phases = index == len(specs) - 1 or (float32 and kernel % 2 == 0)
      layer = PhaseConv2DTranspose(
          filters, kernel, 2, phases=phases and not keras_kernels,
          matmul=not keras_kernels, activation=activation,
          dtype=self.dtype_policy, name=f'h{index + 2}')
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
    return UnitNormal(mean, len(self._shape))
