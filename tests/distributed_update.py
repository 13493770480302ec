"""One update of a tiny agent on one device, two replicas or as one worker.

    python tests/distributed_update.py MODE INPUTS.npz OUTPUT.npz

MODE `single` trains without a strategy, `mirrored` under MirroredStrategy
over two logical CPU devices, `worker` under MultiWorkerMirroredStrategy as
the worker that TF_CONFIG names, on its contiguous part of the batch and
noise. INPUTS holds `w/NAME` weights, `b/KEY` the global batch and `n/KEY`
the noise; OUTPUT gets the weights after the update (`w/NAME`) and the
metrics (`m/NAME`). Run by tests/test_distributed.py in fresh processes,
since devices must be set before TensorFlow starts.
"""

import json
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / 'tests'))
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '1')

import numpy as np  # noqa: E402


def split(arrays, axes, index, count):
  return {key: np.split(value, count, axes[key])[index]
          for key, value in arrays.items()}


def main(mode, inputs, output):
  import tensorflow as tf
  strategy = None
  if mode == 'mirrored':
    cpu = tf.config.list_physical_devices('CPU')[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
  elif mode == 'worker':
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
  import models
  import networks
  from helpers import tiny_config
  with np.load(inputs) as data:
    arrays = dict(data)
  group = lambda prefix: {k[len(prefix):]: v for k, v in arrays.items()
                          if k.startswith(prefix)}
  weights, batch, noise = group('w/'), group('b/'), group('n/')
  if mode == 'worker':
    task = json.loads(os.environ['TF_CONFIG'])['task']['index']
    workers = strategy.num_replicas_in_sync
    batch = split(batch, {k: 0 for k in batch}, task, workers)
    noise = split(noise, models.NOISE_AXES, task, workers)
  agent = models.Dreamer(tiny_config(batch_size=4), 2, strategy=strategy)
  networks.load_weights(agent.modules, weights)
  metrics = agent.train(batch, noise)
  result = {f'w/{k}': v for k, v in networks.export_weights(
      agent.modules).items()}
  result.update({f'm/{k}': np.asarray(v) for k, v in metrics.items()})
  np.savez(output, **result)


if __name__ == '__main__':
  main(*sys.argv[1:])
