"""Algorithms that are not training: result tables, and (later) MI estimators, attacks, spectra."""
