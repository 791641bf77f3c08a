"""Measure the pipeline on this machine: tracking overhead, epoch times, DVC start-up, the full
pipeline (--full only), input loading and CPU settings.

    python -m tools.bench [--json PATH] [--full] [--repeats N] [--sections tracking,input,...]

Prints one aligned plain-text table per section on stdout (progress goes to stderr) and, with
--json, writes the same figures as JSON. Each figure is the median of several runs. Each comparison
is a ratio of two sides measured in the same invocation, run in alternating order (a, b, b, a, ...)
so that a slow drift of the machine cancels out; the ratio is the median of the per-repeat ratios.
The bench only reports: params.yaml is never changed.

The package, one module per concern (a copy of the repository, small params and commands come
from tests/support.py, the models and run params from pipeline.stages.train):

    cli         arguments, input checks, running the sections in order, exit codes
    sections    the sections' order, titles and wall-clock budgets
    measure     statistics and timing: medians, alternating runs, paired ratios, CPU accounting
    trials      models and data of the sections that train: the train stage's own trainee,
                timed epochs
    overhead    1. tracking overhead      epochs   2. epoch time per architecture
    noop        3. DVC start-up           full     4. full dvc repro (--full only)
    loading     5. input pipeline         cpu      6. CPU settings (and its --variant workers)
    formatting  the plain-text report
"""
