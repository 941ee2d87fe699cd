"""The HTML study report, its figures and the methods paragraph.

- :func:`qsmiron.report.html.write_report` writes the self-contained report.
- :func:`qsmiron.report.methods.methods_paragraph` writes the methods text from provenance.
- :mod:`qsmiron.report.figures` draws the figures (matplotlib Agg, embedded as PNG).
- :mod:`qsmiron.report.formatting` decides how every number reads.
"""
