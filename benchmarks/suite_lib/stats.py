"""
Statistics over a regime's runs: mean ± std over seeds, each method's delta against its
baseline paired by seed, the verdict, the iteration-time ratio. Works on partial results (an
interrupted suite): a method without runs gets empty statistics, a delta uses the seeds that
both the method and its baseline have.
"""

import statistics

from .regimes import METRICS


def mean_std(xs):
    """(mean, sample std) of the values that are not None; (None, None) if none; the std is None
    for one value (a single seed has no spread to show, not a spread of 0)."""
    xs = [x for x in xs if x is not None]
    if not xs:
        return None, None
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None)


def diverged(run) -> bool:
    """A run that diverged (its loss or boxes went non-finite, ``runner.diverged_in``): the
    metrics it holds are those of its last evaluation before the divergence, not a result of
    its schedule."""
    return run.get("status") == "diverged"


def paired_diffs(runs, base_runs, metric):
    """
    ``metric`` of each run minus that of the baseline's run of the same seed, in the order of
    ``runs``: only the seeds both have, finished (not diverged) with the metric in both.

    Args:
        runs, base_runs (list[dict]): result files' contents (``seed``, ``metrics``).
        metric (str): one of ``METRICS``.

    Returns:
        list[float]: one difference per paired seed.
    """
    base_by_seed = {r["seed"]: r for r in base_runs if not diverged(r)}
    return [
        r["metrics"][metric] - base_by_seed[r["seed"]]["metrics"][metric]
        for r in runs
        if r["seed"] in base_by_seed
        and not diverged(r)
        and r["metrics"][metric] is not None
        and base_by_seed[r["seed"]]["metrics"][metric] is not None
    ]


def _median_time(rs):
    return statistics.median([r["iter_time_s"] for r in rs if r["iter_time_s"]] or [float("nan")])


def summarize(results):
    """
    Per method of ``results["methods"]``: ``n`` (runs), ``diverged`` (those of them that
    diverged), mean/std of each metric over the others, the median iteration time, the peak RSS
    (max over seeds; None without runs) and, when its baseline has runs, ``delta_<metric>``
    (mean/std over seeds of method minus baseline, same seed, finished runs only) and
    ``time_ratio`` (median iteration time over the baseline's).
    """
    runs = results["runs"]
    out = {}
    for m in results["methods"]:
        rs = runs.get(m["key"], [])
        row = {"n": len(rs), "diverged": [r for r in rs if diverged(r)]}
        for k in METRICS:
            row[k] = mean_std([r["metrics"][k] for r in rs if not diverged(r)])
        row["iter_time_s"] = _median_time(rs)
        row["peak_rss_mb"] = max((r["peak_rss_mb"] for r in rs), default=None)
        b = m["baseline"]
        if b and runs.get(b):
            for k in METRICS:
                row["delta_" + k] = mean_std(paired_diffs(rs, runs[b], k))
            bt = _median_time(runs[b])
            row["time_ratio"] = row["iter_time_s"] / bt if bt else None
        out[m["key"]] = row
    return out


def verdict(delta):
    """Paired AP difference against the spread of that difference over seeds."""
    m, s = delta if delta else (None, None)
    if m is None:
        return "-"
    if s is None:
        return "better (1 seed)" if m > 0 else "not better (1 seed)"
    if m > s:
        return "better"
    if m < -s:
        return "worse"
    return "within noise"
