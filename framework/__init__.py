"""Framework plumbing shared by the entry points: config validation, run results, run helpers."""

from framework import metric_mode as _registers_the_metric_mode_resolver  # noqa: F401
from framework import run_stamp as _registers_the_run_stamp_resolver  # noqa: F401
