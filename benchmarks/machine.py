"""What machine a figure comes from: CPU model, vector units, oneDNN, peak.

Figures from different CPUs do not compare; a fraction of the machine's own
measured matmul peak does. Import this before TensorFlow is imported so that
`setup()` can choose oneDNN as dreamer.py does.
"""

import time

def setup():
  """Chooses oneDNN like dreamer.py (before TensorFlow is imported); a line
  naming the CPU, its extensions and the oneDNN state."""
  import devices
  onednn = devices.choose_onednn()
  threads = devices.choose_threads()
  name, extensions = devices.cpu_model()
  return (f'CPU: {name} ({", ".join(extensions) or "no AVX2"}). {onednn}\n'
          f'{threads}')


def matmul_pair(dtype='float32', size=2048):
  """(tf.function, args, FLOP per call) of two independent size² matmuls:
  whether TensorFlow gives an op every core or runs one op per core
  (devices.choose_threads), the pair keeps the whole CPU busy."""
  import tensorflow as tf
  a, b = (tf.cast(tf.random.normal([size, size]), dtype) for _ in range(2))
  pair = tf.function(lambda x, y: [tf.matmul(x, x), tf.matmul(y, y)])
  return pair, (a, b), 2 * 2 * size ** 3


def matmul_peak(dtype='float32', size=2048, seconds=2.0):
  """Measured GFLOP/s of size² matmuls in `dtype` on the whole CPU (best
  of repeated runs of matmul_pair)."""
  pair, args, flops = matmul_pair(dtype, size)
  [x.numpy() for x in pair(*args)]
  best, start = float('inf'), time.perf_counter()
  while time.perf_counter() - start < seconds:
    begin = time.perf_counter()
    [x.numpy() for x in pair(*args)]
    best = min(best, time.perf_counter() - begin)
  return flops / best / 1e9
