"""The original's Dreamer with the two things original_train.py adds around
it: copies kept at fixed environment steps (`--keep_checkpoints`, as
dreamer.py's) and a stop on SIGTERM or Ctrl-C that its own resume picks up
where the run stood. A subclass: its own methods run unchanged inside.

Only the standard library and kept.py here: this module runs beside the
original's modules, which take the names `tools`, `wrappers`, `dreamer`.
"""

import pathlib
import signal
import threading

import kept

STOP = threading.Event()  # Set by SIGTERM or Ctrl-C once the agent exists.
BUILT = threading.Event()  # Set when the agent is constructed.


class Stopped(Exception):
  """The run stopped at the start of a training episode, saved."""


def subclass(dreamer_class, logdir, keep=()):
  """A subclass of the original's Dreamer that

  - keeps a copy of its variables as LOGDIR/kept/variables-STEP.pkl when
    a step of `keep` is due (kept.due). The original saves only after each
    collection, so a copy is also made after a call of the agent: the
    first call at a step >= K (after the training due at that step, which
    the original does at the start of a call) and, at the same step, any
    later call that trained. So K's copy holds what the test episode at K
    acts with, as ours does;
  - once STOP is set, at the first call that starts a training episode
    (every episode before it is on disk) saves variables.pkl and raises
    Stopped: the original's resume then counts the same steps from its
    episodes and loads these weights (with a fresh Adam, as it always
    does).
  """
  logdir = pathlib.Path(logdir)
  folder = logdir / kept.FOLDER

  class Harnessed(dreamer_class):

    def __init__(self, *args, **kwargs):
      super().__init__(*args, **kwargs)
      BUILT.set()

    def __call__(self, obs, reset, state=None, training=True):
      step = int(self._step.numpy())
      if STOP.is_set() and training and reset.all():
        self.save(logdir / 'variables.pkl')
        raise Stopped(step)
      last = self._should_train._last
      result = super().__call__(obs, reset, state, training)
      self._keep(step, trained=self._should_train._last != last)
      return result

    def save(self, filename):
      super().save(filename)
      self._keep(int(self._step.numpy()), trained=True)

    def _keep(self, step, trained):
      if not keep:
        return
      if not hasattr(self, '_copies'):  # Read once: only this run writes.
        self._copies = kept.copies(folder, 'variables', '.pkl')
      due = kept.due(keep, self._copies, step)
      if due and (trained or step not in self._copies):
        self._copies[step] = kept.store(
            folder / f'variables-{step}.pkl', step,
            lambda temp: self._save_at(temp, step), due,
            step in self._copies)

    def _save_at(self, filename, step):
      """The original's save with its step variable at `step` (a training
      call has already counted its own step when the copy is made)."""
      now = self._step.numpy()
      self._step.assign(step)
      try:
        dreamer_class.save(self, filename)
      finally:
        self._step.assign(now)

  return Harnessed


def request_stop(signum, frame):
  """Signal handler: before the agent exists (prefill), stops at once
  (episodes are saved as they end); after, sets STOP; a second Ctrl-C
  stops at once."""
  if not BUILT.is_set() or (STOP.is_set() and signum == signal.SIGINT):
    raise KeyboardInterrupt
  STOP.set()
  print(f'\n{signal.Signals(signum).name}: stopping at the start of the next '
        f'training episode, saved (Ctrl-C again stops at once).', flush=True)


def handle_signals():
  """SIGTERM and SIGINT call request_stop from now on."""
  for sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(sig, request_stop)
