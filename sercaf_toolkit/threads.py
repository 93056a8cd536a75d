"""How many CPU threads a command uses: ``--threads`` and its default.

PyTorch takes every core by default. On a shared machine, or with
several processes (``sercaf cv`` folds, a server's workers), threads
then fight for the cores and each process runs slower than with a few.
So the commands take ``--threads N``, and default to ``OMP_NUM_THREADS``
when it is set (the usual way to say it for a whole job), else to at
most 4 (beyond that, inference of one model gains little).

Authors
 * sercaf-toolkit developers 2026
"""

import os

MAX_DEFAULT_THREADS = 4
# The variables that the math libraries under PyTorch read at start-up.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def default_threads():
    """``OMP_NUM_THREADS`` if set to a positive number, else min(cores, 4).

    Example
    -------
    >>> saved = os.environ.pop("OMP_NUM_THREADS", None)
    >>> os.environ["OMP_NUM_THREADS"] = "3"
    >>> default_threads()
    3
    >>> del os.environ["OMP_NUM_THREADS"]
    >>> 1 <= default_threads() <= MAX_DEFAULT_THREADS
    True
    >>> if saved is not None:
    ...     os.environ["OMP_NUM_THREADS"] = saved
    """
    try:
        threads = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        threads = 0
    if threads > 0:
        return threads
    return max(1, min(os.cpu_count() or 1, MAX_DEFAULT_THREADS))


def use_threads(threads):
    """Sets PyTorch's intra-op threads (onnxruntime sessions follow it)."""
    import torch

    torch.set_num_threads(int(threads))


def thread_environment(threads, environment=None):
    """A copy of ``environment`` (default: ``os.environ``) that makes a
    child process use ``threads`` threads.

    Example
    -------
    >>> thread_environment(2, {"PATH": "/bin"})["OMP_NUM_THREADS"]
    '2'
    """
    environment = dict(os.environ if environment is None else environment)
    for name in THREAD_VARIABLES:
        environment[name] = str(int(threads))
    return environment
