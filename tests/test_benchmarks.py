"""Smoke runs of the timing scripts of ours: they finish and end with their
JSON (the original's, benchmarks/original_train_step.py, is run by
tests_harness/test_original_benchmark.py)."""

import pytest

from helpers import run_benchmark


@pytest.mark.slow
def test_train_step_benchmark_reports_seconds_per_update():
  result = run_benchmark(
      'train_step.py', '--tiny', '--repeats', '1', '--warmup', '1',
      '--precision', '32')
  assert list(result) == ['float32']
  assert result['float32'] > 0


@pytest.mark.slow
def test_collect_benchmark_reports_env_steps_per_second():
  result = run_benchmark('collect.py', '--tiny')
  assert list(result) == ['env_steps_per_second']
  assert result['env_steps_per_second'] > 0


@pytest.mark.slow
def test_versus_original_takes_turns_and_reports_the_ratio():
  # Ours against ours (the original's side needs its checkout: tests_harness).
  result = run_benchmark(
      'versus_original.py', '--programs', 'ours',
      'ours@TF_NUM_INTEROP_THREADS=1', '--configs', 'tiny', '--rounds', '1', '--warmup', '1', '--no_stats')
  assert set(result) == {
      'ours', 'ours@TF_NUM_INTEROP_THREADS=1',
      'ours@TF_NUM_INTEROP_THREADS=1/ours'}
  assert all(value > 0 for value in result.values())


def test_flops_count_convolution_gradients_exactly():
  # 'valid' stride 2, 9×9 → 3×3 with a 4×4 kernel: TensorFlow's own
  # statistic counts the gradients by 9²/2² positions, not 3².
  import tensorflow as tf
  from benchmarks.flops import graph_flops
  kernel = tf.Variable(tf.ones([4, 4, 5, 7]))

  @tf.function
  def step(x):
    with tf.GradientTape() as tape:
      tape.watch(x)
      loss = tf.reduce_sum(tf.nn.conv2d(x, kernel, 2, 'VALID'))
    return tape.gradient(loss, [x, kernel])

  @tf.function
  def transposed(x):
    return tf.nn.conv2d_transpose(x, kernel, [2, 9, 9, 5], 2, 'VALID')

  macs = 2 * 3 * 3 * 4 * 4 * 5 * 7  # batch 2, the 3×3 outputs
  count = graph_flops(step.get_concrete_function(tf.zeros([2, 9, 9, 5])).graph)
  assert count == pytest.approx(3 * 2 * macs, rel=0.01)  # + the Σ's
  count = graph_flops(
      transposed.get_concrete_function(tf.zeros([2, 3, 3, 7])).graph)
  assert count == 2 * macs


def test_keras_kernels_compute_the_same_images():
  import numpy as np
  import tensorflow as tf
  from networks.conv import ConvDecoder, ConvEncoder
  images = tf.random.stateless_uniform([2, 40, 64, 64, 3], [0, 2], -0.5, 0.5)
  feat = tf.random.stateless_normal([2, 40, 10], [0, 3])
  outputs = []
  for keras_kernels in (False, True):
    encoder = ConvEncoder(depth=2, keras_kernels=keras_kernels)
    decoder = ConvDecoder(10, depth=2, keras_kernels=keras_kernels)
    if outputs:
      for ours, theirs in ((encoder, first[0]), (decoder, first[1])):
        for a, b in zip(ours.variables, theirs.variables):
          a.assign(b)
    else:
      first = (encoder, decoder)
    outputs.append((encoder(images), decoder(feat).mean()))
    layers = [*encoder.named_layers.values(), *decoder.named_layers.values()]
    fast = [getattr(layer, '_use_phases', False) or getattr(
        layer, '_use_patches', False) for layer in layers]
    assert any(fast) != keras_kernels
  for ours, theirs in zip(*outputs):
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
