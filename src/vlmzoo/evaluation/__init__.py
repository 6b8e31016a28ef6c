"""Evaluation: benchmark definitions, data loaders, scorers, the results store and reports."""
