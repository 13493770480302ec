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
  name, extensions = devices.cpu_model()
  return f'CPU: {name} ({", ".join(extensions) or "no AVX2"}). {onednn}'


def matmul_peak(dtype='float32', size=2048, seconds=2.0):
  """Measured GFLOP/s of a size² matmul in `dtype` (best of repeated runs)."""
  import tensorflow as tf
  a = tf.random.normal([size, size], dtype=tf.float32)
  a = tf.cast(a, dtype)
  matmul = tf.function(lambda x: tf.matmul(x, x))
  matmul(a).numpy()
  best, start = float('inf'), time.perf_counter()
  while time.perf_counter() - start < seconds:
    begin = time.perf_counter()
    matmul(a).numpy()
    best = min(best, time.perf_counter() - begin)
  return 2 * size ** 3 / best / 1e9
