"""Experiments: grids of pruned agents, run as independent, resumable jobs, and their results.

``load_grid`` reads a grid (a shipped name such as ``smoke`` or a TOML path), ``run_sweep`` runs
its jobs on local processes or Ray and writes one record per job, ``load_results`` turns the
records into rows and sweet spots. The command line is ``python -m pruningrl sweep`` and
``python -m pruningrl results``.
"""

from pruningrl.experiments.grid import Grid, load_grid, shipped_grids
from pruningrl.experiments.jobs import Job, certified_radius, expand, run_job
from pruningrl.experiments.results import load_results, rejudge, rows, sweet_spots
from pruningrl.experiments.store import RecordStore, stable_part
from pruningrl.experiments.sweep import SweepSummary, estimate, plan, run_sweep

__all__ = [
    "Grid", "Job", "RecordStore", "SweepSummary", "certified_radius", "estimate", "expand",
    "load_grid", "load_results", "plan", "rejudge", "rows", "run_job", "run_sweep", "shipped_grids",
    "stable_part", "sweet_spots",
]
