"""The OOD benchmark as library code: density scores beside classifier detectors.

:mod:`lit_rev.commands.ood_benchmark` is its command line. The parts:

* :mod:`~lit_rev.evaluation.ood_benchmark.models`: one model of an entry (config, overrides,
  checkpoint or training budget), where its config is found, and the checks that it fits the
  benchmark's data;
* :mod:`~lit_rev.evaluation.ood_benchmark.data`: the benchmark's test sets and training split;
* :mod:`~lit_rev.evaluation.ood_benchmark.entries`: :class:`DensityEntry`,
  :class:`ClassifierEntry` and :class:`WAICEntry`, the entries of a ``detectors:`` list;
* :mod:`~lit_rev.evaluation.ood_benchmark.tables`: the table, its summary, heat maps, files;
* :mod:`~lit_rev.evaluation.ood_benchmark.cache`: each entry's saved scores;
* :mod:`~lit_rev.evaluation.ood_benchmark.run`: the steps (:func:`prepare`,
  :func:`score_entry`, :func:`run_benchmark`).
"""

from lit_rev.evaluation.ood_benchmark.data import BenchmarkData, Scores
from lit_rev.evaluation.ood_benchmark.entries import (
    BENCHMARK_DETECTOR_ARGS,
    CLASSIFIER_DETECTORS,
    DENSITY_SCORERS,
    NATIVE_DENSITY_SCORES,
    BenchmarkEntry,
    ClassifierEntry,
    DensityEntry,
    DensityScore,
    WAICEntry,
    density_scores,
)
from lit_rev.evaluation.ood_benchmark.models import (
    BenchmarkError,
    ModelSpec,
    check_fits,
    resolve_config,
)
from lit_rev.evaluation.ood_benchmark.run import (
    Benchmark,
    check_out_dir,
    prepare,
    run_benchmark,
    score_entry,
)
from lit_rev.evaluation.ood_benchmark.tables import (
    FPR_COLUMNS,
    MEAN,
    MIN_IMAGES,
    STEM,
    TABLE_METRICS,
    TARGET_AUROC,
    TARGET_FPR,
    FprConvention,
    benchmark_rows,
    check_groups,
    failure_lines,
    heatmap,
    reaches_target,
    summary_rows,
    write_tables,
)

__all__ = [
    "BENCHMARK_DETECTOR_ARGS",
    "CLASSIFIER_DETECTORS",
    "DENSITY_SCORERS",
    "FPR_COLUMNS",
    "MEAN",
    "MIN_IMAGES",
    "NATIVE_DENSITY_SCORES",
    "STEM",
    "TABLE_METRICS",
    "TARGET_AUROC",
    "TARGET_FPR",
    "Benchmark",
    "BenchmarkData",
    "BenchmarkEntry",
    "BenchmarkError",
    "ClassifierEntry",
    "DensityEntry",
    "DensityScore",
    "FprConvention",
    "ModelSpec",
    "Scores",
    "WAICEntry",
    "benchmark_rows",
    "check_fits",
    "check_groups",
    "check_out_dir",
    "density_scores",
    "failure_lines",
    "heatmap",
    "prepare",
    "reaches_target",
    "resolve_config",
    "run_benchmark",
    "score_entry",
    "summary_rows",
    "write_tables",
]
