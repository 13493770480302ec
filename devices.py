"""Devices and precision: oneDNN, threads, bfloat16 on CPUs, GPUs and
strategies, and TensorFlow's start-up messages.

`choose_onednn` and `choose_threads` must run before TensorFlow is
imported; `setup_tensorflow` imports it.
"""

import contextlib
import os
import pathlib
import re
import sys
import tempfile

from config import fail

EXTENSIONS = ('avx2', 'avx512f', 'avx512_bf16', 'amx_bf16')


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


def choose_threads(environ=None, cpus=None):
  """On 2 CPUs, one thread per op and two ops at once, unless the user
  chose; a message.

  TensorFlow's default there is two threads per op, which the update's
  many small ops (the 15 imagination steps, the 50 observe steps) cannot
  use well: one thread per op with two ops running side by side (the world
  model's and the actor's work are independent; the encoder runs as two
  halves, networks/conv.py) keeps both cores busy with less waiting.
  Measured at --configs small on a 2-core EPYC: an update 0.591 -> 0.542 s
  (benchmarks/README.md); at the full config 5.41 -> 5.26 s. Other CPU
  counts keep TensorFlow's defaults (not measured). Has an effect only
  before TensorFlow is imported.
  """
  environ = os.environ if environ is None else environ
  keys = ('TF_NUM_INTRAOP_THREADS', 'TF_NUM_INTEROP_THREADS')
  chosen = {k: environ[k] for k in keys if k in environ}
  if chosen:
    settings = ', '.join(f'{k}={v}' for k, v in chosen.items())
    return f'Threads: {settings} (your setting).'
  cpus = len(os.sched_getaffinity(0)) if cpus is None else cpus
  if cpus != 2:
    return f'Threads: TensorFlow\'s defaults ({cpus} CPUs).'
  environ.update({'TF_NUM_INTRAOP_THREADS': '1', 'TF_NUM_INTEROP_THREADS': '2'})
  late = ' (too late: TensorFlow was already imported)' if (
      'tensorflow' in sys.modules) else ''
  return (f'Threads: 1 per op, 2 ops at once on these 2 CPUs '
          f'(TF_NUM_INTRAOP_THREADS=1, TF_NUM_INTEROP_THREADS=2 set by '
          f'default{late}; set them to choose).')


def cpu_model():
  """(model name, the vector extensions of EXTENSIONS it has)."""
  try:
    info = pathlib.Path('/proc/cpuinfo').read_text()
  except OSError:
    return 'unknown CPU', []
  names = [line.split(':', 1)[1].strip() for line in info.splitlines()
           if line.startswith('model name')]
  flags = next((line.split(':', 1)[1].split() for line in info.splitlines()
                if line.startswith('flags')), [])
  return (names[0] if names else 'unknown CPU',
          [ext for ext in EXTENSIONS if ext in flags])


def cpu_has_bf16():
  """Whether this CPU has bfloat16 matrix instructions (AMX or AVX-512)."""
  extensions = cpu_model()[1]
  return 'amx_bf16' in extensions or 'avx512_bf16' in extensions


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
          'but rounds to 8 bits of mantissa (actor loss 1.1% off float32 on '
          'one full-config update).' if bf16_cpu else '')
  return '32', (
      f'Precision 16 means float16 on a GPU; there is none here and float16 '
      f'on a CPU is about 10x slower, so this run computes in float32 '
      f'(--precision 32).{hint}')


# TensorFlow's C++ lines that say nothing to a user: INFO and WARNING
# lines (what TF_CPP_MIN_LOG_LEVEL=2 drops, but absl prints those written
# before it is set up), their continuation lines, and the CUDA errors of a
# machine without a GPU.
_LOG_LINE = re.compile(r'^[IWEF]\d{4} ')
_NOISE = re.compile(
    r'^[IW]\d{4} |^WARNING: All log messages before absl::InitializeLog|'
    r'cuInit|cuda_platform|Unable to register cu(DNN|FFT|BLAS) factory')


def tensorflow_lines_that_matter(text):
  """The lines of TensorFlow's start-up output that are not _NOISE, each
  message with its continuation lines."""
  kept, dropping = [], False
  for line in text.splitlines(keepends=True):
    if _LOG_LINE.match(line) or line.startswith('WARNING: All log messages'):
      dropping = bool(_NOISE.search(line))
    if not dropping:
      kept.append(line)
  return ''.join(kept)


@contextlib.contextmanager
def quiet_start():
  """Keeps TensorFlow's start-up noise (tensorflow_lines_that_matter) off
  stderr while inside, unless the user set TF_CPP_MIN_LOG_LEVEL."""
  if 'TF_CPP_MIN_LOG_LEVEL' in os.environ:
    yield
    return
  os.environ['TF_CPP_MIN_LOG_LEVEL'] = '2'
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as temp:
    os.dup2(temp.fileno(), 2)
    try:
      yield
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      temp.seek(0)
      sys.stderr.write(tensorflow_lines_that_matter(
          temp.read().decode(errors='replace')))
      sys.stderr.flush()


def describe_devices(gpus, strategy, doing='Training'):
  """One line: where the work (`doing`) runs."""
  if strategy is not None:
    return (f'{doing} on {strategy.num_replicas_in_sync} replicas '
            f'({type(strategy).__name__}).')
  if gpus:
    return f'{doing} on 1 GPU ({gpus[0].name}).'
  name, extensions = cpu_model()
  return (f'{doing} on the CPU: {name}, {os.cpu_count()} cores'
          f'{", " if extensions else ""}{", ".join(extensions)}; no GPU.')


def setup(precision, seed, gpu_growth, batch_size, doing='Training'):
  """TensorFlow seeded on its devices, and the precision to run there:
  returns (precision, its note or None, strategy or None)."""
  has_gpu, strategy = setup_tensorflow(seed, gpu_growth, batch_size, doing)
  precision, note = resolve_precision(precision, has_gpu, cpu_has_bf16())
  return precision, note, strategy


def setup_tensorflow(seed, gpu_growth, batch_size, doing='Training'):
  """Seeds TensorFlow and chooses the devices; returns (has_gpu, strategy).

  Several hosts (TF_CONFIG set): MultiWorkerMirroredStrategy. Several
  local GPUs: MirroredStrategy, as the original. One device: no strategy.
  Prints one line naming the devices and what runs there (`doing`).
  """
  with quiet_start():
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
    print(f'Each host samples --batch_size {batch_size} sequences per '
          f'update.', flush=True)
  print(describe_devices(gpus, strategy, doing), flush=True)
  keras.utils.set_random_seed(seed)
  return bool(gpus), strategy
