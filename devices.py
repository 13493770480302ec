"""Devices and precision: oneDNN, bfloat16 on CPUs, GPUs and strategies.

`choose_onednn` must run before TensorFlow is imported; `setup_tensorflow`
imports it.
"""

import os
import pathlib
import sys

from config import fail


def choose_onednn(environ=None):
  """Turns TensorFlow's oneDNN kernels on unless the user chose; a message.

  TensorFlow 2.21 leaves them off on CPUs without AVX-512, where a
  full-config update then takes 1.7x as long (19.4 s instead of 11.4 s on
  an AVX2-only EPYC). Has an effect only before TensorFlow is imported.
  """
  environ = os.environ if environ is None else environ
  value = environ.get('TF_ENABLE_ONEDNN_OPTS')
  if value is not None:
    state = 'off' if value.strip().lower() in ('0', 'false') else 'on'
    return f'oneDNN {state}: TF_ENABLE_ONEDNN_OPTS={value} (your setting).'
  environ['TF_ENABLE_ONEDNN_OPTS'] = '1'
  late = ' (too late: TensorFlow was already imported)' if (
      'tensorflow' in sys.modules) else ''
  return (f'oneDNN on: TF_ENABLE_ONEDNN_OPTS=1 set by default{late}; '
          f'TensorFlow turns it off on CPUs without AVX-512, where updates '
          f'then take 1.7x as long. Set TF_ENABLE_ONEDNN_OPTS=0 to compare.')


def cpu_has_bf16():
  """Whether this CPU has bfloat16 matrix instructions (AMX or AVX-512)."""
  try:
    flags = pathlib.Path('/proc/cpuinfo').read_text()
  except OSError:
    return False
  return 'amx_bf16' in flags or 'avx512_bf16' in flags


def resolve_precision(precision, has_gpu, bf16_cpu):
  """(precision to run, message or None): float16 only where it is fast.

  precision 16 means float16 compute on GPUs, as in the original. CPUs run
  float16 far slower than float32, so without a GPU it runs float32 and
  says so. bfloat16 is faster on CPUs with bfloat16 instructions but its
  actor gradients drift from float32's (benchmarks/precision.py), so it is
  never chosen for the user.
  """
  if precision != '16' or has_gpu:
    return precision, None
  hint = (' This CPU has bfloat16 instructions: --precision bf16 is faster, '
          'but its gradients differ from float32 (actor cosine 0.975 at the '
          'full config).' if bf16_cpu else '')
  return '32', (
      f'Precision 16 means float16 on a GPU; there is none here and float16 '
      f'on a CPU is about 10x slower, so this run computes in float32 '
      f'(--precision 32).{hint}')


def setup_tensorflow(seed, gpu_growth, batch_size):
  """Seeds TensorFlow and chooses the devices; returns (has_gpu, strategy).

  Several hosts (TF_CONFIG set): MultiWorkerMirroredStrategy. Several
  local GPUs: MirroredStrategy, as the original. One device: no strategy.
  """
  import tensorflow as tf
  import keras
  gpus = tf.config.list_physical_devices('GPU')
  if gpu_growth:
    for gpu in gpus:
      tf.config.experimental.set_memory_growth(gpu, True)
  strategy = None
  if os.environ.get('TF_CONFIG'):
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
  elif len(gpus) > 1:
    strategy = tf.distribute.MirroredStrategy()
  if strategy is not None:
    local = len(strategy.extended.worker_devices)
    if batch_size % local:
      fail(f'--batch_size {batch_size} does not split evenly over '
           f'the {local} devices of this host; use a multiple of {local}')
    print(f'Training on {strategy.num_replicas_in_sync} replicas '
          f'({type(strategy).__name__}); each host samples --batch_size '
          f'{batch_size} sequences per update.', flush=True)
  keras.utils.set_random_seed(seed)
  return bool(gpus), strategy
