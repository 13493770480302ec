"""Environment workers: each environment runs in its own process.

On these machines dm_control and TensorFlow cannot share a process, and a
forked child of a TensorFlow process hangs, so every environment runs in a
worker started with the `spawn` method, which imports only the module of
its constructor (wrappers.py) and never TensorFlow. `Async` is the main
process's proxy of one worker; `step_all` and `reset_all` drive a list of
them, one after another or all at once.

A worker that raises, dies or does not answer within its timeout raises
`WorkerError` in the main process, with the worker's traceback.

This module imports neither TensorFlow nor dm_control.
"""

import contextlib
import functools
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
import traceback
import types
import weakref

from config import CHOICES

PARALLEL = CHOICES['parallel']


def step_all(envs, actions, parallel):
  """Steps each env with its action; returns their (obs, reward, done,
  info). `parallel` none: one after another; process or thread: all
  workers at once (both mean the same: the workers are processes)."""
  return _run_all([functools.partial(_start, env, 'step', action)
                   for env, action in zip(envs, actions)], parallel)


def reset_all(envs, parallel):
  """Resets each env; returns their observations."""
  return _run_all([functools.partial(_start, env, 'reset') for env in envs],
                  parallel)


def _run_all(starts, parallel):
  if parallel not in PARALLEL:
    raise ValueError(
        f"unknown parallel strategy '{parallel}'; allowed: "
        + ', '.join(PARALLEL))
  if parallel == 'none':
    return [start()() for start in starts]
  return [promise() for promise in [start() for start in starts]]


def _start(env, method, *args):
  """Starts env.method(*args); returns a promise of its result."""
  if getattr(env, 'nonblocking', False):
    return getattr(env, method)(*args, blocking=False)
  result = getattr(env, method)(*args)
  return lambda: result


def _once(compute):
  cache = []

  def promise():
    if not cache:
      cache.append(compute())
    return cache[0]
  return promise


class WorkerError(RuntimeError):
  """An environment worker failed, died or stopped answering."""


class Async:
  """Proxy of an environment that runs in a spawned worker process.

  `ctor` builds the environment in the worker; it must be picklable and
  importable there (a module-level function or a functools.partial of one,
  not something defined in the main script: the worker does not run it).
  A worker that raises, dies or takes longer than `timeout` seconds to
  answer (it is then killed) raises WorkerError here, with its traceback.
  """

  nonblocking = True

  def __init__(self, ctor, timeout=None):
    context = multiprocessing.get_context('spawn')
    self._conn, child_conn = context.Pipe()
    self._process = context.Process(
        target=_worker, args=(ctor, child_conn), daemon=True)
    try:
      with main_module_hidden():
        self._process.start()
    except (pickle.PicklingError, AttributeError, TypeError) as error:
      self._conn.close()
      raise TypeError(
          f'the environment constructor {ctor!r} must be picklable: a '
          'module-level function or a functools.partial of one') from error
    finally:
      child_conn.close()
    self._timeout = timeout
    self._lock = threading.Lock()
    self._next_id = 0
    self._results = {}
    self._error = None
    self._spaces = {}
    self._finalizer = weakref.finalize(
        self, _stop_worker, self._conn, self._process)

  @property
  def pid(self):
    return self._process.pid

  @property
  def obs_space(self):
    return self._space('obs_space')

  @property
  def act_space(self):
    return self._space('act_space')

  def access(self, name, blocking=True):
    return self._request('access', name, (), {}, blocking)

  def call(self, name, *args, blocking=True, **kwargs):
    return self._request('call', name, args, kwargs, blocking)

  def reset(self, blocking=True):
    return self.call('reset', blocking=blocking)

  def step(self, action, blocking=True):
    return self.call('step', action, blocking=blocking)

  def close(self):
    self._finalizer()

  def _space(self, name):
    if name not in self._spaces:
      self._spaces[name] = self.access(name)
    return self._spaces[name]

  def _request(self, kind, name, args, kwargs, blocking):
    with self._lock:
      self._check_usable()
      request_id = self._next_id
      self._next_id += 1
      try:
        self._conn.send((request_id, kind, name, args, kwargs))
      except (BrokenPipeError, ConnectionResetError, OSError):
        self._died()
    promise = _once(functools.partial(self._receive, request_id))
    return promise() if blocking else promise

  def _receive(self, request_id):
    with self._lock:
      while request_id not in self._results:
        self._check_usable()
        request, value = self._read()
        self._results[request] = value
      return self._results.pop(request_id)

  def _read(self):
    waited, last = 0.0, time.monotonic()
    try:
      while not self._conn.poll(0.5):
        if not self._process.is_alive():
          self._died()
        now = time.monotonic()
        # A longer gap means this process was suspended (Ctrl-Z), not that
        # the worker is slow.
        waited += min(now - last, 5.0)
        last = now
        if self._timeout and waited > self._timeout:
          self._process.kill()
          self._fail(
              f'environment worker {self.pid} did not answer within '
              f'{self._timeout:g} s and was killed')
      message = self._conn.recv()
    except (EOFError, ConnectionResetError):
      self._died()
    if message[0] == 'error':
      lines = message[1].strip().splitlines()
      self._fail(
          f'environment worker failed: {lines[-1]}\n'
          f'worker traceback:\n{message[1]}')
    return message[1:]

  def _check_usable(self):
    if self._error:
      raise WorkerError(self._error)
    if not self._finalizer.alive:
      raise WorkerError('environment worker was closed')

  def _died(self):
    self._process.join(1)
    self._fail(
        f'environment worker {self.pid} died with exit code '
        f'{self._process.exitcode}')

  def _fail(self, message):
    self._error = message
    raise WorkerError(message)


@contextlib.contextmanager
def main_module_hidden():
  """Keeps spawn from re-running the main script (and its TensorFlow import)
  in the worker."""
  main = sys.modules.get('__main__')
  sys.modules['__main__'] = types.ModuleType('__main__')
  try:
    yield
  finally:
    sys.modules['__main__'] = main


def _stop_worker(conn, process):
  try:
    conn.send((None, 'close', None, (), {}))
  except (OSError, ValueError):
    pass
  process.join(5)
  if process.is_alive():
    process.terminate()
    process.join(1)
  if process.is_alive():
    process.kill()
    process.join(1)
  conn.close()


def _worker(ctor, conn):
  # Ctrl-C reaches the whole process group, and a scheduler's SIGTERM every
  # process of a job: the parent finishes its step and does the closing (a
  # worker whose parent died ends by itself, below).
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  signal.signal(signal.SIGTERM, signal.SIG_IGN)
  parent = os.getppid()
  env = None
  try:
    env = ctor()
    while True:
      if not conn.poll(1.0):
        if os.getppid() != parent:
          break
        continue
      request_id, kind, name, args, kwargs = conn.recv()
      if kind == 'close':
        break
      value = getattr(env, name)
      if kind == 'call':
        value = value(*args, **kwargs)
      conn.send(('result', request_id, value))
  except (EOFError, BrokenPipeError, ConnectionResetError):
    pass
  except Exception:
    with contextlib.suppress(OSError):
      conn.send(('error', traceback.format_exc()))
  finally:
    if env is not None and hasattr(env, 'close'):
      with contextlib.suppress(Exception):
        env.close()
    conn.close()
