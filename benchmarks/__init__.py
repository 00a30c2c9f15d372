"""Benchmarks of issue 5: start-up, completion latency, end to end, throughput, fan-out.

Run ``make bench`` (or ``.venv/bin/python -m benchmarks``): every figure is
measured on local control planes (``compartment server`` on free loopback
ports, each with its own data dir) next to a reference measured in the same
run, and one table is printed: figure, value, reference, ratio, target, met.

``python -m benchmarks --smoke`` does the same with tiny counts in a few
seconds; the test suite runs it so the benchmarks cannot rot. It checks that
every figure has a value, never a timing.

Timings use hyperfine when it is installed (start-up only), otherwise their
own repeated runs with medians; peak memory comes from ``wait4``'s rusage of
the process itself, the control plane's from ``/proc/<pid>/status``.
"""
