"""One run per logdir: an exclusive lock on LOGDIR/.lock while a run holds it.

    with runlock.LogdirLock(logdir):   # LogdirLocked if another run holds it
      ...                              # read and write the logdir
    runlock.holder(logdir)             # None, or {"pid", "host", "started"}

The lock is `filelock`'s Unix lock (`flock`): the operating system releases
it when its process ends in any way (kill -9, out of memory, a node that
fails), so no lock outlives its run. `filelock` truncates the lock file when
it opens it, so the holder's pid, host and start time live beside it in
LOGDIR/.lock-holder.json, written atomically after the lock is taken. Where
the filesystem cannot lock files (some network filesystems), `__enter__`
prints one warning line and the run goes on unlocked.
"""

import errno
import json
import os
import pathlib
import socket
import time

import filelock

LOCK_NAME = '.lock'
HOLDER_NAME = '.lock-holder.json'
# What flock raises where the filesystem cannot lock.
_NO_LOCKING = {errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL}


class LogdirLocked(Exception):
  """Another live process holds the logdir; the message (one line) names it
  and says what to do."""


class LogdirLock:
  """Context manager: holds LOGDIR/.lock from `__enter__` to `__exit__`.

  `__enter__` creates the logdir if needed and takes the lock without
  waiting: LogdirLocked if a live process holds it; OSError if the logdir
  cannot be created or written; one warning line and no lock where the
  filesystem cannot lock. Then it writes .lock-holder.json, which
  `__exit__` removes before it releases the lock.
  """

  def __init__(self, logdir):
    self.logdir = pathlib.Path(logdir).expanduser()
    self.locked = False
    self._lock = _file_lock(self.logdir)

  def __enter__(self):
    self.logdir.mkdir(parents=True, exist_ok=True)
    try:
      self._lock.acquire(blocking=False)
    except filelock.Timeout:
      raise LogdirLocked(_locked_message(self.logdir)) from None
    except OSError as error:
      if error.errno not in _NO_LOCKING:
        raise
      print(f'Warning: the filesystem of {self.logdir} cannot lock files '
            f'({error.strerror}); the run goes on unlocked, so make sure no '
            f'other run uses this logdir.', flush=True)
      return self
    self.locked = True
    _write_holder(self.logdir / HOLDER_NAME)
    return self

  def __exit__(self, *exc):
    if self.locked:
      (self.logdir / HOLDER_NAME).unlink(missing_ok=True)
      self._lock.release()
      self.locked = False
    return False


def holder(logdir):
  """None if no live process holds `logdir`'s lock; else the holder's
  {"pid", "host", "started"} ({} if it has not written them yet). Tries
  the lock without waiting and releases it at once."""
  logdir = pathlib.Path(logdir).expanduser()
  if not (logdir / LOCK_NAME).exists():
    return None
  lock = _file_lock(logdir)
  try:
    lock.acquire(blocking=False)
  except filelock.Timeout:
    return _read_holder(logdir)
  except OSError:
    return None  # Read-only or unlockable: nobody can hold it.
  lock.release()
  return None


def _file_lock(logdir):
  return filelock.FileLock(
      str(logdir / LOCK_NAME), thread_local=False, fallback_to_soft=False)


def _write_holder(path):
  """{"pid", "host", "started"} to `path`, atomically."""
  info = {'pid': os.getpid(), 'host': socket.gethostname(),
          'started': time.strftime('%Y-%m-%d %H:%M:%S %Z')}
  temp = path.with_name(f'{path.name}.{os.getpid()}.tmp')
  try:
    temp.write_text(json.dumps(info) + '\n')
    os.replace(temp, path)
  finally:
    temp.unlink(missing_ok=True)


def _read_holder(logdir):
  try:
    return json.loads((logdir / HOLDER_NAME).read_text())
  except (OSError, ValueError):
    return {}


def _locked_message(logdir):
  info = _read_holder(logdir)
  who = (f'process {info.get("pid", "?")} on {info.get("host", "?")}, '
         f'started {info.get("started", "?")}')
  return (f'--logdir {logdir} is in use by another run ({who}); wait for it '
          f'to finish or stop it (kill -TERM {info.get("pid", "PID")} on '
          f'{info.get("host", "its host")}), or pass another --logdir')
