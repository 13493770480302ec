"""The runs of a sweep (sweep.py) and how they run: here or on SLURM.

    run = launchers.Run(logdir, task, seed, flags)  # LOGDIR/TASK/SEED
    launchers.state_of(run, steps, action_repeat)   # (state, step, detail)
    launchers.run_local(runs, parallel)             # the runs that failed
    launchers.run_slurm(runs, configs, args)        # submitit's jobs

A run is one task and seed, a `python dreamer.py` (or the original's
program) started in this checkout's folder with its output appended to
RUN/sweep.log and the end of each attempt written to RUN/sweep-exit.json;
what its folder says (episodes on disk, the lock of a live process, its
SLURM job, its last attempt) is its state. Local: `parallel` processes at
once, each in its own process group; SIGINT or SIGTERM stops them all with
their checkpoints. SLURM: one submitit job array, a SlurmRun per run,
checkpointed on the scheduler's signal and requeued until the run reaches
its steps. sweep.py reads the command line and the request, and calls
these.
"""

import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

import config
import plotting
import replay
import runlock

ROOT = pathlib.Path(__file__).resolve().parent
# What one run takes on a CPU (README, "Results"): --parallel's default.
RUN_CPUS = 2
RUN_MEMORY_GB = 8
LOG_NAME = 'sweep.log'
EXIT_NAME = 'sweep-exit.json'
SLURM_NAME = 'sweep-slurm.json'
# The line before each attempt's output: 'sweep: PROGRAM started ...'.
STARTED = re.compile(r'sweep: \S+ started ')
# dreamer.py's own error lines (config.fail; a worker failure, non-finite
# gradients), and the prefix of TensorFlow's and absl's log lines.
OWN_ERROR = ('dreamer.py: error: ', 'error: ')
TF_LOG = re.compile(r'[IWEF]\d{4} ')
STOP_GRACE = 60  # Seconds a run that stopped short waits for its requeue.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # Stop a local sweep.


# --- The runs ---------------------------------------------------------------

class Run:
  """One task and seed: its folder and command line, of dreamer.py or of
  the original's program (`program` sweep.ORIGINAL_PROGRAM)."""

  def __init__(self, logdir, task, seed, flags, program='dreamer.py'):
    self.task, self.seed, self.program = task, seed, program
    self.logdir = pathlib.Path(logdir).absolute() / task / str(seed)
    self.argv = ['--logdir', str(self.logdir), '--task', task,
                 '--seed', str(seed)] + list(flags)

  @property
  def name(self):
    return f'{self.task}/{self.seed}'


def absolute_pythonpath(environ):
  """`environ` with PYTHONPATH's folders made absolute: the runs start in
  this checkout's folder, where a relative one (PYTHONPATH=. for a
  MODULE:FUNCTION task's module) would name another folder."""
  paths = environ.get('PYTHONPATH')
  if not paths:
    return dict(environ)
  return dict(environ, PYTHONPATH=os.pathsep.join(
      str(pathlib.Path(path).absolute()) for path in paths.split(os.pathsep)
      if path))


# --- What a run's folder says -----------------------------------------------

def steps_done(logdir, action_repeat):
  """Environment steps of the episodes on disk (as dreamer.py counts them):
  Σ (length − 1) × action_repeat of logdir/episodes/*.npz."""
  saved = config.saved_config(pathlib.Path(logdir)) or {}
  repeat = saved.get('action_repeat', action_repeat)
  return replay.count_steps(pathlib.Path(logdir) / 'episodes', repeat)


def last_return(logdir):
  """The last `test/return` of logdir/metrics.jsonl, or None."""
  try:
    returns = [record['test/return'] for record in plotting.records(logdir)
               if isinstance(record.get('test/return'), (int, float))]
  except OSError:
    return None
  return returns[-1] if returns else None


def read_json(path):
  try:
    return json.loads(pathlib.Path(path).read_text())
  except (OSError, ValueError):
    return None


def slurm_state(job):
  """squeue's state of `job` (RUNNING, PENDING, COMPLETING, ...) or None."""
  if not shutil.which('squeue'):
    return None
  result = subprocess.run(['squeue', '-h', '-j', str(job), '-o', '%T'],
                          capture_output=True, text=True)
  states = result.stdout.split()
  return states[0] if result.returncode == 0 and states else None


def queued(logdir):
  """'pending' or 'running' if the SLURM job last submitted for the run
  is in the queue, else None (also where squeue is missing)."""
  record = read_json(pathlib.Path(logdir) / SLURM_NAME)
  state = record and slurm_state(record['job_id'])
  if not state:
    return None
  return 'running' if state in ('RUNNING', 'COMPLETING') else 'pending'


def state_of(run, steps, action_repeat):
  """(state, step, detail) of a run: done (step ≥ steps), running (a live
  process holds its logdir, or its SLURM job runs), pending (never started,
  or its SLURM job waits), failed (its last attempt exited with an error;
  detail: 'exit code N: its error line'), stopped (started, short of its
  steps; detail: 'killed by SIGNAL' if a signal ended its last attempt)."""
  step = steps_done(run.logdir, action_repeat)
  if step >= steps:
    return 'done', step, ''
  if runlock.holder(run.logdir) is not None:
    return 'running', step, ''
  slurm = queued(run.logdir)
  if slurm:
    return slurm, step, ''
  last = read_json(run.logdir / EXIT_NAME) or {}
  killed = signal_name(last.get('code'))
  if last.get('failed') and not killed:  # Older records failed signals too.
    return 'failed', step, last.get('error', '')
  if step or (run.logdir / 'checkpoint.npz').exists() or last:
    return 'stopped', step, f'killed by {killed}' if killed else ''
  return 'pending', step, ''


def status(runs, configs):
  """The --status lines: one per run, then the steps done and left."""
  lines, done, left = [], 0, 0
  for run in runs:
    steps = configs[run.task].steps
    state, step, detail = state_of(
        run, steps, configs[run.task].action_repeat)
    value = last_return(run.logdir)
    value = '-' if value is None else f'{value:.1f}'
    lines.append(
        f'{run.task:30} seed {run.seed:<3} step {step:>9,} of {steps:,}  '
        f'return {value:>7}  {state}' + (f': {detail}' if detail else ''))
    done += min(step, steps)
    left += max(0, steps - step)
  lines.append(
      f'{len(runs)} runs: {done:,} environment steps done, {left:,} left')
  return lines


# --- One attempt of a run ---------------------------------------------------

def start_child(run, python=None):
  """`python dreamer.py` of the run in a new process group; its output
  appended to RUN/sweep.log after a line saying when and where it started.
  It and its environment workers ignore USR2, SLURM's warning before a time
  limit or preemption, which reaches every process of a job: submitit's
  handler stops the run instead (SlurmRun.checkpoint)."""
  run.logdir.mkdir(parents=True, exist_ok=True)
  log = open(run.logdir / LOG_NAME, 'a', buffering=1)
  restarts = os.environ.get('SLURM_RESTART_COUNT')
  log.write(f'sweep: {run.program} started {time.strftime("%Y-%m-%d %H:%M:%S")}'
            f' on {os.uname().nodename}' + (
                f', SLURM_RESTART_COUNT={restarts}' if restarts else '') + '\n')
  env = dict(absolute_pythonpath(os.environ), PYTHONUNBUFFERED='1')
  child = subprocess.Popen(
      [python or sys.executable, str(ROOT / run.program)] + run.argv,
      stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
      preexec_fn=_prepare_child)
  log.close()
  return child


def _prepare_child():
  """In the child before it starts. Its own process group keeps a
  terminal's Ctrl-C to the sweep, which stops each run with one SIGTERM (a
  second signal could stop it mid-update). SIGTERM stays as it is: the
  multiprocessing pools of dreamer.py end their workers with it. SIGINT
  and SIGTERM, which the local launcher holds back while it starts a run,
  are let through, after the sweep's handlers are reset as exec would: one
  sent already ends the child instead of running the sweep's handler."""
  os.setpgrp()
  signal.signal(signal.SIGUSR2, signal.SIG_IGN)
  for sig in STOP_SIGNALS:
    if callable(signal.getsignal(sig)):
      signal.signal(sig, signal.SIG_DFL)
  signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def record_exit(run, code, stopped=False, any_code=False):
  """RUN/sweep-exit.json: the exit code, the signal that ended the run (or
  null), whether it failed and its error (`error_of`); returns that error
  ('' for none). A run ended by a signal is stopped, not failed (the same
  command resumes it), and so is one the sweep or the scheduler had asked
  to stop that exits 0 or, with `any_code`, in any way."""
  killed = signal_name(code)
  failed = bool(code) and not killed and not (stopped and any_code)
  error = error_of(run, code) if failed else ''
  text = json.dumps({'code': code, 'failed': failed, 'error': error,
                     'signal': killed,
                     'time': time.strftime('%Y-%m-%d %H:%M:%S')})
  (run.logdir / EXIT_NAME).write_text(text + '\n')
  return error


def signal_name(code):
  """The name of the signal that ended a process of exit `code` (negative,
  as subprocess reports it, or 128 + N, as a shell does), e.g. 'SIGKILL';
  None if no signal did."""
  if not isinstance(code, int) or 0 <= code <= 128:
    return None
  try:
    return signal.Signals(-code if code < 0 else code - 128).name
  except ValueError:
    return None


def error_of(run, code):
  """'exit code N: LINE' of a failed attempt: LINE dreamer.py's last error
  line in RUN/sweep.log, else the last line of a Python traceback; just
  'exit code N' if there is neither."""
  lines = last_attempt(run.logdir / LOG_NAME)
  own = [line for line in lines if line.startswith(OWN_ERROR)]
  line = own[-1] if own else exception_line(lines)
  return (f'exit code {code}' + (f': {line.strip()}' if line else ''))[:300]


def last_attempt(path):
  """The lines of `path` (RUN/sweep.log) after the sweep last started
  dreamer.py, less blank lines and TensorFlow's log lines ([] if it
  cannot be read)."""
  try:
    lines = path.read_text(errors='replace').splitlines()
  except OSError:
    return []
  starts = [0] + [index + 1 for index, line in enumerate(lines)
                  if STARTED.match(line)]
  return [line for line in lines[starts[-1]:]
          if line.strip() and not TF_LOG.match(line)]


def exception_line(lines):
  """The last line of the last Python traceback in `lines` (its
  'SomethingError: ...'), or None."""
  starts = [index for index, line in enumerate(lines)
            if line.startswith('Traceback (most recent call last)')]
  after = lines[starts[-1] + 1:] if starts else []
  return next((line for line in after if not line[0].isspace()), None)


# --- Local launcher ---------------------------------------------------------

def default_parallel():
  """Runs that fit this machine: RUN_CPUS cores and RUN_MEMORY_GB each."""
  cores = len(os.sched_getaffinity(0))
  memory = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30
  return max(1, min(cores // RUN_CPUS, int(memory // RUN_MEMORY_GB)))


def run_local(runs, parallel):
  """Runs `runs`, `parallel` at once, until all end; SIGINT or SIGTERM
  stops them, one being started too, and starts no more (each saves its
  checkpoint). Returns the runs that failed."""
  waiting, active, failed = list(runs), {}, []
  stopping = []

  def stop(signum, frame):
    if not stopping:
      print(f'sweep.py: {signal.Signals(signum).name}: stopping '
            f'{len(active)} runs (they save their checkpoints)', flush=True)
    stopping.append(signum)
    for child in active.values():
      child.send_signal(signal.SIGTERM)

  handlers = {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}
  try:
    while waiting or active:
      while waiting and len(active) < parallel and not stopping:
        start_held(waiting.pop(0), active, stopping)
      time.sleep(0.2)
      for run, child in list(active.items()):
        if child.poll() is None:
          continue
        del active[run]
        error = record_exit(run, child.returncode, bool(stopping))
        print(f'sweep.py: {run.name} exited {child.returncode}'
              + (f': {error}' if error else ''), flush=True)
        if error:
          failed.append(run)
      if stopping:
        waiting.clear()
  finally:
    for sig, handler in handlers.items():
      signal.signal(sig, handler)
  return failed


def start_held(run, active, stopping):
  """Starts the run into `active` (run: child) unless `stopping`, SIGINT
  and SIGTERM held back until it is there, where the handler finds it. A
  signal that another thread took runs the handler even so: then the
  child is sent its SIGTERM here."""
  held = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
  try:
    if stopping:
      return
    print(f'sweep.py: start {run.name}', flush=True)
    active[run] = child = start_child(run)
    if stopping:
      child.send_signal(signal.SIGTERM)
  finally:
    signal.pthread_sigmask(signal.SIG_SETMASK, held)


# --- SLURM launcher ---------------------------------------------------------

class SlurmRun:
  """The function of a run's SLURM job (a submitit Checkpointable).

  Runs dreamer.py for the run until it exits. The scheduler's SIGTERM
  (requeue, scancel, the end of a time limit) reaches dreamer.py and its
  environment workers; submitit's USR2 (a preemption or the time limit's
  warning) becomes a SIGTERM to dreamer.py (`checkpoint`). Either way it
  saves its checkpoint and exits (its environment workers ignore SIGTERM;
  any exit code after the signal counts as a stop here). Finished only when
  the episodes on disk reach `steps`: a run stopped short is not finished,
  so the function waits for submitit's USR2 (which calls `checkpoint`, then
  requeues the job) or for SLURM to end the job; after STOP_GRACE seconds
  without either it raises. A run exiting with an error it was not asked for raises with
  its last error line.
  """

  def __init__(self, run, steps, action_repeat, python):
    self.run, self.steps = run, steps
    self.action_repeat, self.python = action_repeat, python
    self._child, self._signalled = None, False

  def __call__(self):
    if steps_done(self.run.logdir, self.action_repeat) >= self.steps:
      return f'{self.run.name}: already done'
    self._signalled = False
    self._chain_sigterm()
    self._child = start_child(self.run, self.python)
    while self._child.poll() is None:  # Not wait(): `checkpoint` waits too.
      time.sleep(0.5)
    step = steps_done(self.run.logdir, self.action_repeat)
    error = record_exit(self.run, self._child.returncode,
                        stopped=self._signalled or step < self.steps,
                        any_code=self._signalled)
    if error:
      raise RuntimeError(f'{self.run.name}: {error}')
    if step < self.steps:
      self._await_requeue()
      raise RuntimeError(
          f'{self.run.name} stopped at step {step:,} of {self.steps:,} '
          f'without a requeue; run the sweep again to resume it')
    return f'{self.run.name}: done at step {step:,}'

  def _await_requeue(self):
    """Up to STOP_GRACE seconds for submitit's USR2 (its handler requeues
    and exits); ends the process at once if SLURM is already ending the
    job (`scontrol requeue`, scancel), as it would after its KillWait."""
    job = os.environ.get('SLURM_JOB_ID')
    for _ in range(STOP_GRACE):
      time.sleep(1)
      if job and slurm_state(job) not in ('RUNNING', None):
        raise SystemExit(0)

  def _stop_child(self):
    """SIGTERM to dreamer.py: it stops after the current update or step and
    saves (SIGTERM, unlike a second SIGINT, never stops it mid-update)."""
    if self._child and self._child.poll() is None:
      self._child.send_signal(signal.SIGTERM)

  def _chain_sigterm(self):
    """Notes a SIGTERM, then hands it to submitit's handler."""
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum, frame):
      self._signalled = True
      if callable(previous):
        previous(signum, frame)

    signal.signal(signal.SIGTERM, handler)

  def checkpoint(self, *args, **kwargs):
    """On submitit's USR2: stops dreamer.py (it saves its checkpoint) and
    returns this function, to run again after the requeue."""
    import submitit
    child = self._child
    if child is not None and child.poll() is None:
      self._stop_child()
      try:
        child.wait(timeout=80)
      except subprocess.TimeoutExpired:
        child.kill()
      record_exit(self.run, child.wait(), stopped=True, any_code=True)
    return submitit.helpers.DelayedSubmission(
        SlurmRun(self.run, self.steps, self.action_repeat, self.python))


def sbatch_options(pairs):
  """{key: value} of --sbatch KEY=VALUE (KEY alone: a flag)."""
  options = {}
  for pair in pairs:
    key, sep, value = pair.partition('=')
    key = key.lstrip('-')
    if not key:
      config.fail(f'--sbatch {pair!r}: expected KEY=VALUE, e.g. '
                  f'account=abc', prog='sweep.py')
    options[key] = value if sep else True
  return options


def run_slurm(runs, configs, args):
  """Submits one job array of `runs`; returns the submitit jobs."""
  import submitit
  python = str(pathlib.Path(sys.executable).absolute())
  executor = submitit.AutoExecutor(
      folder=pathlib.Path(args.logdir).absolute() / '.submitit' / '%A',
      cluster='slurm', slurm_python=python,
      slurm_max_num_timeout=args.max_requeues)
  executor.update_parameters(
      slurm_setup=[f'export PYTHONPATH={ROOT}${{PYTHONPATH:+:$PYTHONPATH}}'],
      name='dreamer-sweep', timeout_min=args.time, cpus_per_task=args.cpus,
      gpus_per_node=args.gpus, mem_gb=args.mem, nodes=1, tasks_per_node=1,
      slurm_array_parallelism=args.parallel or len(runs),
      slurm_additional_parameters=sbatch_options(args.sbatch))
  if args.partition:
    executor.update_parameters(slurm_partition=args.partition)
  with executor.batch():
    # SlurmRun and Run are pickled by module name (launchers, never
    # __main__): the job imports them from ROOT, on its PYTHONPATH.
    jobs = [executor.submit(SlurmRun(
        run, configs[run.task].steps, configs[run.task].action_repeat,
        python)) for run in runs]
  for run, job in zip(runs, jobs):
    run.logdir.mkdir(parents=True, exist_ok=True)
    (run.logdir / SLURM_NAME).write_text(json.dumps({'job_id': job.job_id}))
    print(f'sweep.py: {run.name} submitted as SLURM job {job.job_id}',
          flush=True)
  return jobs


def wait_slurm(jobs, runs, configs):
  """Until every job has left the queue; returns the runs not done."""
  while any(queued(run.logdir) for run in runs):
    time.sleep(5)
  return [run for run in runs if state_of(
      run, configs[run.task].steps,
      configs[run.task].action_repeat)[0] != 'done']
