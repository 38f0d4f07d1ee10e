"""Framework plumbing shared by the entry points: config validation, run results, run helpers."""
