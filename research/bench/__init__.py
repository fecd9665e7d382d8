"""Benchmarks: measurement (measure), processor and GPU peaks (peaks), the Markdown report
with its prose and targets (report), and the fresh-process child (child)."""
