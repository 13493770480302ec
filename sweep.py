"""Tasks × seeds of dreamer.py, here or on a SLURM cluster, resumable.

    python sweep.py --logdir runs/paper --tasks paper --seeds 0 1 2 3 4 \\
        --steps 1e6 [--launcher slurm --partition gpu --gpus 1 ...] \\
        [any dreamer.py flag]
    python sweep.py ... --status     # one line per run, steps done and left

Run TASK, SEED goes to LOGDIR/TASK/SEED with `--task TASK --seed SEED` and
the other flags (the layout plotting.py reads). The flags are checked once,
for every task, before anything starts. The same command again skips the
finished runs, resumes the stopped ones (from their checkpoint and
episodes) and leaves alone the ones a live process holds (runlock.py) or
that wait in the SLURM queue. Each run's output is appended to
RUN/sweep.log and the end of each attempt written to RUN/sweep-exit.json.

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
SET_BY_SWEEP = ('logdir', 'task', 'seed')
STARTED = 'sweep: dreamer.py started'  # The line before each attempt's output.
# dreamer.py's own error lines (config.fail; a worker failure, non-finite
# gradients), and the prefix of TensorFlow's and absl's log lines.
OWN_ERROR = ('dreamer.py: error: ', 'error: ')
TF_LOG = re.compile(r'[IWEF]\d{4} ')
STOP_GRACE = 60  # Seconds a run that stopped short waits for its requeue.


def fail(message):
  config.fail(message, prog='sweep.py')


# --- The runs ---------------------------------------------------------------

class Run:
  """One task and seed: its folder and dreamer.py command line."""

  def __init__(self, logdir, task, seed, flags):
    self.task, self.seed = task, seed
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
  for key in SET_BY_SWEEP:
    if any(flag == f'--{key}' or flag.startswith(f'--{key}=')
           for flag in flags):
      fail(f'--{key} is set by the sweep for each run (pass --logdir, '
           f'--tasks and --seeds of sweep.py)')
  configs = {task: config.parse_args(
      ['--logdir', '.', '--task', task] + list(flags)) for task in task_list}
  try:
    tasks.check(task_list, configs)
  except ValueError as error:
    config.fail(error)
  return configs


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
  log.write(f'{STARTED} {time.strftime("%Y-%m-%d %H:%M:%S")}'
            f' on {os.uname().nodename}' + (
                f', SLURM_RESTART_COUNT={restarts}' if restarts else '') + '\n')
  env = dict(absolute_pythonpath(os.environ), PYTHONUNBUFFERED='1')
  child = subprocess.Popen(
      [python or sys.executable, str(ROOT / 'dreamer.py')] + run.argv,
      stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
      preexec_fn=_prepare_child)
  log.close()
  return child


def _prepare_child():
  """In the child before it starts. Its own process group keeps a
  terminal's Ctrl-C to the sweep, which stops each run with one SIGTERM (a
  second signal could stop it mid-update). SIGTERM stays as it is: the
  multiprocessing pools of dreamer.py end their workers with it."""
  os.setpgrp()
  signal.signal(signal.SIGUSR2, signal.SIG_IGN)


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
                  if line.startswith(STARTED)]
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
  stops them (each saves its checkpoint). Returns the runs that failed."""
  waiting, active, failed = list(runs), {}, []
  stopping = []

  def stop(signum, frame):
    if not stopping:
      print(f'sweep.py: {signal.Signals(signum).name}: stopping '
            f'{len(active)} runs (they save their checkpoints)', flush=True)
    stopping.append(signum)
    for child in active.values():
      child.send_signal(signal.SIGTERM)

  handlers = {sig: signal.signal(sig, stop)
              for sig in (signal.SIGINT, signal.SIGTERM)}
  try:
    while waiting or active:
      while waiting and len(active) < parallel and not stopping:
        run = waiting.pop(0)
        print(f'sweep.py: start {run.name}', flush=True)
        active[run] = start_child(run)
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
      '--help lists them).')
  parser.add_argument('--logdir', required=True, type=pathlib.Path,
                      help='the sweep folder: runs go to LOGDIR/TASK/SEED')
  parser.add_argument('--tasks', nargs='+', required=True, metavar='TASK',
                      help='--task values; paper: the paper\'s 20 DMC tasks')
  parser.add_argument('--seeds', nargs='+', type=int, required=True,
                      metavar='SEED')
  parser.add_argument('--status', action='store_true',
                      help='print one line per run and the steps done and '
                      'left; start nothing')
  parser.add_argument('--launcher', choices=('local', 'slurm'),
                      default='local')
  parser.add_argument('--parallel', metavar='N',
                      help='runs at once (local default: what fits the cores '
                      f'and memory, {RUN_CPUS} cores and {RUN_MEMORY_GB} GB '
                      'a run; SLURM: the array\'s limit, default none); '
                      'none, thread or process go to dreamer.py\'s --parallel')
  parser.add_argument('--wait', action='store_true',
                      help='SLURM: return when every job has left the queue')
  slurm = parser.add_argument_group('SLURM, per run')
  slurm.add_argument('--partition', help='default: the cluster\'s')
  slurm.add_argument('--gpus', type=int, default=0)
  slurm.add_argument('--cpus', type=int, default=RUN_CPUS)
  slurm.add_argument('--mem', type=float, default=RUN_MEMORY_GB,
                     metavar='GB')
  slurm.add_argument('--time', type=int, default=24 * 60, metavar='MINUTES',
                     help='time limit of one job; a run that needs more is '
                     'requeued from its checkpoint')
  slurm.add_argument('--max_requeues', type=int, default=100,
                     help='time limits a run may hit (preemptions are not '
                     'counted)')
  slurm.add_argument('--sbatch', nargs='+', default=[], metavar='KEY=VALUE',
                     help='more sbatch options, e.g. account=abc qos=low')
  return parser


def plan(args, flags):
  """(runs, configs) of the command, the flags checked; args.parallel
  becomes the number of runs at once (or None)."""
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
  tasks = expand_tasks(args.tasks)
  configs = check_flags(tasks, flags)
  runs = [Run(args.logdir, task, seed, flags)
          for task in tasks for seed in args.seeds]
  return runs, configs


def main(argv=None):
  args, flags = make_parser().parse_known_args(argv)
  runs, configs = plan(args, flags)
  if args.status:
    print('\n'.join(status(runs, configs)))
    return 0
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
