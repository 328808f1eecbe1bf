"""
The pieces of the benchmark suite (``benchmarks/suite.py``), one job per module:

- ``regimes``: what each regime trains (configs, baselines, families), on which data, with
  which schedule, and how long it is expected to take;
- ``runner``: training runs in subprocesses (resumable, several at a time), the speed scripts,
  and what is read back from a run (metrics.json, peak RSS, machine);
- ``errors``: the COCO error analysis of a run's final detections;
- ``store``: the tracked result files (one per run), their aggregation into one JSON per
  regime, and ``--commit``;
- ``stats``: mean ± std over seeds, deltas paired by seed, verdicts, iteration-time ratios;
- ``plots``: AP-vs-iteration curves;
- ``markdown``: the report, one section per regime.
"""
