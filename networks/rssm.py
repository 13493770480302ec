"""The recurrent state-space model (RSSM)."""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

import tools
from networks import noise
from networks.common import Module, add_bias, to_float32

tfd = tfp.distributions


class RSSM(Module):
  """Deterministic GRU state `deter` plus a Gaussian latent `stoch`.

  A state is a dict of float32 tensors: mean, std, stoch (…, stoch_size)
  and deter (…, deter_size). `feat = concat(stoch, deter)`. Latent samples
  draw `latent_noise` noise (shared across the batch, as in the original,
  or independent) unless the caller passes it (networks/noise.py).
  """

  def __init__(self, action_size, embed_size, stoch=30, deter=200, hidden=200,
               latent_noise='shared', dtype=None, name='rssm'):
    super().__init__(name, dtype)
    if latent_noise not in noise.LATENT_NOISE:
      raise ValueError(
          f'unknown latent_noise {latent_noise!r}; allowed: '
          f'{", ".join(noise.LATENT_NOISE)}')
    self._noise = latent_noise
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

  def observe(self, embed, action, state=None, eps=None, is_first=None):
    """Posterior and prior states for (B, T, …) embeddings and actions.

    `action[:, t]` is the action that led to the frame of `embed[:, t]`.
    `eps`: None, or some of {'prior', 'post'}: standard-normal noise (B or
    1, T, stoch) of the prior and posterior samples; what is not given is
    drawn (networks/noise.py). `is_first`: None, or (B, T) 1 where an
    episode starts: the state before that step is zeroed.
    """
    if state is None:
      state = self.initial(embed.shape[0] or tf.shape(embed)[0])
    inputs = {'action': _swap(action), 'embed': _swap(embed)}
    inputs.update({k: _swap(v) for k, v in (eps or {}).items()})
    if is_first is not None:
      inputs['keep'] = _swap(1 - tf.cast(is_first, tf.float32)[..., None])
    post, prior = tools.static_scan(
        lambda prev, inp: self.obs_step(
            _reset(prev[0], inp.get('keep')), inp['action'], inp['embed'],
            (inp.get('prior'), inp.get('post'))),
        inputs, (state, state))
    return _swap(post), _swap(prior)

  def imagine(self, action, state=None, eps=None):
    """Prior states for (B, T, A) actions, open loop from `state`.

    `eps`: None, or standard-normal noise (B or 1, T, stoch).
    """
    if state is None:
      state = self.initial(action.shape[0] or tf.shape(action)[0])
    inputs = {'action': _swap(action)}
    if eps is not None:
      inputs['eps'] = _swap(eps)  # Broadcast over the batch if it has 1.
    return _swap(tools.static_scan(
        lambda prev, inp: self.img_step(prev, inp['action'], inp.get('eps')),
        inputs, state))

  def get_feat(self, state):
    return tf.concat([state['stoch'], state['deter']], -1)

  def get_dist(self, state):
    return tfd.MultivariateNormalDiag(state['mean'], state['std'])

  def obs_step(self, prev_state, prev_action, embed, eps=None):
    """Prior and posterior; `eps` is None or (prior noise, posterior noise)."""
    eps_prior, eps_post = (None, None) if eps is None else eps
    prior = self.img_step(prev_state, prev_action, eps_prior)
    x = tf.concat([prior['deter'], embed], -1)
    x = self.named_layers['obs1'](x)
    x = self.named_layers['obs2'](x)
    post = self._latent(x, eps_post)
    post['deter'] = prior['deter']
    return post, prior

  def img_step(self, prev_state, prev_action, eps=None):
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
    prior = self._latent(x, eps)
    prior['deter'] = deter
    return prior

  def _latent(self, x, eps):
    """mean, std = split(x); stoch = ε · std + mean (the original's order)."""
    mean, std = tf.split(to_float32(x), 2, -1)
    std = tf.nn.softplus(std) + 0.1
    if eps is None:
      eps = noise.normal(noise.latent_shape(mean, self._noise))
    return {'mean': mean, 'std': std, 'stoch': eps * std + mean}


def _reset(state, keep):
  """`state` times `keep` (B, 1): zeros where an episode starts."""
  if keep is None:
    return state
  return {k: v * tf.cast(keep, v.dtype) for k, v in state.items()}


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
  x_z, x_r, x_c = tf.split(add_bias(tf.matmul(x, kernel), bias[0]), 3, -1)
  h_z, h_r, h_c = tf.split(
      add_bias(tf.matmul(h, recurrent_kernel), bias[1]), 3, -1)
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
