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

A probe never turns a run away. `holder()` never takes the exclusive lock:
it asks for a shared one on a read-only descriptor and closes it at once,
so probes never conflict with each other, and with a run starting only
between their flock and close system calls. `__enter__` tries the lock
every POLL seconds for up to WAIT seconds before it refuses, so a run that
meets a probe waits a moment instead; a second run is refused after WAIT
seconds.
"""

import errno
import fcntl
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
# What flock raises where another process holds the lock.
_HELD = {errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES}
WAIT = 2.0  # Seconds `__enter__` tries the lock before it refuses.
POLL = 0.01  # Seconds between its tries.


class LogdirLocked(Exception):
  """Another live process holds the logdir; the message (one line) names it
  and says what to do."""


class LogdirLock:
  """Context manager: holds LOGDIR/.lock from `__enter__` to `__exit__`.

  `__enter__` creates the logdir if needed and takes the lock, trying for
  up to WAIT seconds (a probe, `holder()`, is in its way for microseconds):
  LogdirLocked if a live process holds it all that time; OSError if the
  logdir cannot be created or written; one warning line and no lock where
  the filesystem cannot lock. Then it writes .lock-holder.json, which
  `__exit__` removes before it releases the lock.
  """

  def __init__(self, logdir):
    self.logdir = pathlib.Path(logdir).expanduser()
    self.locked = False
    self._lock = _file_lock(self.logdir)

  def __enter__(self):
    self.logdir.mkdir(parents=True, exist_ok=True)
    try:
      self._lock.acquire(timeout=WAIT, poll_interval=POLL)
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
  {"pid", "host", "started"} ({} if it has not written them yet). Never
  takes the run's lock (`_is_held`)."""
  logdir = pathlib.Path(logdir).expanduser()
  try:
    held = _is_held(logdir / LOCK_NAME)
  except OSError:
    return None  # No lock file, or a filesystem that cannot lock.
  return _read_holder(logdir) if held else None


def _is_held(path):
  """Whether a process holds `path`'s exclusive lock: True if a shared
  lock (which only the exclusive one conflicts with) is refused, else
  False; the shared lock, if granted, ends at once with its descriptor."""
  fd = os.open(path, os.O_RDONLY)
  try:
    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
  except OSError as error:
    if error.errno in _HELD:
      return True
    raise
  finally:
    os.close(fd)
  return False


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
