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

Here: the command line and LOGDIR/sweep.json, the flags checked, the runs
planned; launchers.py starts them, stops them and says where they are.
"""

import json
import os
import pathlib
import subprocess
import sys

import config
import launchers
import tasks
import tools

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
REQUEST_NAME = 'sweep.json'  # LOGDIR/sweep.json: what the sweep was asked.
REQUEST_LISTS = ('tasks', 'seeds', 'flags')  # What a rerun needs of it.
SET_BY_SWEEP = ('logdir', 'task', 'seed')
# The launcher's options with their defaults; a rerun that leaves one out
# takes its value from LOGDIR/sweep.json (SLURM's under its 'slurm' key).
LAUNCH_DEFAULTS = {'launcher': 'local', 'parallel': None}
ORIGINAL_PROGRAM = 'original_train.py'  # The original's, run by --original.
ORIGINAL_FOLDER = 'original'  # LOGDIR/original/TASK/SEED: its runs.
SLURM_DEFAULTS = {'partition': None, 'gpus': 0, 'cpus': launchers.RUN_CPUS,
                  'mem': launchers.RUN_MEMORY_GB, 'time': 24 * 60,
                  'max_requeues': 100, 'sbatch': []}


def fail(message):
  config.fail(message, prog='sweep.py')


# --- The runs' tasks and flags ---------------------------------------------

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
                      f'and memory, {launchers.RUN_CPUS} cores and '
                      f'{launchers.RUN_MEMORY_GB} GB a run; SLURM: the '
                      'array\'s limit, default none); '
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
  request = launchers.read_json(path)
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
    return [launchers.Run(args.logdir, task, seed, flags)
            for task in tasks for seed in args.seeds], configs
  runs = []
  for task in tasks:
    try:
      given = ['--original', str(args.original)] + config.original_flags(
          configs[task])
    except ValueError as error:
      fail(error)
    runs += [launchers.Run(args.logdir, task, seed, given, ORIGINAL_PROGRAM)
             for seed in args.seeds]
  return runs, configs


def check_original(path):
  """Fails with original_train.py's own line unless PATH is a checkout of
  the original it recognises (it loads TensorFlow: some seconds)."""
  result = subprocess.run(
      [sys.executable, str(launchers.ROOT / ORIGINAL_PROGRAM), '--original',
       str(path), '--help'], capture_output=True, text=True,
      cwd=launchers.ROOT,
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
    print('\n'.join(launchers.status(runs, configs)))
    return 0
  if args.original:
    check_original(args.original)
  write_request(args, flags)
  todo = []
  for run in runs:
    state, step, _ = launchers.state_of(
        run, configs[run.task].steps, configs[run.task].action_repeat)
    if state in ('done', 'running') or (
        state == 'pending' and launchers.queued(run.logdir)):
      print(f'sweep.py: {run.name} is {state} (step {step:,}): left alone')
    else:
      todo.append(run)
  if not todo:
    print('sweep.py: nothing to start')
    return 0
  if args.launcher == 'local':
    failed = launchers.run_local(
        todo, args.parallel or launchers.default_parallel())
  else:
    jobs = launchers.run_slurm(todo, configs, args)
    if not args.wait:
      print(f'sweep.py: {len(jobs)} jobs submitted; follow them with the '
            'same command and --status')
      return 0
    failed = launchers.wait_slurm(jobs, todo, configs)
  print('\n'.join(launchers.status(runs, configs)))
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
