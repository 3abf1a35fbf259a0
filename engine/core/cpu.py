"""Who is computing now: heavy jobs say so, and the model takes the spare cores only when
they are quiet.

On this 2-core CPU llama.cpp with both cores is 1.7-1.9x faster than with one when the other
core is idle, and 2-3x *slower* when another thread computes there: its threads meet at every
operation and wait for the one that was descheduled (Qwen2.5-Coder 0.5B on the Intel Xeon of
2026-12-02, one loaded model switched with ``llama_set_n_threads``: a 23-token append at a
900-token context / one decoded token, medians of 5 and 40; "busy": numpy matrix products on
a second thread):

=========================  ==============  =================
                            other core idle  other core busy
=========================  ==============  =================
1 thread                    303 ms / 72 ms  275 ms / 68 ms
2 threads                   177 ms / 38 ms  516 ms / 119-153 ms
=========================  ==============  =================

The heavy jobs are the recogniser, the end-of-turn model, speech synthesis and OCR; each
wraps its computation in ``heavy()``. The model asks ``others_computing()`` before every
decode call, so a job that starts during a call slows at most that one call (one token, or
one append).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_running = [0]  # heavy jobs computing now, under ``_lock``


@contextmanager
def heavy() -> Iterator[None]:
    """Mark a CPU-bound computation (recognition, Smart Turn, synthesis, OCR) while it runs."""
    with _lock:
        _running[0] += 1
    try:
        yield
    finally:
        with _lock:
            _running[0] -= 1


def others_computing() -> bool:
    """Some heavy job other than the model is running now."""
    with _lock:
        return _running[0] > 0
