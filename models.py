"""World model and actor-critic: losses, optimizers and the train step."""

import contextlib
import re

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

import networks
import tools
from config import CHOICES

tfd = tfp.distributions

# Keras dtype policy of each --precision (config.CHOICES['precision']).
PRECISIONS = {'16': 'mixed_float16', '32': 'float32', 'bf16': 'mixed_bfloat16'}
# How recorded noise splits over replicas: its batch axis.
NOISE_AXES = {'obs_prior': 0, 'post': 0, 'imag': 1, 'actor': 1}


def dtype_policy(precision):
  """The Keras dtype policy for a `precision` config value (16, 32, bf16)."""
  key = str(precision)
  if key not in PRECISIONS:
    raise ValueError(
        f'unknown precision {precision!r}; allowed: {", ".join(PRECISIONS)}')
  return PRECISIONS[key]


# --- Losses -----------------------------------------------------------------

def preprocess(data, clip_rewards='none', proprio=None):
  """image uint8 → x / 255 − 0.5 (float32); reward through clip_rewards;
  the arrays of `proprio` ({key: event shape}), flattened after their batch
  axes and joined in its order, → `proprio` (float32)."""
  if clip_rewards not in CHOICES['clip_rewards']:
    raise ValueError(
        f'unknown clip_rewards {clip_rewards!r}; allowed: '
        f'{", ".join(CHOICES["clip_rewards"])}')
  data = dict(data)
  if 'image' in data:
    data['image'] = tf.cast(data['image'], tf.float32) / 255.0 - 0.5
  if proprio:
    parts = []
    for key, shape in proprio.items():
      x = tf.cast(data.pop(key), tf.float32)
      leading = tf.shape(x)[:x.shape.rank - len(shape)]
      parts.append(tf.reshape(x, tf.concat([leading, [int(np.prod(shape))]], 0)))
    data['proprio'] = tf.concat(parts, -1)
  if 'reward' in data:
    data['reward'] = tf.cast(data['reward'], tf.float32)
    if clip_rewards == 'tanh':
      data['reward'] = tf.tanh(data['reward'])
  return data


def kl_loss(post_dist, prior_dist, free_nats):
  """(kl, div): kl = mean over B, T of KL(post ‖ prior), div = max(kl, free_nats).

  Free nats are applied after averaging, as in the original.
  """
  kl = tf.reduce_mean(tfd.kl_divergence(post_dist, prior_dist))
  return kl, tf.maximum(kl, free_nats)


def discount_weights(pcont):
  """w = cumprod(concat([1], pcont[:−2])) over time axis 0, no gradient.

  For (H, N) discounts, the (H − 1, N) weights of the λ-returns: the
  probability of reaching each imagined step.
  """
  pcont.shape.with_rank_at_least(1)
  ones = tf.ones_like(pcont[:1])
  return tf.stop_gradient(tf.math.cumprod(tf.concat([ones, pcont[:-2]], 0), 0))


def actor_loss(returns, weights):
  """−mean(w · returns)."""
  returns.shape.assert_is_compatible_with(weights.shape)
  return -tf.reduce_mean(weights * returns)


def value_loss(value_dist, returns, weights):
  """−mean(w · log N(stop_gradient(returns); value, 1))."""
  returns.shape.assert_is_compatible_with(weights.shape)
  target = tf.stop_gradient(returns)
  return -tf.reduce_mean(weights * value_dist.log_prob(target))


# --- Optimizer --------------------------------------------------------------

class Optimizer:
  """Adam (β 0.9/0.999, ε 1e-7) with the original's clipping and decay.

  `gradients(tape, loss)` returns the gradients and their global norm before
  clipping; `apply(grads, norm)` takes one step from them. A step whose norm
  is not finite is skipped and counted in `skipped`, as the original's
  dynamic loss scaling does at every precision. Otherwise the gradients are
  clipped to global norm `clip` (not at all if 0), the variables whose name
  `OPTIMIZER/MODULE/LAYER/WEIGHT` (e.g. `model/encoder/h1/kernel`) matches
  `wd_pattern` are multiplied by (1 − wd), and Adam updates every variable,
  in the original's order. With `loss_scale` (float16), the loss is scaled
  dynamically: start 2^15, halved on a skipped step, doubled after 2000
  finite steps in a row.
  """

  def __init__(self, name, variables, lr, clip, wd=0.0, wd_pattern='.*',
               names=None, loss_scale=False):
    self.name = name
    self._variables = list(variables)
    self._clip = clip
    self._wd = wd
    self._opt = keras.optimizers.Adam(
        lr, beta_1=0.9, beta_2=0.999, epsilon=1e-7, name=f'{name}_adam')
    self._opt.build(self._variables)
    self.names = names or [getattr(v, 'path', v.name) for v in self._variables]
    self.decayed_names = [
        f'{name}/{n}' for n in self.names if re.search(wd_pattern, f'{name}/{n}')]
    self._decayed = [
        v for v, n in zip(self._variables, self.names)
        if f'{name}/{n}' in self.decayed_names]
    self.skipped = tf.Variable(0, trainable=False, dtype=tf.int64)
    self.loss_scale = None
    if loss_scale:
      self.loss_scale = tf.Variable(2.0 ** 15, trainable=False, dtype=tf.float32)
      self._good_steps = tf.Variable(0, trainable=False, dtype=tf.int64)

  @property
  def variables(self):
    return self._variables

  @property
  def state_variables(self):
    """Optimizer state to checkpoint (moments, step, skips, loss scale)."""
    extra = [self.skipped]
    if self.loss_scale is not None:
      extra += [self.loss_scale, self._good_steps]
    return list(self._opt.variables) + extra

  def __call__(self, tape, loss):
    """One step from `loss`; returns the gradient norm before clipping."""
    grads, norm = self.gradients(tape, loss)
    self.apply(grads, norm)
    return norm

  def gradients(self, tape, loss):
    """(gradients of `loss`, their global norm), loss scaling undone."""
    if self.loss_scale is None:
      grads = tape.gradient(loss, self._variables)
    else:
      with tape:
        loss = loss * self.loss_scale
      grads = tape.gradient(loss, self._variables)
      grads = [g / self.loss_scale for g in grads]
    return grads, tf.linalg.global_norm(grads)

  def apply(self, grads, norm):
    """Applies `grads` (global norm `norm`); 1.0 if skipped, else 0.0."""
    finite = tf.math.is_finite(norm)
    tf.cond(finite, lambda: self._step(grads, norm), lambda: tf.constant(False))
    self.skipped.assign_add(1 - tf.cast(finite, tf.int64))
    if self.loss_scale is not None:
      self._update_scale(finite)
    return 1.0 - tf.cast(finite, tf.float32)

  def _step(self, grads, norm):
    if self._clip:
      grads, _ = tf.clip_by_global_norm(grads, self._clip, use_norm=norm)
    if self._wd:
      for var in self._decayed:
        var.assign((1 - self._wd) * var)
    self._opt.apply_gradients(zip(grads, self._variables))
    return tf.constant(True)

  def _update_scale(self, finite):
    grow = tf.logical_and(finite, self._good_steps >= 1999)
    self.loss_scale.assign(tf.where(
        finite, tf.where(grow, 2 * self.loss_scale, self.loss_scale),
        self.loss_scale / 2))
    self._good_steps.assign(tf.where(
        tf.logical_and(finite, tf.logical_not(grow)),
        self._good_steps + 1, tf.zeros_like(self._good_steps)))


# --- The agent's networks and train step ------------------------------------

class Dreamer:
  """World model, actor and value with their optimizers and train step.

  `config` holds the keys of config.defaults(); `action_size` is the
  action dimension; `proprio` maps the state arrays that `--obs proprio` or
  `both` feeds to their shapes. `train(data)` takes a batch of (B, T)
  sequences with image uint8 (B, T, 64, 64, 3) (and the state arrays),
  action (B, T, A), reward and discount (B, T), applies one update of all
  three parts and returns the metrics; `gradients(data)` computes the same
  update without applying it. Both take recorded noise as an optional
  second argument (see `_gradients`). Under a tf.distribute `strategy`,
  `train` splits its batch (this worker's) over the replicas along the batch
  axis, averages their gradients and metrics and applies one update.
  `keras_kernels`: see build_modules.
  """

  def __init__(self, config, action_size, jit=None, proprio=None,
               strategy=None, keras_kernels=False):
    self._c = config
    self._action_size = action_size
    uses_proprio = config.obs in ('proprio', 'both')
    self._proprio = dict(sorted((proprio or {}).items())) if uses_proprio else {}
    self._strategy = strategy
    policy = dtype_policy(config.precision)
    size = sum(int(np.prod(shape)) for shape in self._proprio.values())
    with strategy.scope() if strategy else contextlib.nullcontext():
      self.modules = build_modules(
          config, action_size, policy, size, keras_kernels)
      for name, module in self.modules.items():
        setattr(self, name, module)
      model_names = [name for name in (
          'encoder', 'proprio_encoder', 'rssm', 'decoder', 'proprio_decoder',
          'reward', 'pcont') if name in self.modules]
      scale = policy == 'mixed_float16'
      self.model_opt = self._optimizer(
          'model', model_names, config.model_lr, scale)
      self.value_opt = self._optimizer(
          'value', ['value'], config.value_lr, scale)
      self.actor_opt = self._optimizer(
          'actor', ['actor'], config.actor_lr, scale)
    self.obs_keys = (['image'] if 'encoder' in self.modules else []) + (
        list(self._proprio) if 'proprio_encoder' in self.modules else [])
    jit = getattr(config, 'jit', False) if jit is None else jit
    if strategy is None:
      self.train = tf.function(self._train, jit_compile=bool(jit))
    else:
      self._replicated_train = tf.function(self._distributed_train)
      self.train = self._train_on_replicas
    self.gradients = tf.function(self._gradients)
    self.policy = tf.function(self._policy)
    self.openl = tf.function(self._openl)

  def _optimizer(self, name, module_names, lr, loss_scale):
    named = {}
    for module_name in module_names:
      named.update(networks.weights.module_weights(
          module_name, self.modules[module_name]))
    return Optimizer(
        name, named.values(), lr, self._c.grad_clip, self._c.weight_decay,
        self._c.weight_decay_pattern, names=list(named), loss_scale=loss_scale)

  @property
  def optimizers(self):
    return [self.model_opt, self.value_opt, self.actor_opt]

  def _train(self, data, noise=None):
    metrics, grads, _ = self._gradients(data, noise)
    for opt in self.optimizers:
      metrics[f'{opt.name}_nonfinite'] = opt.apply(
          grads[opt.name], metrics[f'{opt.name}_grad_norm'])
    return metrics

  def _train_on_replicas(self, data, noise=None):
    data = self._distribute(data, {key: 0 for key in data})
    if noise is not None:
      noise = self._distribute(noise, NOISE_AXES)
    return self._replicated_train(data, noise)

  def _distribute(self, values, axes):
    """Per-replica values: this worker's arrays split along `axes` into one
    equal part per local replica (an axis of size 1 is broadcast)."""
    local = len(self._strategy.extended.worker_devices)

    def part(context):
      index = context.replica_id_in_sync_group % local
      return {
          key: value if np.shape(value)[axes[key]] == 1 else np.split(
              np.asarray(value), local, axes[key])[index]
          for key, value in values.items()}
    return self._strategy.experimental_distribute_values_from_function(part)

  def _distributed_train(self, data, noise):
    """Every replica's gradients, averaged; one update of the mean.

    Each replica's loss is the mean over its part of the batch, so the
    mean of their gradients is the gradient of the whole batch's loss; its
    norm is clipped, as with one device.
    """
    strategy = self._strategy
    metrics, grads = strategy.run(
        lambda d, n: self._gradients(d, n)[:2], (data, noise))
    mean = lambda x: strategy.reduce(tf.distribute.ReduceOp.MEAN, x, None)
    metrics = {name: mean(value) for name, value in metrics.items()}
    for opt in self.optimizers:
      grad = [mean(g) for g in grads[opt.name]]
      norm = tf.linalg.global_norm(grad)
      metrics[f'{opt.name}_grad_norm'] = norm
      metrics[f'{opt.name}_nonfinite'] = opt.apply(grad, norm)
    return metrics

  def _gradients(self, data, noise=None):
    """One update's losses, metrics and gradients, without applying them.

    `noise`: None to draw every sample's noise (networks/noise.py), or some
    of the recorded standard-normal noise {'obs_prior', 'post': (B or 1, T,
    stoch) of the observe steps' prior and posterior samples; 'imag': (H, N
    or 1, stoch) and 'actor': (H, N, A) of the imagination steps}, with N
    the number of imagination starts. Returns (metrics, grads, outs):
    grads[optimizer name] lists the gradients in the order of its
    `variables` (`names`); outs holds intermediates to diff.
    """
    noise = noise or {}
    keys = self.obs_keys + ['action', 'reward', 'discount'] + (
        ['is_first'] if 'is_first' in data else [])
    data = preprocess(
        {k: data[k] for k in keys}, self._c.clip_rewards, self._proprio)
    with tf.GradientTape() as model_tape:
      model_loss, post, feat, metrics, outs = self.world_model_loss(
          data, {k: noise[v] for k, v in (('prior', 'obs_prior'), (
              'post', 'post')) if v in noise})
    with tf.GradientTape() as actor_tape:
      with tf.name_scope('imagine'):
        imag_feat, imag_action = self.imagine_ahead(
            post, {k: noise[k] for k in ('imag', 'actor') if k in noise})
      reward = self.reward(imag_feat).mode()
      if self._c.pcont:
        pcont = self.pcont(imag_feat).mean()
      else:
        pcont = self._c.discount * tf.ones_like(reward)
      # One value forward pass serves both losses: the value tape starts
      # after imag_feat, so its gradient reaches only the value weights.
      with tf.GradientTape() as value_tape:
        value = self.value(imag_feat).mode()
        returns = tools.lambda_return(
            reward[:-1], value[:-1], pcont[:-1], value[-1], self._c.disclam)
        weights = discount_weights(pcont)
        value_loss_ = value_loss(
            tfd.Independent(tfd.Normal(value[:-1], 1.0), 0), returns, weights)
      actor_loss_ = actor_loss(returns, weights)
    grads = {}
    for opt, tape, loss in ((self.model_opt, model_tape, model_loss),
                            (self.actor_opt, actor_tape, actor_loss_),
                            (self.value_opt, value_tape, value_loss_)):
      grads[opt.name], metrics[f'{opt.name}_grad_norm'] = opt.gradients(
          tape, loss)
    metrics['model_loss'] = model_loss
    metrics['actor_loss'] = actor_loss_
    metrics['value_loss'] = value_loss_
    with tf.name_scope('diagnostics'):
      metrics.update(self._diagnostics(feat, imag_action, returns, value))
    outs.update(
        imag_feat=imag_feat, imag_action=imag_action, imag_reward=reward[:-1],
        imag_value=value, imag_pcont=pcont[:-1], returns=returns)
    return metrics, grads, outs

  def _diagnostics(self, feat, imag_action, returns, value):
    """action_ent, and what explains an actor that does not learn.

    actor_mean_abs, actor_std: mean |loc| (at most 5) and mean scale of the
    pre-tanh Normal on the batch's posterior features; action_saturated:
    fraction of imagined actions with |a| > 0.99; imag_return, value_mean:
    mean λ-return and value over the imagined trajectories.
    """
    dist = self.actor(feat)
    metrics = {'action_ent': tf.reduce_mean(dist.entropy())}
    if self._c.action_dist == 'tanh_normal':
      metrics['actor_mean_abs'] = tf.reduce_mean(tf.abs(dist.loc))
      metrics['actor_std'] = tf.reduce_mean(dist.scale)
      metrics['action_saturated'] = tf.reduce_mean(
          tf.cast(tf.abs(imag_action) > 0.99, tf.float32))
    metrics['imag_return'] = tf.reduce_mean(returns)
    metrics['value_mean'] = tf.reduce_mean(value)
    return metrics

  def world_model_loss(self, data, eps=None):
    """model_loss = kl_scale · div − Σ likelihoods, and the posterior.

    `eps`: the observe steps' noise {'prior', 'post'} (RSSM.observe).
    Returns (model_loss, post, feat, metrics, outs).
    """
    embed = self.embed(data)
    with tf.name_scope('observe'):
      post, prior = self.rssm.observe(
          embed, data['action'], eps=eps, is_first=data.get('is_first'))
    feat = self.rssm.get_feat(post)
    likes = {}
    for key, decoder in (('image', 'decoder'), ('proprio', 'proprio_decoder')):
      if decoder in self.modules:
        likes[key] = tf.reduce_mean(
            self.modules[decoder](feat).log_prob(data[key]))
    likes['reward'] = tf.reduce_mean(self.reward(feat).log_prob(data['reward']))
    if self._c.pcont:
      target = self._c.discount * tf.cast(data['discount'], tf.float32)
      likes['pcont'] = self._c.pcont_scale * tf.reduce_mean(
          self.pcont(feat).log_prob(target))
    prior_dist = self.rssm.get_dist(prior)
    post_dist = self.rssm.get_dist(post)
    kl, div = kl_loss(post_dist, prior_dist, self._c.free_nats)
    model_loss = self._c.kl_scale * div - sum(likes.values())
    metrics = {f'{name}_loss': -like for name, like in likes.items()}
    metrics['div'] = div
    metrics['prior_ent'] = tf.reduce_mean(prior_dist.entropy())
    metrics['post_ent'] = tf.reduce_mean(post_dist.entropy())
    outs = {f'post_{k}': v for k, v in post.items()}
    outs.update(prior_mean=prior['mean'], prior_std=prior['std'], kl=kl)
    return model_loss, post, feat, metrics, outs

  def imagine_ahead(self, post, eps=None):
    """Features and actions of `horizon` imagined steps from every posterior.

    Start states are all (B, T) posterior states (without the last time step
    when pcont is on), flattened to N; returns (horizon, N, feat) features
    of the states after each step (the start state is not included) and the
    (horizon, N, A) actions that led to them. `eps`: None, or some of
    {'actor': (H, N, A), 'imag': (H, N or 1, stoch)} noise.
    """
    eps = eps or {}
    if self._c.pcont:
      post = {k: v[:, :-1] for k, v in post.items()}
    start = {k: tf.reshape(v, [-1, v.shape[-1]]) for k, v in post.items()}
    start['action'] = tf.zeros([tf.shape(start['deter'])[0], self._action_size])

    def step(prev, index):
      at = lambda key: eps[key][index] if key in eps else None
      feat = tf.stop_gradient(self.rssm.get_feat(prev))
      action = self.actor(feat).sample(at('actor'))
      state = self.rssm.img_step(prev, action, at('imag'))
      return {**state, 'action': action}

    states = tools.static_scan(step, tf.range(self._c.horizon), start)
    return self.rssm.get_feat(states), states['action']

  def embed(self, data):
    """The encoders' embeddings of preprocessed `image` and/or `proprio`,
    joined."""
    parts = [self.modules[name](data[key]) for name, key in (
        ('encoder', 'image'), ('proprio_encoder', 'proprio'))
             if name in self.modules]
    return parts[0] if len(parts) == 1 else tf.concat(parts, -1)

  def _policy(self, obs, latent, action, training):
    """One step of the acting policy from N observations {`obs_keys`}:
    (N, 64, 64, 3) uint8 frames and/or the state arrays.

    `latent` and `action` are the previous state and action (zeros after a
    reset); returns the actor's sample (training) or mode, and the posterior.
    """
    embed = self.embed(preprocess(obs, proprio=self._proprio))
    latent, _ = self.rssm.obs_step(latent, action, embed)
    dist = self.actor(self.rssm.get_feat(latent))
    action = dist.sample() if training else dist.mode()
    return action, latent

  def initial_state(self, batch_size):
    """(latent, action) zeros for `batch_size` environments."""
    action = tf.zeros([batch_size, self._action_size], tf.float32)
    return self.rssm.initial(batch_size), action

  def _openl(self, data, sequences=6, context=5):
    """Video of truth, model and error rows for `sequences` sequences.

    The model row reconstructs the first `context` frames from observations
    and predicts the rest open loop from the actions alone.
    """
    keys = self.obs_keys + ['action']
    first = data.get('is_first')
    data = preprocess(
        {k: data[k][:sequences] for k in keys}, proprio=self._proprio)
    truth = data['image'] + 0.5
    post, _ = self.rssm.observe(
        self.embed({k: v[:, :context] for k, v in data.items()}),
        data['action'][:, :context],
        is_first=None if first is None else first[:sequences, :context])
    recon = self.decoder(self.rssm.get_feat(post)).mode()
    init = {k: v[:, -1] for k, v in post.items()}
    prior = self.rssm.imagine(data['action'][:, context:], init)
    openl = self.decoder(self.rssm.get_feat(prior)).mode()
    model = tf.concat([recon + 0.5, openl + 0.5], 1)
    error = (model - truth + 1) / 2
    return tf.clip_by_value(tf.concat([truth, model, error], 2), 0, 1)

  def get_state(self):
    """Weights (original names) and optimizer state as numpy arrays."""
    return {
        'weights': networks.export_weights(self.modules),
        'optimizers': {
            opt.name: [np.array(v.numpy()) for v in opt.state_variables]
            for opt in self.optimizers},
    }

  def set_state(self, state):
    networks.load_weights(self.modules, state['weights'])
    for opt in self.optimizers:
      values = state['optimizers'][opt.name]
      if len(values) != len(opt.state_variables):
        raise ValueError(f'checkpoint has a different {opt.name} optimizer')
      for variable, value in zip(opt.state_variables, values):
        variable.assign(value)


def build_modules(config, action_size, policy='float32', proprio_size=0,
                  keras_kernels=False):
  """The networks of the agent, named as in the original; with `--obs
  proprio` or `both`, a dense encoder and decoder of `proprio_size` state
  values (4 layers of num_units) in place of or beside the convolutional
  ones. `keras_kernels`: convolutions by Keras's own kernels only (the
  original's ops, same math; benchmarks/flops.py counts on them)."""
  c = config
  image, proprio = c.obs in ('image', 'both'), c.obs in ('proprio', 'both')
  modules, embed = {}, 0
  if image:
    modules['encoder'] = networks.ConvEncoder(
        c.cnn_depth, c.cnn_act, dtype=policy, keras_kernels=keras_kernels)
    embed += modules['encoder'].embed_size
  if proprio:
    if not proprio_size:
      raise ValueError(f'--obs {c.obs} needs state arrays; this task has none')
    modules['proprio_encoder'] = networks.DenseEncoder(
        proprio_size, 4, c.num_units, c.dense_act, policy, 'proprio_encoder')
    embed += modules['proprio_encoder'].embed_size
  rssm = networks.RSSM(
      action_size, embed, c.stoch_size, c.deter_size, c.deter_size,
      c.latent_noise, dtype=policy)
  feat = rssm.feat_size
  modules['rssm'] = rssm
  if image:
    modules['decoder'] = networks.ConvDecoder(
        feat, c.cnn_depth, c.cnn_act, dtype=policy,
        keras_kernels=keras_kernels)
  if proprio:
    modules['proprio_decoder'] = networks.DenseDecoder(
        feat, (proprio_size,), 4, c.num_units, 'normal', c.dense_act, policy,
        'proprio_decoder')
  modules['reward'] = networks.DenseDecoder(
      feat, (), 2, c.num_units, 'normal', c.dense_act, policy, 'reward')
  modules['value'] = networks.DenseDecoder(
      feat, (), 3, c.num_units, 'normal', c.dense_act, policy, 'value')
  modules['actor'] = networks.ActionDecoder(
      feat, action_size, 4, c.num_units, c.action_dist, c.dense_act,
      c.action_init_std, mean_scale=c.action_mean_scale, dtype=policy,
      name='actor')
  if c.pcont:
    modules['pcont'] = networks.DenseDecoder(
        feat, (), 3, c.num_units, 'binary', c.dense_act, policy, 'pcont')
  return modules


def count_params(modules):
  """{module name: number of trainable parameters}."""
  return {
      name: int(sum(np.prod(v.shape) for v in module.trainable_variables))
      for name, module in modules.items()}
