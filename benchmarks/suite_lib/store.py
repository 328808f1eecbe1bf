"""
The suite's results in the repository: one small JSON file per finished run, in a tracked
folder, so that an interrupted suite resumes on any machine from what is committed.

Layout, under ``benchmarks/results/`` (``--results-dir``; with ``--quick`` ``OUT/results``)::

    <regime>/<config>/seed<k>.json              a method's run (config: the file name, no suffix)
    <regime>/controls/<control>/seed<k>.json    an opt-in control run (synthetic-scratch)
    <regime>/coco_tiny/<config>/seed0.json      a coco_tiny row (synthetic-scratch)
    <regime>/speed/<bench>.json                 a per-component speed script (synthetic-scratch)

A run whose file exists is not run again. The report is rendered from these files alone: they
are aggregated into one JSON per regime next to the report (``aggregate``); a regime without
result files is rendered from that JSON when it exists (the from-scratch regime's committed
docs/benchmarks.json, which predates the result files).
"""

import json
import os
import subprocess
import threading
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

from .regimes import REPO

RESULTS_DIR = REPO / "benchmarks" / "results"
OVERLAP_SLACK_S = 60


def write_json(path, data):
    """Write ``data`` to ``path`` atomically (a temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
    os.replace(tmp, path)


def result_file(results_dir, regime, kind, name, seed):
    """Where the result of one run lies (``kind``: "method", "controls" or "coco_tiny")."""
    base = Path(results_dir) / regime
    if kind == "method":
        return base / name / f"seed{seed}.json"
    return base / kind / name / f"seed{seed}.json"


def speed_file(results_dir, regime, bench):
    return Path(results_dir) / regime / "speed" / f"{bench}.json"


def _load_runs(folder):
    runs = [json.loads(p.read_text()) for p in Path(folder).glob("seed*.json")]
    return sorted(runs, key=lambda r: r["seed"])


def concurrency(runs):
    """
    How the runs shared the wall clock, from each one's finish time and wall time (a run's
    interval is [finished - wall_s, finished]): the most that trained at once, and the length
    of the union of their intervals. Counted from the runs themselves, so that runs from
    several suite invocations side by side (``--jobs`` is per invocation) count as they ran.

    Returns:
        dict: ``max_runs`` (int) and ``busy_s`` (float); None when no run has both times.
    """
    spans = [
        (
            datetime.fromisoformat(r["finished"]) - timedelta(seconds=r["wall_s"]),
            datetime.fromisoformat(r["finished"]),
        )
        for r in runs
        if r.get("finished") and r.get("wall_s") is not None
    ]
    if not spans:
        return None
    # The finish time is stamped (to the second) after the run's bookkeeping, when the next
    # run of its invocation may have started: overlaps up to OVERLAP_SLACK_S do not count.
    slack = timedelta(seconds=OVERLAP_SLACK_S)
    ends = [(max(start, end - slack), -1) for start, end in spans]
    # Ends sort before starts at the same instant: back-to-back runs do not overlap.
    events = sorted([(start, 1) for start, _ in spans] + ends)
    at_once = most = 0
    for _, step in events:
        at_once += step
        most = max(most, at_once)
    busy = 0.0
    cur_start = cur_end = None
    for start, end in sorted(spans):
        if cur_end is None or start > cur_end:
            if cur_end is not None:
                busy += (cur_end - cur_start).total_seconds()
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    busy += (cur_end - cur_start).total_seconds()
    return {"max_runs": most, "busy_s": busy}


def aggregate(regime, results_dir):
    """
    Everything the report of ``regime`` needs, from its result files alone.

    Returns:
        dict or None: ``methods`` (the planned ones, in the regime's order), ``settings``,
        ``runs`` (method key -> its runs by seed), ``coco_tiny``, ``controls``, ``speed``,
        ``progress`` (runs done and planned), ``date`` (of the last finished run),
        ``machines`` and ``commits`` (with their numbers of runs), ``run_time_s`` (summed),
        ``concurrency`` (see ``concurrency``); None when the regime has no result file.
    """
    base = Path(results_dir) / regime.name
    runs = {m.key: _load_runs(base / m.run_name) for m in regime.all_methods}
    done = [r for rs in runs.values() for r in rs]
    if not done:
        return None
    coco = {}
    for m in regime.methods:
        rs = _load_runs(base / "coco_tiny" / m.run_name)
        if rs:
            coco[m.key] = rs[0]
    controls = []
    for c in regime.controls:
        rs = _load_runs(base / "controls" / c["key"])
        if rs:
            controls.append(dict(c, runs=rs))
    speed = {p.stem: json.loads(p.read_text()) for p in sorted((base / "speed").glob("*.json"))}
    newest = max(done, key=lambda r: r.get("finished", ""))
    st = newest["settings"]
    planned_methods = {k for r in done for k in r["settings"].get("methods", [])} or set(runs)
    planned_seeds = {s for r in done for s in r["settings"].get("seeds", [])}
    methods = [m.as_dict() for m in regime.all_methods if m.key in planned_methods or runs[m.key]]
    everything = done + list(coco.values()) + [r for c in controls for r in c["runs"]]
    threads = sorted({r["settings"].get("threads_per_run") for r in done} - {None})
    jobs = sorted({r["settings"].get("parallel_runs") for r in done} - {None})
    machines = Counter(json.dumps(r.get("machine", {}), sort_keys=True) for r in everything)
    commits = Counter((r.get("machine") or {}).get("git_commit") or "?" for r in everything)
    return {
        "regime": regime.name,
        "source": "result files",
        "results_dir": _rel(base),
        "methods": methods,
        "settings": {
            "quick": st["quick"],
            "seeds": sorted({r["seed"] for r in done}),
            "planned_seeds": sorted(planned_seeds | {r["seed"] for r in done}),
            "iters": st["iters"],
            # Where families train for different numbers of iterations (BCCD's dense detectors).
            "iters_by_family": {
                m["family"]: runs[m["key"]][0]["settings"]["iters"]
                for m in methods
                if runs[m["key"]]
            },
            "eval_period": st["eval_period"],
            "threads_per_run": threads[0] if len(threads) == 1 else threads,
            "parallel_runs": jobs[0] if len(jobs) == 1 else jobs,
            "train_dataset": st["train_dataset"],
            "test_dataset": st["test_dataset"],
            "common_overrides": st["overrides"],
            "coco_tiny": bool(coco),
            "suite_commands": sorted({r["settings"].get("suite_command", "") for r in done}),
        },
        "runs": {m["key"]: runs[m["key"]] for m in methods},
        "coco_tiny": coco,
        "controls": controls,
        "speed": speed,
        "progress": {
            "done": len(done),
            "planned": len(methods) * len(planned_seeds | {r["seed"] for r in done}),
        },
        "date": newest.get("finished"),
        "run_time_s": sum(r.get("wall_s", 0.0) for r in everything),
        "concurrency": concurrency(everything),
        "machines": [{"machine": json.loads(k), "runs": n} for k, n in machines.most_common()],
        "commits": [{"commit": k, "runs": n} for k, n in commits.most_common()],
    }


def load_aggregate(path):
    """A regime's aggregate JSON; one written before the result files keeps its runs under
    ``synthetic``: they are returned under ``runs`` as well."""
    data = json.loads(Path(path).read_text())
    if "runs" not in data and "synthetic" in data:
        data["runs"] = data["synthetic"]
    return data


def regime_results(regime, results_dir, out, write=True):
    """
    The results of ``regime`` for the report: aggregated from its result files (and written to
    ``out/<regime.json_name>`` when ``write``), else read from that JSON, else None.
    """
    data = aggregate(regime, results_dir)
    if data is not None:
        if write:
            write_json(Path(out) / regime.json_name, data)
        return data
    path = Path(out) / regime.json_name
    return load_aggregate(path) if path.is_file() else None


def _rel(path):
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


class Committer:
    """
    ``--commit``: after each new result file, ``git add`` it and commit it alone
    (``git commit -- <file>``: whatever else is staged stays out of the commit), with the
    message "Benchmark result: <regime> <config> seed <k>". Safe from several runs at a time
    (one commit at a time). A commit that fails (a lock held by another git process, say) is
    retried, then left for the next result's commit to include, with a warning: the suite goes
    on, the result file is on disk either way.
    """

    def __init__(self, repo=REPO, log=print):
        self.repo, self.log = Path(repo), log
        self._lock = threading.Lock()
        self.pending = []

    def _git(self, *args):
        return subprocess.run(["git", *args], cwd=self.repo, capture_output=True, text=True)

    def check(self, results_dir):
        """Fail now, not after hours, when the result files could not be committed."""
        if self._git("rev-parse", "--is-inside-work-tree").stdout.strip() != "true":
            raise SystemExit(f"suite.py --commit: {self.repo} is not a git work tree")
        if self._git("var", "GIT_COMMITTER_IDENT").returncode != 0:
            raise SystemExit("suite.py --commit: git has no user identity (git config user.name)")
        try:
            Path(results_dir).resolve().relative_to(self.repo.resolve())
        except ValueError:
            raise SystemExit(f"suite.py --commit: {results_dir} is outside {self.repo}") from None
        probe = Path(results_dir) / "probe" / "seed0.json"
        if self._git("check-ignore", "-q", str(probe)).returncode == 0:
            raise SystemExit(f"suite.py --commit: {results_dir} is ignored by git")

    def __call__(self, path, label):
        with self._lock:
            self.pending.append(os.path.relpath(path, self.repo))
            message = f"Benchmark result: {label}"
            if len(self.pending) > 1:
                message += "\n\nWith the earlier result(s) not committed then:\n" + "\n".join(
                    self.pending[:-1]
                )
            err = ""
            for attempt in range(5):
                add = self._git("add", "--", *self.pending)
                if add.returncode == 0:
                    commit = self._git("commit", "-q", "-m", message, "--", *self.pending)
                    if commit.returncode == 0:
                        self.log(f"  committed {', '.join(self.pending)}")
                        self.pending = []
                        return True
                    err = commit.stderr or commit.stdout
                else:
                    err = add.stderr
                if "index.lock" not in err:
                    break
                time.sleep(2 * (attempt + 1))
            self.log(
                f"  WARNING: could not commit {self.pending[-1]} (kept for the next commit): "
                f"{err.strip()}"
            )
            return False
