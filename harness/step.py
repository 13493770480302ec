"""Runs the ORIGINAL Dreamer's train step on a given batch, weights and
noise, in a process of its own, and writes what it computed.

    python -m harness.step --original PATH --request IN.npz --out OUT.npz \
        [--force]

PATH is a checkout of danijar/dreamer (harness.compat.check_checkout
must recognise it, unless --force). Our port uses Keras 3 and the original
tf_keras, which cannot share a process: hence a CLI that reads and writes
npz files.

IN.npz:
  config        JSON string: overrides of the original's define_config(),
                in its flag names (precision 32 or 16, ...)
  weights/NAME  every weight of the original's modules, in our naming
                MODULE/LAYER/WEIGHT (networks/weights.py)
  image (B, T, 64, 64, 3) uint8, action (B, T, A), reward, discount (B, T)
  obs_prior, post (B or 1, T, stoch); imag (H, N or 1, stoch); actor
                (H, N, A): standard-normal noise (uniform in (0, 1) for
                actor with action_dist onehot), as synthetic.recorded_noise;
                a batch axis of 1 is shared by every sequence (the
                original's own sampler shares it)
  updates       int, default 1
  policy        optional Keras dtype policy set before the agent is built,
                e.g. mixed_bfloat16 (the original has no bfloat16 flag: this
                sets it from outside, with precision 32). The original's
                wrappers.Collect stores float arrays in the precision's
                float type (float16 at precision 16) and dreamer.preprocess
                casts only the image: under a policy set from outside the
                float32 actions meet bfloat16 tensors and its RSSM fails
                (ConcatV2 dtype). So the batch's float arrays are cast to
                the policy's compute dtype before its preprocess, as Collect
                would have stored them (cast_floats).
  The batch and noise may instead carry a leading axis of length `updates`
  (image then (U, B, T, 64, 64, 3)): update K then uses entry K; the step
  without update uses entry 0.

OUT.npz:
  model_loss, image_loss, reward_loss, (pcont_loss), div, kl, actor_loss,
  value_loss, model_grad_norm, actor_grad_norm, value_grad_norm, prior_ent,
  post_ent: the step computed without applying it (the original's logged
  metrics; kl is the mean KL before free nats; norms before clipping)
  post_mean, post_std, post_stoch, post_deter, prior_mean, prior_std,
  imag_feat, imag_action, imag_reward, imag_value, imag_pcont, returns
  grad/LOSS/MODULE/LAYER/WEIGHT  gradient of loss model, actor or value,
                before clipping
  after/K/MODULE/LAYER/WEIGHT, after/K/model_loss, ...  (K = 1..updates)
                weights after the K-th full update (the original's
                tools.Adam: loss scaling, clip to grad_clip, Adam from a
                fresh state) and the metrics it logged in that update
                (computed before that update was applied)
  param_counts  JSON {module: parameters} and per optimizer
  variables_pkl JSON [[name, shape, dtype], ...]: what the original's
                tools.Module.save pickles into variables.pkl, in its order
                (its own save is run and checked against the walk). Found
                at 56d4d44 with tf_keras 2.21: a flat list of arrays from
                tf.Module's variable walk (attributes sorted by name,
                duplicates dropped): `step`; the weights of actor, decoder,
                rssm (gru, then img1-3, obs1-2), encoder; total and count
                of every metric in _metrics, by name (expl_amount among
                them); then reward, pcont (reached through the model
                optimizer's module list), value. No optimizer state: a
                tf_keras optimizer is not a tf.Module, so Adam's moments,
                iterations and the loss scale are not saved. 82 arrays at
                pcont False, 92 with pcont (55 / 63 of them weights).
  commit, config  the checkout's commit, the full config (JSON)
  seconds       JSON wall seconds per phase (build, measure, updates)

Precision 16 sets the original's mixed_float16 policy (floats of the batch
as float16, as its wrappers.Collect stores them). On this CPU stack it
runs, but image_loss and model_loss come out inf and the model gradient
norm nan (float16 overflow: at B·T = 18 the image log-likelihoods, about
−11,800 each, sum past float16's 65,504), so the loss-scale optimizer skips
every world-model update; actor and value update.

Every random draw of the step reads the recorded noise instead (the
original's files are not edited; its three sampling sites are replaced from
outside, each computing the original's expression with the draw read from
an array): latent samples (tools.py's patched MultivariateNormalDiag.sample,
`normal * std + mean`), the actor's tanh-Normal sample `tanh(eps * scale +
loc)`, and the one-hot sample (Gumbel-max `argmax(logits − log(−log u))`,
the same distribution as the tf.random.categorical draw it replaces).
"""

import argparse
import json
import os
import pathlib
import pickle
import sys
import tempfile
import time
import types
import warnings

os.environ['TF_USE_LEGACY_KERAS'] = '1'  # before TensorFlow: Keras 2 layers
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

import numpy as np  # noqa: E402

from harness import compat  # noqa: E402

BATCH = ('image', 'action', 'reward', 'discount')
NOISE = ('obs_prior', 'post', 'imag', 'actor')
METRICS = (
    'model_loss', 'image_loss', 'reward_loss', 'pcont_loss', 'div',
    'actor_loss', 'value_loss', 'model_grad_norm', 'actor_grad_norm',
    'value_grad_norm', 'prior_ent', 'post_ent')
MODULES = {  # our module name: the original Dreamer's attribute
    'encoder': '_encode', 'rssm': '_dynamics', 'decoder': '_decode',
    'reward': '_reward', 'pcont': '_pcont', 'value': '_value',
    'actor': '_actor'}
OPTIMIZERS = ('_model_opt', '_actor_opt', '_value_opt')


# --- the recorded noise ------------------------------------------------------

class Stream:
  """Recorded draws handed out one slice per call, in call order.

  The counter is a variable, not a Python int: the original's tf.functions
  (obs_step, img_step) are traced once and then called T or H times, so
  the slice must be chosen when the graph runs, not when it is traced.
  Reading past the end raises (tf.gather checks its index on CPU).
  """

  def __init__(self, tf, name, array):
    self._tf = tf
    self.name = name
    self.shape = array.shape
    self.buffer = tf.Variable(array, trainable=False, name=name)
    self.counter = tf.Variable(0, trainable=False, name=f'{name}_counter')

  def load(self, array):
    if array.shape != self.shape:
      raise ValueError(f'noise {self.name}: shape {array.shape}, expected '
                       f'{self.shape}')
    self.buffer.assign(array)
    self.counter.assign(0)

  def take(self, dtype):
    index = self.counter.assign_add(1) - 1
    return self._tf.cast(self._tf.gather(self.buffer, index), dtype)


class Noise:
  """The streams of one step: `observe` holds obs_prior and post
  interleaved by time (obs_step draws its prior, then its posterior), then
  `imag` and `actor`. `imagining` is set while the original's
  _imagine_ahead is traced: latent draws made then read `imag`."""

  def __init__(self, tf, noise):
    self.streams = {
        'observe': Stream(tf, 'observe', self._interleave(noise)),
        'imag': Stream(tf, 'imag', noise['imag']),
        'actor': Stream(tf, 'actor', noise['actor'])}
    self.imagining = False
    self.actions = []  # the actions sampled in the imagination being traced

  @staticmethod
  def _interleave(noise):
    """(2T, B, S): [prior_0, post_0, prior_1, post_1, ...]."""
    prior, post = noise['obs_prior'], noise['post']
    if prior.shape != post.shape:
      raise ValueError(f'obs_prior {prior.shape} and post {post.shape} differ')
    both = np.stack([prior, post], 2)  # (B, T, 2, S)
    return np.ascontiguousarray(
        both.reshape(prior.shape[0], -1, prior.shape[-1]).transpose(1, 0, 2))

  def load(self, noise):
    self.streams['observe'].load(self._interleave(noise))
    self.streams['imag'].load(noise['imag'])
    self.streams['actor'].load(noise['actor'])

  def latent(self, dtype):
    return self.streams['imag' if self.imagining else 'observe'].take(dtype)

  def action(self, dtype):
    if not self.imagining:
      raise RuntimeError('the actor sampled outside imagination in a step')
    return self.streams['actor'].take(dtype)

  def consumed(self):
    return {k: int(s.counter.numpy()) for k, s in self.streams.items()}


# --- recording intermediates ------------------------------------------------

class Recorder:
  """Copies tensors met inside the traced step into variables.

  The variables exist before the step is traced (no trace creates
  variables). `start()` at each trace: only the first tensor under a name
  is kept, so the open-loop summary branch, which calls observe again and
  never runs, does not overwrite the step's.
  """

  NAMES = (
      'post_mean', 'post_std', 'post_stoch', 'post_deter', 'prior_mean',
      'prior_std', 'kl', 'imag_feat', 'imag_action', 'imag_reward',
      'imag_value', 'imag_pcont', 'returns')

  def __init__(self, tf):
    self._tf = tf
    self.values = {name: tf.Variable(
        0.0, shape=tf.TensorShape(None), trainable=False, name=name)
        for name in self.NAMES}
    self.seen = set()

  def start(self):
    self.seen.clear()

  def __call__(self, name, tensor):
    if name not in self.seen:
      self.seen.add(name)
      self.values[name].assign(self._tf.cast(tensor, self._tf.float32))

  def read(self):
    return {k: v.numpy() for k, v in self.values.items() if k in self.seen}


class Gradients:
  """Captures one tools.Adam's pre-clip gradients, and in `measure` mode
  (decided when a step is traced) skips its weight decay and update.

  The original's tools.Adam.__call__ runs unchanged: scaled loss, tape
  gradient, get_unscaled_gradients (captured here: the gradients before
  clipping, whose global norm the original returns), clip, weight decay,
  apply_gradients (a no-op in measure mode).
  """

  def __init__(self, tf, adam, names, mode):
    self._tf = tf
    self.adam = adam
    self.loss = adam._name  # model, actor or value
    self.keys = [names[id(v)] for v in adam._variables]
    self.grads = [tf.Variable(tf.zeros(v.shape, tf.float32), trainable=False)
                  for v in adam._variables]
    self.mode = mode
    self.weight_decay = adam._wd
    self._unscale = adam._opt.get_unscaled_gradients
    self._apply = adam._opt.apply_gradients
    adam._opt.get_unscaled_gradients = self.get_unscaled_gradients
    adam._opt.apply_gradients = self.apply_gradients

  def get_unscaled_gradients(self, grads):
    tf = self._tf
    grads = self._unscale(grads)
    if self.mode.measure:
      for slot, grad, var in zip(self.grads, grads, self.adam._variables):
        slot.assign(tf.zeros(var.shape) if grad is None else tf.cast(
            tf.convert_to_tensor(grad), tf.float32))
    return grads

  def apply_gradients(self, *args, **kwargs):
    if self.mode.measure:
      return None
    return self._apply(*args, **kwargs)

  def trace(self, measure):
    """Weight decay acts on the variables: off while tracing a measure."""
    self.adam._wd = 0.0 if measure else self.weight_decay

  def read(self):
    return {f'grad/{self.loss}/{key}': grad.numpy()
            for key, grad in zip(self.keys, self.grads)}


def install_samplers(o, noise):
  """Replaces the original's three random draws by the recorded noise."""
  tf, tfd = o.tf, o.tfd

  def latent_sample(self, sample_shape=(), seed=None, name='sample'):
    # tools._mnd_sample: tf.random.normal(event_shape, mean, std), which is
    # `normal * std + mean`; the draw is read instead of generated.
    # The open-loop summary branch observes and imagines data[:6]: traced
    # in every step though it never runs, it takes the first rows.
    assert tuple(sample_shape) == (), sample_shape
    mean, std = self.mean(), self.stddev()
    return noise.latent(mean.dtype)[:tf.shape(mean)[0]] * std + mean

  def actor_sample(self, sample_shape=(), seed=None):
    # SampleDist wraps Independent(TransformedDistribution(Normal, Tanh));
    # its sample is tanh(Normal sample), TFP's Normal sample being
    # `normal * scale + loc`.
    assert tuple(sample_shape) == (), sample_shape
    transformed = self._dist.distribution
    normal = transformed.distribution
    loc = tf.convert_to_tensor(normal.loc)
    scale = tf.convert_to_tensor(normal.scale)
    action = transformed.bijector.forward(noise.action(loc.dtype) * scale + loc)
    noise.actions.append(action)
    return action

  def onehot_sample(self, sample_shape=(), seed=None, name='sample'):
    # tools._cat_sample draws tf.random.categorical(logits); the Gumbel-max
    # index of uniform noise u has the same distribution.
    assert tuple(sample_shape) == (), sample_shape
    logits = self.logits_parameter()
    u = noise.action(logits.dtype)
    index = tf.argmax(logits - tf.math.log(-tf.math.log(u)), -1)
    return tf.cast(index, self.dtype)

  def recorded_onehot(self, amount=None):
    # The original's OneHotDist.sample (one-hot of the index above plus
    # the straight-through probs - stop_gradient(probs)), recorded.
    action = onehot(self, amount)
    noise.actions.append(action)
    return action

  onehot = o.tools.OneHotDist.sample
  tfd.MultivariateNormalDiag.sample = latent_sample
  o.tools.SampleDist.sample = actor_sample
  tfd.Categorical.sample = onehot_sample
  o.tools.OneHotDist.sample = recorded_onehot


def install_recorders(o, noise, record):
  """Wraps the original's _imagine_ahead and lambda_return (class and
  module attributes, looked up at call time) to record their inputs and
  outputs and to switch the latent stream; returns nothing new."""
  tf = o.tf
  imagine_ahead = o.dreamer.Dreamer._imagine_ahead
  lambda_return = o.tools.lambda_return

  def recorded_imagine_ahead(self, post):
    for key, value in post.items():
      record(f'post_{key}', value)
    noise.actions = []
    noise.imagining = True
    try:
      imag_feat = imagine_ahead(self, post)
    finally:
      noise.imagining = False
    record('imag_feat', imag_feat)
    record('imag_action', tf.stack(noise.actions, 0))
    return imag_feat

  def recorded_lambda_return(reward, value, pcont, bootstrap, lambda_, axis):
    returns = lambda_return(
        reward, value, pcont, bootstrap, lambda_=lambda_, axis=axis)
    record('imag_reward', reward)
    record('imag_value', tf.concat([value, bootstrap[None]], 0))
    record('imag_pcont', pcont)
    record('returns', returns)
    return returns

  o.dreamer.Dreamer._imagine_ahead = recorded_imagine_ahead
  o.tools.lambda_return = recorded_lambda_return


def record_observe(o, agent, record):
  """Wraps this agent's RSSM.observe: records the (B, T) prior and the
  mean KL before free nats, the original's expression
  `reduce_mean(kl_divergence(get_dist(post), get_dist(prior)))`."""
  tf, tfd = o.tf, o.tfd
  rssm = agent._dynamics
  observe = rssm.observe

  def recorded_observe(embed, action, state=None):
    post, prior = observe(embed, action, state)
    record('prior_mean', prior['mean'])
    record('prior_std', prior['std'])
    record('kl', tf.reduce_mean(tfd.kl_divergence(
        rssm.get_dist(post), rssm.get_dist(prior))))
    return post, prior

  rssm.observe = recorded_observe


# --- the agent ----------------------------------------------------------------

class Original:
  """The original's modules (`dreamer`, `models`, `tools`, `wrappers`, from
  compat.load_original) with the TensorFlow (`tf`) and TFP distributions
  (`tfd`) they run on: what the functions here work on, passed as `o`."""

  def __init__(self, modules):
    import tensorflow  # not before: the checkout is checked first
    from tensorflow_probability import distributions
    self.path = modules.path
    self.dreamer, self.models = modules.dreamer, modules.models
    self.tools, self.wrappers = modules.tools, modules.wrappers
    self.tf, self.tfd = tensorflow, distributions


def use(original):
  """The Original of `original` (compat.load_original's namespace):
  imports TensorFlow and TFP."""
  return Original(original)


def make_config(o, overrides):
  """The original's define_config() with `overrides` (its flag names),
  each converted to the type of its default; log_images off."""
  config = o.dreamer.define_config()
  config.log_images = False
  for key, value in overrides.items():
    if key not in config:
      raise ValueError(f'config: the original has no flag {key!r}')
    default = config[key]
    if isinstance(default, bool):
      value = value if isinstance(value, bool) else value in ('True', 'true')
    elif isinstance(default, (int, float)):
      value = type(default)(float(value)) if isinstance(default, float) else (
          int(float(value)))
    elif isinstance(default, pathlib.Path):
      value = pathlib.Path(value)
    else:
      value = type(default)(value)
    config[key] = value
  if config.precision not in (16, 32):
    raise ValueError(f'config: precision {config.precision}, allowed 16, 32')
  return config


def float_type(config):
  """What wrappers.Collect stores float arrays as: float16 or float32."""
  return {16: np.float16, 32: np.float32}[config.precision]


def write_episodes(o, folder, batch, config):
  """The batch's B sequences as episodes of length T + 1 (the loader skips
  episodes not longer than batch_length); only the constructor's first
  train step reads them."""
  episodes = []
  for index in range(batch['image'].shape[0]):
    episode = {}
    for key, value in batch.items():
      value = np.concatenate([value[index], value[index, -1:]], 0)
      if np.issubdtype(value.dtype, np.floating):
        value = value.astype(float_type(config))
      episode[key] = value
    episodes.append(episode)
  o.tools.save_episodes(folder, episodes)


def build_agent(o, config, batch, action_size, folder, policy=None):
  """dreamer.Dreamer(config, datadir, actspace, writer), as its main()
  builds it: precision 16 sets the mixed_float16 policy first. The
  constructor runs one train step (and update) to create every variable;
  we run it eagerly: its numbers are discarded (weights and optimizer are
  reset after), and tracing it (with its open-loop summary branch) took
  16 s of a 45 s run here, eagerly 2 s. The steps we report are traced."""
  tf = o.tf
  if config.precision == 16:
    o.dreamer.prec.set_policy(o.dreamer.prec.Policy('mixed_float16'))
  elif policy:
    o.dreamer.prec.set_policy(o.dreamer.prec.Policy(policy))
    cast_floats(o)
  write_episodes(o, folder, batch, config)
  if config.action_dist == 'onehot':
    actspace = types.SimpleNamespace(n=action_size)
  else:
    actspace = types.SimpleNamespace(shape=(action_size,))
  writer = tf.summary.create_noop_writer()
  warnings.filterwarnings(  # tf.data's own functions stay traced: fine.
      'ignore', message='Even though the `tf.config.experimental_run')
  tf.config.run_functions_eagerly(True)
  try:
    return o.dreamer.Dreamer(config, pathlib.Path(folder), actspace, writer)
  finally:
    tf.config.run_functions_eagerly(False)


def cast_floats(o):
  """Wraps the original's dreamer.preprocess (looked up by load_dataset
  and preprocess below at call time): float arrays of the batch are first
  cast to the policy's compute dtype, the image left to it."""
  tf = o.tf
  preprocess = o.dreamer.preprocess

  def cast_then_preprocess(obs, config):
    dtype = o.dreamer.prec.global_policy().compute_dtype
    obs = {k: tf.cast(v, dtype) if k != 'image' and v.dtype.is_floating
           else v for k, v in obs.items()}
    return preprocess(obs, config)

  o.dreamer.preprocess = cast_then_preprocess


def modules_of(agent):
  """{our module name: the original's module} present in this agent."""
  return {ours: getattr(agent, theirs) for ours, theirs in MODULES.items()
          if hasattr(agent, theirs)}


def weight_names(agent):
  """{id(variable): 'MODULE/LAYER/WEIGHT'} of the agent's modules, in our
  naming (module_weight_names)."""
  return module_weight_names(modules_of(agent))


def module_weight_names(modules):
  """{id(variable): 'MODULE/LAYER/WEIGHT'} for {our module name: the
  original's module}.

  LAYER is the name the original passes to tools.Module.get (h1, img1,
  obs2, hout, ...), kept in the module's `_modules`; the RSSM's GRU cell is
  its `_cell`, named gru. WEIGHT is the Keras variable's own short name.
  """
  names = {}
  for module_name, module in modules.items():
    layers = dict(getattr(module, '_modules', {}))
    if hasattr(module, '_cell'):
      layers['gru'] = module._cell
    for layer_name, layer in layers.items():
      for variable in layer.weights:
        short = variable.name.split('/')[-1].split(':')[0]
        names[id(variable)] = f'{module_name}/{layer_name}/{short}'
    for variable in module.variables:
      if id(variable) not in names:
        raise RuntimeError(f'{module_name}: no name for {variable.name}')
  return names


def load_weights(agent, weights):
  """Assigns `weights` ({our name: array}) to every weight of the agent's
  modules; raises ValueError for a missing weight or a wrong shape."""
  assign_weights(modules_of(agent), weights)


def assign_weights(modules, weights):
  """load_weights for {our module name: the original's module}."""
  names = module_weight_names(modules)
  for module in modules.values():
    for variable in module.variables:
      key = names[id(variable)]
      if key not in weights:
        raise ValueError(f'weights/{key} missing from the request')
      value = weights[key]
      if tuple(value.shape) != tuple(variable.shape):
        raise ValueError(f'weights/{key}: shape {value.shape}, the original '
                         f'has {tuple(variable.shape)}')
      variable.assign(value.astype(variable.dtype.as_numpy_dtype))


def read_weights(agent):
  names = weight_names(agent)
  return {names[id(v)]: v.numpy() for module in modules_of(agent).values()
          for v in module.variables}


def reset_optimizers(o, agent):
  """Each tools.Adam to the state of a fresh one: Adam's iteration and
  moments zero, the dynamic loss scale back to 2**15 and its counter zero.
  (The constructor's train step applied one update to random weights; the
  updates asked for start from the given weights and a fresh optimizer.)"""
  for attribute in OPTIMIZERS:
    scaler = getattr(agent, attribute)._opt
    for variable in scaler.inner_optimizer.variables:
      variable.assign(o.tf.zeros_like(variable))
    state = scaler._loss_scale
    if hasattr(state, '_current_loss_scale'):
      state._current_loss_scale.assign(scaler.initial_scale)
      state._counter.assign(0)


def variable_labels(agent):
  """{id(variable): label} for every variable the agent holds: weights in
  our naming, the rest by owner (optimizer slots, metrics, step)."""
  labels = {i: f'weight {n}' for i, n in weight_names(agent).items()}
  labels[id(agent._step)] = 'step'
  for key, metric in agent._metrics.items():
    for variable in metric.variables:
      labels[id(variable)] = f'metric {key}/{variable.name.split(":")[0]}'
  names = weight_names(agent)
  for attribute in OPTIMIZERS:
    adam = getattr(agent, attribute)
    scaler = adam._opt
    inner = scaler.inner_optimizer
    slots = {}
    for variable in adam._variables:  # tf_keras Adam: moments by var index
      index = inner._index_dict[inner._var_key(variable)]
      for kind, moments in (('m', inner._momentums), ('v', inner._velocities)):
        slots[id(moments[index])] = f'{kind} of {names[id(variable)]}'
    for variable in scaler.inner_optimizer.variables:
      labels[id(variable)] = f'{adam._name} optimizer ' + slots.get(
          id(variable), variable.name.split(':')[0])
    state = scaler._loss_scale
    for name in ('_current_loss_scale', '_counter'):
      if hasattr(state, name):
        labels[id(getattr(state, name))] = f'{adam._name} loss scale {name}'
  return labels


def pickled_order(agent, folder):
  """[[label, shape, dtype]] of what tools.Module.save writes, in order.

  Runs the original's own save into `folder` and checks that the pickle
  holds exactly the arrays of the tf.Module variable walk it maps to numpy.
  """
  path = pathlib.Path(folder) / 'variables.pkl'
  agent.save(path)
  with path.open('rb') as f:
    values = pickle.load(f)
  labels = variable_labels(agent)
  walk = list(agent.variables)
  if len(values) != len(walk):
    raise RuntimeError(f'variables.pkl holds {len(values)} arrays, the '
                       f'variable walk {len(walk)}')
  order = []
  for value, variable in zip(values, walk):
    assert np.shape(value) == tuple(variable.shape), variable.name
    order.append([labels.get(id(variable), f'other {variable.name}'),
                  list(np.shape(value)), str(np.asarray(value).dtype)])
  return order


def param_counts(agent):
  """{module: parameters} in our module names, and per optimizer."""
  size = lambda variables: int(sum(np.prod(v.shape) for v in variables))
  counts = {k: size(m.variables) for k, m in modules_of(agent).items()}
  for attribute in OPTIMIZERS:
    adam = getattr(agent, attribute)
    counts[f'{adam._name}_optimizer'] = size(adam._variables)
  return counts


# --- the step -------------------------------------------------------------------

def preprocess(o, batch, config):
  """The tensors the original's dataset yields: floats stored as
  wrappers.Collect stores them, then its own dreamer.preprocess (image
  x / 255 − 0.5 in the compute dtype, rewards clipped as configured)."""
  data = {}
  for key, value in batch.items():
    if np.issubdtype(value.dtype, np.floating):
      value = value.astype(float_type(config))
    data[key] = o.tf.constant(value)
  return o.dreamer.preprocess(data, config)


def run_step(agent, function, data, noise, arrays, record, mode, measure):
  """Runs one traced original train step with fresh metrics and noise;
  returns its logged metrics."""
  noise.load(arrays)
  for metric in agent._metrics.values():
    metric.reset_states()
  mode.measure = measure
  for grads in mode.gradients:
    grads.trace(measure)
  record.start()
  with agent._strategy.scope():
    function(data)
  consumed = noise.consumed()
  expected = {'observe': 2 * agent._c.batch_length,
              'imag': agent._c.horizon, 'actor': agent._c.horizon}
  if consumed != expected:
    raise RuntimeError(f'noise consumed {consumed}, expected {expected}')
  return {name: np.float32(agent._metrics[name].result().numpy())
          for name in METRICS if name in agent._metrics}


class Clock:
  """Wall seconds per phase: each call closes the phase it names."""

  def __init__(self):
    self.seconds = {}
    self._last = time.time()

  def __call__(self, phase):
    now = time.time()
    self.seconds[phase] = round(now - self._last, 2)
    self._last = now


def entry(arrays, index, stacked):
  return {k: v[index] for k, v in arrays.items()} if stacked else arrays


def read_request(path):
  with np.load(path) as request:
    request = dict(request)
  overrides = json.loads(str(request.get('config', '{}')))
  weights = {k[len('weights/'):]: v for k, v in request.items()
             if k.startswith('weights/')}
  missing = [k for k in BATCH + NOISE if k not in request]
  if missing:
    raise ValueError(f'{path}: missing {", ".join(missing)}')
  batch = {k: request[k] for k in BATCH}
  noise = {k: request[k].astype(np.float32) for k in NOISE}
  updates = int(request.get('updates', 1))
  policy = str(request['policy']) if 'policy' in request else None
  return overrides, weights, batch, noise, updates, policy


def compute(original, overrides, weights, batch, noise, updates, policy=None,
            logdir=None):
  """Everything OUT.npz holds, as {key: array}. With `logdir`, also leaves
  an original logdir there: the episodes the agent was built from and the
  variables.pkl of the original's own save, with the request's weights."""
  o = use(original)
  config = make_config(o, overrides)
  stacked = batch['image'].ndim == 6
  if stacked and batch['image'].shape[0] != updates:
    raise ValueError(f'{batch["image"].shape[0]} stacked batches for '
                     f'{updates} updates')
  for key, value in noise.items():
    if value.ndim != (4 if stacked else 3):
      raise ValueError(f'noise {key}: shape {value.shape}; the batch is '
                       f'{"" if stacked else "not "}stacked by update')
  first = entry(batch, 0, stacked), entry(noise, 0, stacked)
  if first[0]['image'].shape[:2] != (config.batch_size, config.batch_length):
    raise ValueError(
        f'batch {first[0]["image"].shape[:2]} but config batch_size '
        f'{config.batch_size}, batch_length {config.batch_length}')
  streams = Noise(o.tf, first[1])
  record = Recorder(o.tf)
  install_samplers(o, streams)
  install_recorders(o, streams, record)
  out, clock = {}, Clock()
  with tempfile.TemporaryDirectory(prefix='original-step-') as folder:
    if logdir is not None:
      folder = pathlib.Path(logdir)
      folder.mkdir(parents=True, exist_ok=True)
    agent = build_agent(
        o, config, first[0], first[0]['action'].shape[-1],
        pathlib.Path(folder) / 'episodes' if logdir else folder, policy)
    clock('build')
    load_weights(agent, weights)
    reset_optimizers(o, agent)
    out['variables_pkl'] = np.array(json.dumps(pickled_order(agent, folder)))
  out['param_counts'] = np.array(json.dumps(param_counts(agent)))
  record_observe(o, agent, record)
  names = weight_names(agent)
  mode = types.SimpleNamespace(measure=False)
  mode.gradients = [Gradients(o.tf, getattr(agent, a), names, mode)
                    for a in OPTIMIZERS]
  body = o.dreamer.Dreamer.train.python_function
  measure = o.tf.function(lambda data: body(agent, data, False))
  out.update(run_step(agent, measure, preprocess(o, first[0], config),
                      streams, first[1], record, mode, True))
  out.update(record.read())
  for grads in mode.gradients:
    out.update(grads.read())
  clock('measure')
  for k in range(updates):
    data, arrays = entry(batch, k, stacked), entry(noise, k, stacked)
    metrics = run_step(agent, agent.train, preprocess(o, data, config),
                       streams, arrays, record, mode, False)
    out.update({f'after/{k + 1}/{n}': v for n, v in metrics.items()})
    out.update({f'after/{k + 1}/{n}': v
                for n, v in read_weights(agent).items()})
  clock('updates')
  out['seconds'] = np.array(json.dumps(clock.seconds))
  out['policy'] = np.array(str(
      o.tf.keras.mixed_precision.global_policy().name))
  out['config'] = np.array(json.dumps(
      {k: v if isinstance(v, (bool, int, float)) else str(v)
       for k, v in config.items()}, sort_keys=True))
  return out


def main(argv=None):
  parser = argparse.ArgumentParser(
      prog='python -m harness.step', description=__doc__.split('\n')[0])
  parser.add_argument('--original', required=True,
                      help='checkout of danijar/dreamer')
  parser.add_argument('--request', required=True, help='input npz')
  parser.add_argument('--out', required=True, help='output npz')
  parser.add_argument('--force', action='store_true',
                      help='run a checkout whose files differ from 56d4d44')
  parser.add_argument('--logdir', default=None,
                      help='also leave an original logdir here: episodes/ '
                      'and the variables.pkl of its own save')
  args = parser.parse_args(argv)
  start = time.time()
  try:
    commit = compat.check_checkout(args.original, args.force)
  except ValueError as error:
    sys.exit(f'harness.step: {error}')
  original = compat.load_original(args.original)
  out = compute(original, *read_request(args.request), logdir=args.logdir)
  out['commit'] = np.array(commit or 'unknown (forced)')
  np.savez_compressed(args.out, **out)
  print(f'harness.step: wrote {args.out} ({len(out)} arrays) in '
        f'{time.time() - start:.1f} s; phases {str(out["seconds"])}')


if __name__ == '__main__':
  main()
