"""Tasks × seeds of dreamer.py, here or on a SLURM cluster, resumable.

    python sweep.py --logdir runs/paper --tasks paper --seeds 0 1 2 3 4 \\
        --steps 1e6 [--launcher slurm --partition gpu --gpus 1 ...] \\
        [any dreamer.py flag]
    python sweep.py --logdir runs/paper --status  # one line per run
    python sweep.py --logdir runs/paper           # again: resume, skip

Run TASK, SEED goes to LOGDIR/TASK/SEED with `--task TASK --seed SEED` and
the other flags (the layout plotting.py reads). The flags are checked once,
for every task, before anything starts. The same command again skips the
finished runs, resumes the stopped ones (from their checkpoint and
episodes) and leaves alone the ones a live process holds (runlock.py) or
that wait in the SLURM queue. Each run's output is appended to
RUN/sweep.log and the end of each attempt written to RUN/sweep-exit.json.

A sweep records what it was asked in LOGDIR/sweep.json as it starts (its
tasks, seeds, dreamer.py flags and launcher options): a later command
takes from there whatever it leaves out, so --logdir alone reruns the
sweep or, with --status, reports on it. A rerun may add tasks and seeds
(the union is run and recorded) and change the launcher's options; it
refuses dreamer.py flags that set another config than the recorded ones,
which the runs keep. --status with --tasks or --seeds reports on those.

Local (default): `--parallel N` runs at once, each its own `python
dreamer.py` process; Ctrl-C or SIGTERM stops them all with their
checkpoints. SLURM (`--launcher slurm`, through submitit): one job array,
a job per run; a job stopped by the scheduler (time limit, preemption,
`scontrol requeue`) has its run checkpoint on the signal and is requeued
until the run reaches --steps.
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
import tasks
import tools

ROOT = pathlib.Path(__file__).resolve().parent
# The paper's 20 DeepMind Control tasks (the runs of the original's
# scores/dreamer.json, 5 seeds each).
PAPER_TASKS = (
    'dmc_acrobot_swingup', 'dmc_cartpole_balance',
    'dmc_cartpole_balance_sparse', 'dmc_cartpole_swingup',
    'dmc_cartpole_swingup_sparse', 'dmc_cheetah_run', 'dmc_cup_catch',
    'dmc_finger_spin', 'dmc_finger_turn_easy', 'dmc_finger_turn_hard',
    'dmc_hopper_hop', 'dmc_hopper_stand', 'dmc_pendulum_swingup',
    'dmc_quadruped_run', 'dmc_quadruped_walk', 'dmc_reacher_easy',
    'dmc_reacher_hard', 'dmc_walker_run', 'dmc_walker_stand',
    'dmc_walker_walk')
# What one run takes on a CPU (README, "Results"): --parallel's default.
RUN_CPUS = 2
RUN_MEMORY_GB = 8
LOG_NAME = 'sweep.log'
EXIT_NAME = 'sweep-exit.json'
SLURM_NAME = 'sweep-slurm.json'
REQUEST_NAME = 'sweep.json'  # LOGDIR/sweep.json: what the sweep was asked.
REQUEST_LISTS = ('tasks', 'seeds', 'flags')  # What a rerun needs of it.
SET_BY_SWEEP = ('logdir', 'task', 'seed')
# The line before each attempt's output: 'sweep: PROGRAM started ...'.
STARTED = re.compile(r'sweep: \S+ started ')
# dreamer.py's own error lines (config.fail; a worker failure, non-finite
# gradients), and the prefix of TensorFlow's and absl's log lines.
OWN_ERROR = ('dreamer.py: error: ', 'error: ')
TF_LOG = re.compile(r'[IWEF]\d{4} ')
STOP_GRACE = 60  # Seconds a run that stopped short waits for its requeue.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # Stop a local sweep.
# The launcher's options with their defaults; a rerun that leaves one out
# takes its value from LOGDIR/sweep.json (SLURM's under its 'slurm' key).
LAUNCH_DEFAULTS = {'launcher': 'local', 'parallel': None}
ORIGINAL_PROGRAM = 'original_train.py'  # The original's, run by --original.
ORIGINAL_FOLDER = 'original'  # LOGDIR/original/TASK/SEED: its runs.
SLURM_DEFAULTS = {'partition': None, 'gpus': 0, 'cpus': RUN_CPUS,
                  'mem': RUN_MEMORY_GB, 'time': 24 * 60, 'max_requeues': 100,
                  'sbatch': []}


def fail(message):
  config.fail(message, prog='sweep.py')


# --- The runs ---------------------------------------------------------------

class Run:
  """One task and seed: its folder and command line, of dreamer.py or of
  the original's program (`program` ORIGINAL_PROGRAM)."""

  def __init__(self, logdir, task, seed, flags, program='dreamer.py'):
    self.task, self.seed, self.program = task, seed, program
    self.logdir = pathlib.Path(logdir).absolute() / task / str(seed)
    self.argv = ['--logdir', str(self.logdir), '--task', task,
                 '--seed', str(seed)] + list(flags)

  @property
  def name(self):
    return f'{self.task}/{self.seed}'


def expand_tasks(tasks):
  """--tasks with `paper` replaced by PAPER_TASKS, duplicates dropped."""
  names = []
  for task in tasks:
    names += PAPER_TASKS if task == 'paper' else [task]
  return list(dict.fromkeys(names))


def check_flags(task_list, flags):
  """The config of every task with `flags` (dreamer.py's flags without
  --logdir, --task and --seed), once every task is known to exist
  (tasks.check, as dreamer.py checks it); else dreamer.py's one-line error
  (exit 2)."""
  refuse_sweep_keys(flags)
  configs = {task: config.parse_args(
      ['--logdir', '.', '--task', task] + list(flags)) for task in task_list}
  try:
    tasks.check(task_list, configs)
  except ValueError as error:
    config.fail(error)
  return configs


def refuse_sweep_keys(flags):
  """A one-line error if dreamer.py flags `flags` set what the sweep sets."""
  for key in SET_BY_SWEEP:
    if any(flag == f'--{key}' or flag.startswith(f'--{key}=')
           for flag in flags):
      fail(f'--{key} is set by the sweep for each run (pass --logdir, '
           f'--tasks and --seeds of sweep.py)')


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
      fail(f'--sbatch {pair!r}: expected KEY=VALUE, e.g. account=abc')
    options[key] = value if sep else True
  return options


def run_slurm(runs, configs, args):
  """Submits one job array of `runs`; returns the submitit jobs."""
  import submitit
  import sweep  # Pickled by module name, imported in the job from ROOT.
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
    jobs = [executor.submit(sweep.SlurmRun(
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


# --- Command line -----------------------------------------------------------

def make_parser():
  parser = config.Parser(
      prog='sweep.py', description=__doc__.split('\n\n')[0],
      epilog='Other flags go to every dreamer.py run (python dreamer.py '
      '--help lists them). A sweep records its command in '
      'LOGDIR/sweep.json, where a later one finds what it leaves out: '
      '--status and a rerun need only --logdir.')
  parser.add_argument('--logdir', required=True, type=pathlib.Path,
                      help='the sweep folder: runs go to LOGDIR/TASK/SEED')
  parser.add_argument('--tasks', nargs='+', metavar='TASK',
                      help='--task values; paper: the paper\'s 20 DMC tasks')
  parser.add_argument('--seeds', nargs='+', type=int, metavar='SEED')
  parser.add_argument('--original', type=pathlib.Path, metavar='PATH',
                      help="run the original's program (original_train.py) "
                      'with a checkout of danijar/dreamer at PATH instead '
                      'of ours, into LOGDIR/original/TASK/SEED')
  parser.add_argument('--status', action='store_true',
                      help='print one line per run and the steps done and '
                      'left; start nothing')
  parser.add_argument('--launcher', choices=('local', 'slurm'),
                      help='default: local')
  parser.add_argument('--parallel', metavar='N',
                      help='runs at once (local default: what fits the cores '
                      f'and memory, {RUN_CPUS} cores and {RUN_MEMORY_GB} GB '
                      'a run; SLURM: the array\'s limit, default none); '
                      'none, thread or process go to dreamer.py\'s --parallel')
  parser.add_argument('--wait', action='store_true',
                      help='SLURM: return when every job has left the queue')
  add_slurm_flags(parser.add_argument_group('SLURM, per run'))
  return parser


def add_slurm_flags(slurm):
  """Adds the per-run SLURM flags to the group `slurm`."""
  default = SLURM_DEFAULTS
  slurm.add_argument('--partition', help='default: the cluster\'s')
  slurm.add_argument('--gpus', type=int, help=f'default: {default["gpus"]}')
  slurm.add_argument('--cpus', type=int, help=f'default: {default["cpus"]}')
  slurm.add_argument('--mem', type=float, metavar='GB',
                     help=f'default: {default["mem"]}')
  slurm.add_argument('--time', type=int, metavar='MINUTES',
                     help='time limit of one job; a run that needs more is '
                     'requeued from its checkpoint (default: '
                     f'{default["time"]})')
  slurm.add_argument('--max_requeues', type=int,
                     help='time limits a run may hit (preemptions are not '
                     f'counted; default: {default["max_requeues"]})')
  slurm.add_argument('--sbatch', nargs='+', metavar='KEY=VALUE',
                     help='more sbatch options, e.g. account=abc qos=low')


# --- What the sweep was asked: LOGDIR/sweep.json ----------------------------

def read_request(logdir):
  """The request LOGDIR/sweep.json records (tasks, expanded_tasks, seeds,
  flags, the launcher's options), or None where no sweep started."""
  path = logdir / REQUEST_NAME
  if not path.exists():
    return None
  request = read_json(path)
  if not (isinstance(request, dict) and all(
      isinstance(request.get(key), list) for key in REQUEST_LISTS)):
    fail(f'{path} is not a sweep\'s record of tasks, seeds and flags; move '
         f'it away and pass them again')
  return request


def complete_runs(args, recorded):
  """Sets args.tasks and args.seeds the command leaves out to those of
  `recorded` (the request, or None); a sweep, unlike --status, also joins
  the recorded ones to those given."""
  if recorded is None:
    missing = [f'--{key}' for key in ('tasks', 'seeds')
               if getattr(args, key) is None]
    if missing:
      fail(f'{" and ".join(missing)} {"are" if len(missing) > 1 else "is"} '
           f'required: {args.logdir} holds no {REQUEST_NAME} (no sweep '
           f'started there)')
    return
  for key in ('tasks', 'seeds'):
    given = getattr(args, key)
    if given is None or not args.status:
      given = list(dict.fromkeys(recorded[key] + (given or [])))
    setattr(args, key, given)


def complete_launcher(args, recorded):
  """Sets each launcher option the command leaves out to its value in
  `recorded` (the request, or None), else to its default."""
  recorded = recorded or {}
  saved = dict(recorded, **recorded.get('slurm', {}))
  for key, default in {**LAUNCH_DEFAULTS, **SLURM_DEFAULTS}.items():
    if getattr(args, key) is None:
      setattr(args, key, saved.get(key, default))


def recorded_flags(args, flags, recorded):
  """The recorded dreamer.py flags, which the runs keep: the command's
  `flags` may be none or set the same config, but for --steps (a rerun
  may train the runs longer, as dreamer.py's resume may); else a one-line
  error names the keys they change."""
  if not flags:
    return recorded['flags']
  task = expand_tasks(args.tasks)[0]
  changes = flag_changes(recorded['flags'], flags, task)
  if changes:
    fail(f'{args.logdir} holds a sweep started with other dreamer.py '
         f'flags ({"; ".join(changes)}), which its runs keep: pass the same '
         f'flags (or none: the recorded ones; --steps may change), or another'
         f' --logdir for a new sweep')
  steps = [config.parse_args(['--logdir', '.', '--task', task] + list(given))
           .steps for given in (recorded['flags'], flags)]
  if steps[0] == steps[1]:
    return recorded['flags']
  return without_flag(recorded['flags'], 'steps') + ['--steps', str(steps[1])]


def without_flag(flags, key):
  """`flags` without `--KEY VALUE` and `--KEY=VALUE`."""
  kept, skip = [], False
  for flag in flags:
    if skip:
      skip = False
    elif flag == f'--{key}':
      skip = True
    elif not flag.startswith(f'--{key}='):
      kept.append(flag)
  return kept


def flag_changes(recorded, flags, task):
  """'--KEY RECORDED there, NEW now' for each config key that dreamer.py
  flags `flags` set otherwise than `recorded` for `task` ([] if only
  --configs or --steps differ: the same values by other means, or runs
  trained longer)."""
  before, now = (config.config_dict(config.parse_args(
      ['--logdir', '.', '--task', task] + list(given)))
                 for given in (recorded, flags))
  keys = [key for key in now
          if key not in SET_BY_SWEEP and before[key] != now[key]]
  keys = [key for key in keys if key not in ('configs', 'steps')]
  return [f'--{key} {flag_text(before[key])} there, {flag_text(now[key])} now'
          for key in keys]


def flag_text(value):
  """A config value as its flag takes it ('(none)' for no --configs)."""
  if isinstance(value, list):
    return ' '.join(value) or '(none)'
  return str(value)


def request_of(args, flags):
  """What LOGDIR/sweep.json records of the command: tasks (as given, and
  expanded), seeds, dreamer.py `flags` and the launcher's options."""
  slurm = {key: getattr(args, key) for key in SLURM_DEFAULTS}
  return dict(tasks=args.tasks, expanded_tasks=expand_tasks(args.tasks),
              seeds=args.seeds, flags=list(flags),
              original=str(args.original) if args.original else None,
              **{key: getattr(args, key) for key in LAUNCH_DEFAULTS},
              slurm=slurm)


def write_request(args, flags):
  """Writes LOGDIR/sweep.json whole (a temporary file, then renamed)."""
  path = args.logdir / REQUEST_NAME
  data = (json.dumps(request_of(args, flags), indent=2) + '\n').encode()
  try:
    args.logdir.mkdir(parents=True, exist_ok=True)
    tools.write_atomic(path, lambda file: file.write(data))
  except OSError as error:
    fail(f'cannot write {path}: {error.strerror}')


def parallel_flags(args, flags):
  """`flags` with --parallel none|thread|process (dreamer.py's) added;
  args.parallel becomes the number of runs at once (or None)."""
  if args.parallel in config.CHOICES['parallel']:
    flags, args.parallel = flags + ['--parallel', args.parallel], None
  elif args.parallel is not None:
    try:
      args.parallel = int(args.parallel)
    except ValueError:
      args.parallel = 0
    if args.parallel < 1:
      fail(f'--parallel takes a number of runs at once (at least 1), or '
           f'dreamer.py\'s {"|".join(config.CHOICES["parallel"])}')
  return flags


def plan(args, flags):
  """(runs, configs) of the command, its dreamer.py `flags` checked; with
  --original, runs of the original's program with the same config."""
  tasks = expand_tasks(args.tasks)
  configs = check_flags(tasks, flags)
  if not args.original:
    return [Run(args.logdir, task, seed, flags)
            for task in tasks for seed in args.seeds], configs
  runs = []
  for task in tasks:
    try:
      given = ['--original', str(args.original)] + config.original_flags(
          configs[task])
    except ValueError as error:
      fail(error)
    runs += [Run(args.logdir, task, seed, given, ORIGINAL_PROGRAM)
             for seed in args.seeds]
  return runs, configs


def check_original(path):
  """Fails with original_train.py's own line unless PATH is a checkout of
  the original it recognises (it loads TensorFlow: some seconds)."""
  result = subprocess.run(
      [sys.executable, str(ROOT / ORIGINAL_PROGRAM), '--original', str(path),
       '--help'], capture_output=True, text=True, cwd=ROOT,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'))
  if result.returncode:
    lines = result.stderr.strip().splitlines() or [
        f'exit code {result.returncode}']
    fail(f'--original {path}: {lines[-1]}')


def command_line(argv):
  """(args, dreamer.py flags) of the command line, completed from
  LOGDIR/sweep.json where it records a sweep."""
  args, flags = make_parser().parse_known_args(argv)
  if args.original:
    args.original = args.original.expanduser().absolute()
    args.logdir = args.logdir / ORIGINAL_FOLDER
  recorded = read_request(args.logdir)
  if recorded and recorded.get('original') and not args.original:
    args.original = pathlib.Path(recorded['original'])
  complete_runs(args, recorded)
  complete_launcher(args, recorded)
  flags = parallel_flags(args, flags)
  refuse_sweep_keys(flags)
  if recorded is not None:
    flags = recorded_flags(args, flags, recorded)
  return args, flags


def main(argv=None):
  args, flags = command_line(argv)
  runs, configs = plan(args, flags)
  if args.status:
    print('\n'.join(status(runs, configs)))
    return 0
  if args.original:
    check_original(args.original)
  write_request(args, flags)
  todo = []
  for run in runs:
    state, step, _ = state_of(
        run, configs[run.task].steps, configs[run.task].action_repeat)
    if state in ('done', 'running') or (
        state == 'pending' and queued(run.logdir)):
      print(f'sweep.py: {run.name} is {state} (step {step:,}): left alone')
    else:
      todo.append(run)
  if not todo:
    print('sweep.py: nothing to start')
    return 0
  if args.launcher == 'local':
    failed = run_local(todo, args.parallel or default_parallel())
  else:
    jobs = run_slurm(todo, configs, args)
    if not args.wait:
      print(f'sweep.py: {len(jobs)} jobs submitted; follow them with the '
            'same command and --status')
      return 0
    failed = wait_slurm(jobs, todo, configs)
  print('\n'.join(status(runs, configs)))
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
