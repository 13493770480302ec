"""Arithmetic rate of each part of the update, against the matmul peak.

    python benchmarks/section_rates.py --configs small

Times forward + backward of the encoder, the decoder (with its image
log-likelihood), the 50-step observe loop and the 15-step imagination (with
the reward and value heads on its features) of the named config, each
alone, and two independent 2,048² float32 matmuls (the peak), in turns
(one call of each per round), and prints per part: GFLOP of one call
(benchmarks/flops.py: the math's), median wall and process CPU seconds, and
its rate as a fraction of the matmuls', by wall time and by CPU time. On a shared machine the CPU-time
fraction is the steadier one (the wall time includes waiting for the
cores). The parts' fractions are the model of the update's limit:
seconds ≥ Σ GFLOP_part / (fraction_part · peak).
"""

import argparse
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))


def parts(agent, config, action_size):
  """{name: (tf.function, args)} of each part's forward and backward."""
  import tensorflow as tf
  b, t = config.batch_size, config.batch_length
  image = tf.random.uniform([b, t, 64, 64, 3], -0.5, 0.5)
  embed = tf.random.normal([b, t, agent.encoder.embed_size])
  action = tf.random.uniform([b, t, action_size], -1, 1)
  feat = tf.random.normal([b, t, agent.rssm.feat_size])
  post = {'mean': tf.random.normal([b, t, config.stoch_size]),
          'std': tf.ones([b, t, config.stoch_size]),
          'stoch': tf.random.normal([b, t, config.stoch_size]),
          'deter': tf.random.normal([b, t, config.deter_size])}

  def grads(loss_fn, variables, *watched):
    with tf.GradientTape() as tape:
      tape.watch(watched)
      loss = loss_fn()
    return tape.gradient(loss, list(variables) + list(watched))

  def encoder(image):
    return grads(lambda: tf.reduce_sum(agent.encoder(image) ** 2),
                 agent.encoder.trainable_variables)

  def decoder(feat, image):
    return grads(lambda: -tf.reduce_mean(agent.decoder(feat).log_prob(image)),
                 agent.decoder.trainable_variables, feat)

  def observe(embed, action):
    def loss():
      post, prior = agent.rssm.observe(embed, action)
      return tf.reduce_sum(post['stoch'] ** 2) + tf.reduce_sum(prior['mean'])
    return grads(loss, agent.rssm.trainable_variables, embed)

  def imagine(post):
    def loss():
      feat, _ = agent.imagine_ahead(post)
      return (tf.reduce_mean(agent.reward(feat).mode())
              + tf.reduce_mean(agent.value(feat).mode()))
    return grads(loss, agent.actor.trainable_variables
                 + agent.value.trainable_variables)

  from benchmarks.machine import matmul_pair
  pair, pair_args, _ = matmul_pair()
  return {
      'matmuls 2×2048²': (pair, pair_args),
      'encoder': (tf.function(encoder), (image,)),
      'decoder': (tf.function(decoder), (feat, image)),
      'observe loop': (tf.function(observe), (embed, action)),
      'imagination': (tf.function(imagine), (post,)),
  }


def flops(function, args):
  from benchmarks.flops import graph_flops
  return graph_flops(function.get_concrete_function(*args).graph)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--configs', nargs='*', default=['small'])
  parser.add_argument('--rounds', type=int, default=9)
  parser.add_argument('--action_size', type=int, default=6)
  args = parser.parse_args()
  from benchmarks.machine import setup
  print(setup(), flush=True)
  import config as config_module
  import models
  config = config_module.make_config(
      precision='32', jit=False, configs=args.configs)
  agent = models.Dreamer(config, args.action_size)
  table = parts(agent, config, args.action_size)
  # The math's FLOPs: each part as the original's ops compute it.
  counting = parts(models.Dreamer(
      config, args.action_size, keras_kernels=True), config, args.action_size)
  counts = {name: flops(f, a) for name, (f, a) in counting.items()}
  run = lambda f, a: [x.numpy() for x in f(*a)]
  for function, call_args in table.values():
    run(function, call_args)
    run(function, call_args)
  walls = {name: [] for name in table}
  cpus = {name: [] for name in table}
  for _ in range(args.rounds):
    for name, (function, call_args) in table.items():
      start, cpu = time.perf_counter(), time.process_time()
      run(function, call_args)
      walls[name].append(time.perf_counter() - start)
      cpus[name].append(time.process_time() - cpu)
  rate = lambda name, times: counts[name] / statistics.median(times[name])
  peak_wall, peak_cpu = rate('matmuls 2×2048²', walls), rate('matmuls 2×2048²', cpus)
  print(f'configs {" ".join(args.configs) or "(full)"}, {args.rounds} rounds; '
        f'fractions of the matmul\'s rate ({peak_wall / 1e9:.0f} GFLOP/s wall, '
        f'{peak_cpu / 1e9:.0f} GFLOP per CPU-second)')
  print(f'{"part":16s} {"GFLOP":>7s} {"wall ms":>8s} {"CPU ms":>8s} '
        f'{"of peak (wall)":>15s} {"(CPU)":>6s}')
  for name in table:
    print(f'{name:16s} {counts[name] / 1e9:7.2f} '
          f'{statistics.median(walls[name]) * 1e3:8.1f} '
          f'{statistics.median(cpus[name]) * 1e3:8.1f} '
          f'{rate(name, walls) / peak_wall:15.0%} '
          f'{rate(name, cpus) / peak_cpu:6.0%}')


if __name__ == '__main__':
  main()
