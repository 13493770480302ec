"""The recurrent state-space model (RSSM)."""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

import tools
from networks.common import Module, to_float32

tfd = tfp.distributions


class RSSM(Module):
  """Deterministic GRU state `deter` plus a Gaussian latent `stoch`.

  A state is a dict of float32 tensors: mean, std, stoch (…, stoch_size)
  and deter (…, deter_size). `feat = concat(stoch, deter)`.
  """

  def __init__(self, action_size, embed_size, stoch=30, deter=200, hidden=200,
               dtype=None, name='rssm'):
    super().__init__(name, dtype)
    self._stoch_size = stoch
    self._deter_size = deter
    act = tf.nn.elu
    self.dense('img1', hidden, stoch + action_size, act)
    self._cell = self.add(
        'gru', keras.layers.GRUCell(deter, dtype=self.dtype_policy, name='gru'),
        (None, hidden))
    self.dense('img2', hidden, deter, act)
    self.dense('img3', 2 * stoch, hidden)
    self.dense('obs1', hidden, deter + embed_size, act)
    self.dense('obs2', 2 * stoch, hidden)
    self.feat_size = stoch + deter
    self.finish()

  def initial(self, batch_size):
    zeros = lambda size: tf.zeros([batch_size, size], tf.float32)
    return dict(
        mean=zeros(self._stoch_size), std=zeros(self._stoch_size),
        stoch=zeros(self._stoch_size), deter=zeros(self._deter_size))

  def observe(self, embed, action, state=None):
    """Posterior and prior states for (B, T, …) embeddings and actions.

    `action[:, t]` is the action that led to the frame of `embed[:, t]`.
    """
    if state is None:
      state = self.initial(embed.shape[0] or tf.shape(embed)[0])
    embed, action = _swap(embed), _swap(action)
    post, prior = tools.static_scan(
        lambda prev, inputs: self.obs_step(prev[0], *inputs),
        (action, embed), (state, state))
    return _swap(post), _swap(prior)

  def imagine(self, action, state=None):
    """Prior states for (B, T, A) actions, open loop from `state`."""
    if state is None:
      state = self.initial(action.shape[0] or tf.shape(action)[0])
    return _swap(tools.static_scan(self.img_step, _swap(action), state))

  def get_feat(self, state):
    return tf.concat([state['stoch'], state['deter']], -1)

  def get_dist(self, state):
    return tfd.MultivariateNormalDiag(state['mean'], state['std'])

  def obs_step(self, prev_state, prev_action, embed):
    prior = self.img_step(prev_state, prev_action)
    x = tf.concat([prior['deter'], embed], -1)
    x = self.named_layers['obs1'](x)
    x = self.named_layers['obs2'](x)
    post = self._latent(x)
    post['deter'] = prior['deter']
    return post, prior

  def img_step(self, prev_state, prev_action):
    x = tf.concat([prev_state['stoch'], tf.cast(prev_action, tf.float32)], -1)
    x = self.named_layers['img1'](x)
    deter = tf.cast(prev_state['deter'], self.compute_dtype)
    cast = lambda v: tf.cast(v, self.compute_dtype)
    x = gru_step(
        x, deter, cast(self._cell.kernel), cast(self._cell.recurrent_kernel),
        cast(self._cell.bias))
    deter = to_float32(x)
    x = self.named_layers['img2'](x)
    x = self.named_layers['img3'](x)
    prior = self._latent(x)
    prior['deter'] = deter
    return prior

  def _latent(self, x):
    mean, std = tf.split(to_float32(x), 2, -1)
    std = tf.nn.softplus(std) + 0.1
    stoch = self.get_dist({'mean': mean, 'std': std}).sample()
    return {'mean': mean, 'std': std, 'stoch': stoch}


def gru_step(x, h, kernel, recurrent_kernel, bias):
  """Keras's GRUCell (reset_after, the default) on its own weights.

      z, r, c = split(x·kernel + bias[0]);  z', r', c' = split(h·rec + bias[1])
      z = σ(z + z');  r = σ(r + r');  h̃ = tanh(c + r ⊙ c')
      h_new = z ⊙ h + (1 − z) ⊙ h̃

  The same math as the cell's call, with tf.split where the cell slices,
  whose gradients are cheaper (measured in benchmarks/README.md).
  """
  units = h.shape[-1]
  if kernel.shape[-1] != 3 * units or bias.shape[0] != 2:
    raise ValueError(
        f'gru_step needs a reset_after GRU kernel (…, {3 * units}) and bias '
        f'(2, {3 * units}), got {kernel.shape} and {bias.shape}')
  x_z, x_r, x_c = tf.split(tf.matmul(x, kernel) + bias[0], 3, -1)
  h_z, h_r, h_c = tf.split(tf.matmul(h, recurrent_kernel) + bias[1], 3, -1)
  z = tf.sigmoid(x_z + h_z)
  r = tf.sigmoid(x_r + h_r)
  candidate = tf.tanh(x_c + r * h_c)
  return z * h + (1 - z) * candidate


def _swap(x):
  """Swaps the first two axes of every tensor in `x` (batch ↔ time)."""
  def swap(v):
    v = tf.convert_to_tensor(v)
    return tf.transpose(v, [1, 0] + list(range(2, v.shape.rank)))
  return tf.nest.map_structure(swap, x)
