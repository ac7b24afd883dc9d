"""Runs the sequences: the sandbox in this process, every DAG run in a forked child to SIGKILL.

Each DAG run is ``dag.test()`` in a child forked from this process, which has Airflow, the DAGs and
Airflow's in-process execution API loaded once (forking skips ~10 s of start-up per run). The child
is the process that runs the tasks: SIGKILL to it is the worker dying mid-task. Tasks keep the
DAGs' own ``retries`` (Airflow retries a failed task within the run) with the delay cut to zero; a
killed run is retried as the scheduler would after the heartbeat timeout - the same run again
(``dag.test()`` clears the run's task instances first). After the faulted attempts of a step, one
clean run; then the end state is compared with the reference run's.
"""

from __future__ import annotations

import faulthandler
import json
import os
import resource
import shutil
import signal
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

from sandbox.core.faults import FaultConfig
from sandbox.core.server import SandboxServer
from scripts.chaos import environment
from scripts.chaos.invariants import Check, EndState, Verdict, check, read_end_state
from scripts.chaos.schedule import HOLD_MS, Attempt, Kill, Schedule, StepProfile
from scripts.chaos.targets import ALERT_RECIPIENT, Target
from scripts.chaos.watch import HARNESS_DUMP_HEADER, HUNG_CHECK, hang_detail, kill_group, watch

__all__ = ["HUNG_CHECK", "Harness", "Reference", "RunResult", "SequenceOutcome", "cpu_seconds"]

# A faulted or clean run taking longer than this hangs: it is killed (its stacks dumped into its log
# first) and the sequence fails naming it. The bound follows the step's reference run, measured at the
# same load: faults add seconds (Retry-After scaled to ~1 s, latency spikes up to 1.5 s), not minutes.
RUN_BOUND_FACTOR = 6.0
RUN_BOUND_FLOOR_SECONDS = 120.0
REFERENCE_BOUND_SECONDS = 600.0


@dataclass
class RunResult:
    succeeded: bool
    killed: bool
    seconds: float
    log: Path
    hung: bool = False  # ran past its bound: killed after its stacks were dumped into ``log``


@dataclass
class SequenceOutcome:
    dag_id: str
    seed: int
    schedule: Schedule | None
    verdict: Verdict
    runs: int = 0
    kills: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    logs: Path | None = None
    number: int = 0
    cpu_seconds: float = 0.0  # this process (the sandbox) and its children (the DAG runs)


@dataclass
class Reference:
    end_state: EndState
    profiles: list[StepProfile]
    seconds: float


class Harness:
    """Start once (``start()``), then ``reference()`` and ``sequence()`` per DAG and seed."""

    def __init__(self, work_dir: Path, run_bound: float | None = None) -> None:
        """:param run_bound: seconds a run may take; default: ``RUN_BOUND_FACTOR`` times the step's
        reference run, at least ``RUN_BOUND_FLOOR_SECONDS``."""
        self.work_dir = work_dir
        self.run_bound = run_bound
        self.sandbox: SandboxServer | None = None
        self._dags: dict[str, Any] = {}
        self._synced: set[str] = set()
        self._default_seed: dict[str, Any] = {}
        self._child: int | None = None  # the DAG run in progress, killed by stop() if still running

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self, dag_ids: list[str]) -> None:
        from sandbox.seeds import load_seed_file

        shutil.rmtree(self.work_dir / "runs", ignore_errors=True)  # the last invocation's logs
        environment.migrate_airflow_db()
        self._default_seed = load_seed_file()
        self.sandbox = SandboxServer(self._default_seed, state_dir=self.work_dir / "sandbox").start()
        self._load_dags(dag_ids)
        _share_execution_api()

    def stop(self) -> None:
        if self._child is not None:
            kill_group(self._child)
            self._child = None
        if self.sandbox is not None:
            self.sandbox.stop()
            self.sandbox = None

    def _load_dags(self, dag_ids: list[str]) -> None:
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(dag_folder=str(environment.ROOT / "dags"))
        for dag_id in dag_ids:
            dag = bag.get_dag(dag_id)
            if dag is None:
                raise SystemExit(f"chaos: no DAG {dag_id!r} in dags/ (import errors: {bag.import_errors})")
            for task in dag.tasks:
                # Airflow's own retries, without the minutes of back-off between them
                task.retry_delay = timedelta(0)
                task.retry_exponential_backoff = False
            self._dags[dag_id] = dag

    @property
    def _sandbox(self) -> SandboxServer:
        if self.sandbox is None:
            raise RuntimeError("Harness.start() first")
        return self.sandbox

    # --- sequences ------------------------------------------------------------------------------
    def reference(self, target: Target, data_seed: int) -> Reference:
        """The fault-free run of every step (plus its clean run) on a fresh sandbox seed."""
        started = time.monotonic()
        folder, state_uri, exports = self._fresh(target, data_seed, "reference")
        profiles = []
        succeeded = True
        for number, step in enumerate(target.steps):
            if step.before is not None:
                step.before(self._sandbox)
            self._clear_counts()
            bound = self.run_bound or REFERENCE_BOUND_SECONDS
            result = self._run(target, number, step.conf, folder / f"step{number + 1}.log", None, bound)
            calls = {name: standin.call_counts() for name, standin in self._sandbox.standins.items()}
            mails = len([m for m in self._sandbox.smtp.store.all() if ALERT_RECIPIENT not in m["rcpt_tos"]])
            if not result.succeeded:
                why = f"hung: {hang_detail(result.log, bound)}" if result.hung else f"see {result.log}"
                raise SystemExit(f"chaos: the fault-free reference run of {target.dag_id} failed ({why})")
            clean = self._run(target, number, step.conf, folder / f"step{number + 1}-clean.log", None, bound, True)
            succeeded = clean.succeeded
            profiles.append(StepProfile(calls=calls, seconds=result.seconds, mails=mails))
        end_state = read_end_state(self._sandbox, target, state_uri, exports, succeeded)
        shutil.copytree(exports, folder / "exports")
        return Reference(end_state, profiles, time.monotonic() - started)

    def sequence(self, target: Target, data_seed: int, schedule: Schedule, reference: Reference) -> SequenceOutcome:
        started, cpu_started = time.monotonic(), cpu_seconds()
        folder, state_uri, exports = self._fresh(target, data_seed, f"seed-{schedule.seed}")
        outcome = SequenceOutcome(target.dag_id, schedule.seed, schedule, Verdict(), logs=folder)
        clean_ok = True
        for number, (step, step_schedule) in enumerate(zip(target.steps, schedule.steps, strict=True)):
            if step.before is not None:
                step.before(self._sandbox)
            bound = self._bound(reference.profiles[number])
            for attempt_number, attempt in enumerate(step_schedule.attempts, 1):
                self._inject(attempt)
                log = folder / f"step{number + 1}-attempt{attempt_number}.log"
                result = self._run(target, number, step.conf, log, attempt.kill, bound)
                self._count_faults(outcome, attempt, result.killed)
                self._clear_faults()
                outcome.runs += 1
                outcome.kills += int(result.killed)
                if result.hung:
                    return self._hung(outcome, f"step {number + 1} attempt {attempt_number}", result, bound, started)
                if result.succeeded:
                    break
            clean = self._run(target, number, step.conf, folder / f"step{number + 1}-clean.log", None, bound, True)
            outcome.runs += 1
            if clean.hung:
                return self._hung(outcome, f"step {number + 1} clean run", clean, bound, started)
            clean_ok = clean.succeeded
        end_state = read_end_state(self._sandbox, target, state_uri, exports, clean_ok)
        shutil.copytree(exports, folder / "exports")
        outcome.verdict = check(reference.end_state, end_state)
        outcome.seconds = time.monotonic() - started
        outcome.cpu_seconds = cpu_seconds() - cpu_started
        return outcome

    def _bound(self, profile: StepProfile) -> float:
        return self.run_bound or max(RUN_BOUND_FLOOR_SECONDS, RUN_BOUND_FACTOR * profile.seconds)

    @staticmethod
    def _hung(outcome: SequenceOutcome, where: str, result: RunResult, bound: float, started: float) -> SequenceOutcome:
        """The sequence ends at a hung run: its end state says nothing, the hang is the finding."""
        outcome.verdict = Verdict([Check(HUNG_CHECK, False, f"{where}: {hang_detail(result.log, bound)}")])
        outcome.seconds = time.monotonic() - started
        return outcome

    def _fresh(self, target: Target, data_seed: int, name: str) -> tuple[Path, str, Path]:
        """A fresh sandbox (the data seed's), state database and exports folder; env pointed at them."""
        folder = self.work_dir / "runs" / target.dag_id / name
        shutil.rmtree(folder, ignore_errors=True)  # a sequence run twice in one invocation
        folder.mkdir(parents=True)
        # one exports location for every sequence: its URL appears in what the jobs write (the finance
        # issue names the export), so it must be the reference's; copied into the sequence's folder afterwards
        exports = self.work_dir / "exports"
        shutil.rmtree(exports, ignore_errors=True)
        exports.mkdir(parents=True)
        state_uri = f"sqlite:///{folder / 'state.db'}"
        self._sandbox.load_seed(target.seed(self._default_seed, data_seed))
        connections = {**self._sandbox.airflow_connections(), **target.connections}
        for key in [key for key in os.environ if key.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_"))]:
            del os.environ[key]
        for conn_id, definition in connections.items():
            os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(definition)
        os.environ["AIRFLOW_CONN_PS_STATE"] = state_uri
        os.environ["AIRFLOW_VAR_PS_EXPORTS_BASE"] = exports.as_uri()
        os.environ["AIRFLOW_VAR_PS_ALERT_RECIPIENTS"] = ALERT_RECIPIENT
        for key, value in target.variables.items():
            os.environ[f"AIRFLOW_VAR_{key.upper()}"] = json.dumps(value)
        if target.state_rows:
            from sqlalchemy import create_engine

            from ps_integrations.state_store import StateStore

            engine = create_engine(state_uri)
            store = StateStore(engine=engine)
            store.apply_schema()
            for query, binds in target.state_rows:
                store.execute(query, dict(binds))
            engine.dispose()
        return folder, state_uri, exports

    # --- faults ---------------------------------------------------------------------------------
    def _inject(self, attempt: Attempt) -> None:
        sandbox = self._sandbox
        for standin in sandbox.standins.values():
            # Retry-After as the system sends it, scaled to at most ~1 s so sequences stay short
            standin.configure_faults(FaultConfig(retry_after_scale=min(1.0, 1.0 / standin.default_retry_after)))
        for fault in attempt.faults:
            if fault.kind == "smtp_delay":
                sandbox.smtp.set_reply_delay(fault.delay_ms / 1000.0)
                continue
            standin = sandbox.standin(fault.system)
            if fault.kind == "session_expired":
                standin.sessions.expire_all()
            kind = "slow_response" if fault.kind == "latency_spike" else fault.kind
            status = fault.status if fault.kind in ("server_error", "answer_lost") else None
            standin.faults.script(fault.endpoint, kind, fault.count, status, fault.delay_ms, fault.after)
        kill = attempt.kill
        if kill is not None and kill.mode == "held":
            if kill.system == "smtp":
                sandbox.smtp.hold_reply(kill.after, HOLD_MS / 1000.0)
            else:
                sandbox.standin(kill.system).faults.script(kill.endpoint, "slow_response", 1, None, HOLD_MS, kill.after)

    def _count_faults(self, outcome: SequenceOutcome, attempt: Attempt, killed: bool) -> None:
        injected: Counter[str] = Counter()
        for standin in self._sandbox.standins.values():
            injected.update(standin.faults.injected)
        # the answer held for a kill is a slow_response too, but not a latency spike
        kill = attempt.kill
        held = 1 if killed and kill is not None and kill.mode == "held" and kill.system != "smtp" else 0
        slow = injected.pop("slow_response", 0)
        injected["latency_spike"] += max(slow - held, 0)
        if any(fault.kind == "smtp_delay" for fault in attempt.faults):
            injected["smtp_delay"] += 1
        outcome.faults.update({kind: count for kind, count in injected.items() if count})

    def _clear_faults(self) -> None:
        for standin in self._sandbox.standins.values():
            standin.faults.reset()  # also lets held answers go
            standin.sessions.ttl_seconds = None
        self._sandbox.smtp.set_reply_delay(0)
        self._sandbox.smtp.release_holds()

    def _clear_counts(self) -> None:
        for standin in self._sandbox.standins.values():
            standin.clear_call_counts()

    def _kill_due(self, kill: Kill, elapsed: float) -> bool:
        if kill.mode == "timed":
            return elapsed >= kill.at_seconds
        if kill.system == "smtp":
            return self._sandbox.smtp.holding > 0
        return self._sandbox.standin(kill.system).faults.holding > 0

    # --- one DAG run in a child -----------------------------------------------------------------
    def _run(
        self, target: Target, step: int, conf: Any, log: Path, kill: Kill | None, bound: float, clean: bool = False
    ) -> RunResult:
        dag = self._dags[target.dag_id]
        # attempts of a step are one Airflow run (same logical date); its clean run is the next run
        logical_date = environment.PINNED_NOW + timedelta(hours=step, minutes=30 if clean else 0)
        skip_bag_sync = target.dag_id in self._synced
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            _child(dag, logical_date, dict(conf), log, skip_bag_sync)
        self._child = pid
        self._synced.add(target.dag_id)
        kill_due = None if kill is None else (lambda elapsed: self._kill_due(kill, elapsed))
        status, killed, hung = watch(pid, started, bound, kill_due)
        self._child = None
        if hung:  # what the stand-ins were doing meanwhile: a stalled answer shows here
            with log.open("a") as handle:
                handle.write(f"\n{HARNESS_DUMP_HEADER}\n")
                handle.flush()
                faulthandler.dump_traceback(handle, all_threads=True)
        seconds = time.monotonic() - started
        succeeded = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 2:
            raise SystemExit(f"chaos: the harness could not run {target.dag_id}; see {log}")
        ok = succeeded and not killed and not hung
        return RunResult(succeeded=ok, killed=killed, seconds=seconds, log=log, hung=hung)


def cpu_seconds() -> float:
    """CPU used so far by this process and its finished children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _child(dag: Any, logical_date: datetime, conf: dict[str, Any], log: Path, skip_bag_sync: bool) -> NoReturn:
    """Run one ``dag.test()`` and exit: 0 when the run succeeded, 1 when it failed, 2 on a harness error."""
    code = 2
    try:
        os.setpgid(0, 0)
        descriptor = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(descriptor, 1)
        os.dup2(descriptor, 2)
        # SIGUSR1 dumps every thread's stack into the log: what a run past its time bound is doing
        faulthandler.register(signal.SIGUSR1, all_threads=True)
        from airflow import settings

        if settings.engine is not None:
            settings.engine.dispose(close=False)  # the parent's pooled connections are not ours
        if skip_bag_sync:
            _skip_bag_sync()
        run = dag.test(logical_date=logical_date, run_after=logical_date, run_conf=conf)
        code = 0 if str(run.state) in ("success", "DagRunState.SUCCESS") else 1
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _skip_bag_sync() -> None:
    """``dag.test()`` re-parses and re-syncs the DAG folder on every call; the harness synced it on
    the DAG's first run and the files do not change meanwhile."""
    import airflow.dag_processing.dagbag as dagbag

    class _NoBag:
        def __init__(self, **_kwargs: Any) -> None:
            pass

    dagbag.BundleDagBag = _NoBag  # type: ignore[assignment,misc]
    dagbag.sync_bag_to_db = lambda *_args, **_kwargs: None


def _share_execution_api() -> None:
    """Build Airflow's in-process execution API once, before forking.

    ``dag.test()`` builds the app for every task and Cadwyn generates its versioned routers on the
    first request (~8 s of CPU per run); built here, every child inherits the ready app. Each child
    still starts its own event-loop thread (threads do not survive a fork).
    """
    import airflow.sdk.execution_time.supervisor as supervisor
    from airflow.api_fastapi.execution_api.app import InProcessExecutionAPI
    from cadwyn import Cadwyn
    from starlette.routing import Mount

    shared = InProcessExecutionAPI()

    def initialise(app: Any) -> None:
        if isinstance(app, Cadwyn) and not app._cadwyn_initialized:
            app._cadwyn_initialize()
        for route in getattr(app, "routes", []):
            if isinstance(route, Mount):
                initialise(route.app)

    initialise(shared.app)
    per_process: dict[int, Any] = {}

    def in_process_api_server() -> Any:
        api = per_process.get(os.getpid())
        if api is None:
            api = per_process[os.getpid()] = InProcessExecutionAPI()
            api._app = shared.app
        return api

    supervisor.in_process_api_server = in_process_api_server  # type: ignore[assignment]
