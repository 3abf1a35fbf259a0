"""In-process llama-cpp-python backend: one persistent KV sequence (the only llama_cpp importer).

What makes a 200 ms micro-turn affordable on a CPU (figures in ARCHITECTURE.md):
- each append decodes only its new tokens; the prefix's KV cache is reused;
- the decision reads the logits of the labels' first tokens straight after the append
  (no sampling, no extra decode);
- speculative tokens (a reply being prepared) are rolled back with ``kv_cache_seq_rm``;
- old spans leave by KV shifting (``seq_rm`` + ``seq_add``), never by a re-prefill;
- the pinned prefix is snapshotted with ``llama_state_seq_get_data`` so a reset is a copy;
- every decode call uses the spare cores only while no other heavy job computes there
  (``engine.core.cpu``).

Not thread-safe: create and call it on one owner thread (``engine.model.worker``).
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.core.cpu import others_computing
from engine.errors import EngineError, MissingDependencyError, ModelFileError
from engine.model.registry import ModelSpec, verify

try:
    import llama_cpp
except ImportError as e:  # pragma: no cover - the default install always has it
    raise MissingDependencyError(
        "llama-cpp-python is not installed: run `make install` (it compiles llama.cpp)"
    ) from e

REPEAT_PENALTY = 1.3
REPEAT_WINDOW = 64
_SEQ = 0


def cpu_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def choose_threads(audio_active: bool, cores: int | None = None) -> int:
    """Threads for llama.cpp: leave a core to the audio models when they run.

    Measured here: with other heavy work on the second core ``n_threads=2`` doubles the
    append latency while ``n_threads=1`` holds (``engine.core.cpu``); with the second core
    idle 2 threads are 1.7-1.9x faster. Small models gain nothing past 8 threads.
    """
    n = cores if cores is not None else cpu_cores()
    if audio_active:
        n = max(1, n // 2 if n > 2 else n - 1)
    return max(1, min(n, 8))


def gpu_layers() -> int:
    """Offload every layer when llama.cpp was built with a GPU backend, else none."""
    return -1 if llama_cpp.llama_supports_gpu_offload() else 0


@dataclass(frozen=True, slots=True)
class SeqSnapshot:
    """A copy of the sequence's KV state and the tokens it holds."""

    data: bytes
    tokens: np.ndarray


class LlamaBackend:
    """One persistent sequence on an in-process ``llama_cpp.Llama``."""

    def __init__(
        self,
        spec: ModelSpec,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_gpu_layers: int | None = None,
        verify_file: bool = True,
        threads_when_busy: int | None = None,
    ) -> None:
        if verify_file:
            verify(spec)
        threads = n_threads if n_threads is not None else choose_threads(audio_active=False)
        try:
            self._llm = llama_cpp.Llama(
                model_path=str(spec.path),
                n_ctx=n_ctx,
                n_batch=512,
                n_threads=threads,
                n_threads_batch=threads,
                n_gpu_layers=gpu_layers() if n_gpu_layers is None else n_gpu_layers,
                logits_all=False,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as e:
            raise ModelFileError(
                f"llama.cpp could not load {spec.path}: the file is truncated, corrupt, or "
                f"not a model llama.cpp supports ({e})"
            ) from e
        self.name = spec.name
        self.n_ctx = n_ctx
        self.n_threads = threads
        self.threads_when_busy = min(threads, threads_when_busy or threads)
        """Threads while another heavy job computes (``engine.core.cpu``): llama.cpp takes the
        spare cores only when they are free, since sharing one costs it 2-3x."""
        self._threads_now = threads
        self._n_vocab = self._llm.n_vocab()
        self._prefix_len = 0
        self._spans: list[int] = []  # token length of each span after the prefix, oldest first
        self._prefix_snapshot: SeqSnapshot | None = None
        self._logits_fresh = False
        self._label_ids: dict[str, int] = {}
        self._spec_base: int | None = None
        self._spec_out: list[int] = []
        self._held_logits: np.ndarray | None = None

    def _eval(self, tokens: Sequence[int]) -> None:
        """Decode ``tokens`` on as many threads as the cores free right now allow."""
        want = self.threads_when_busy if others_computing() else self.n_threads
        if want != self._threads_now:
            llama_cpp.llama_set_n_threads(self._llm._ctx.ctx, want, want)
            self._threads_now = want
        self._llm.eval(tokens)

    # --- the sequence ------------------------------------------------------------------

    def reset(self, prefix: str) -> None:
        """Start over with only ``prefix``; restored from a snapshot when it is unchanged."""
        self.spec_rollback()
        tokens = self._llm.tokenize(prefix.encode("utf-8"), add_bos=True, special=True)
        if len(tokens) >= self.n_ctx // 2:
            raise EngineError(
                f"the pinned prompt is {len(tokens)} tokens: a {self.n_ctx}-token window is too "
                f"small (use --n-ctx {2 ** (2 * len(tokens)).bit_length()} or more)"
            )
        snap = self._prefix_snapshot
        if snap is not None and list(snap.tokens) == list(tokens[:-1]):
            self.restore(snap)
        else:
            self._llm.reset()  # type: ignore[no-untyped-call]
            self._eval(tokens[:-1])
            self._prefix_snapshot = self.snapshot()
        # The last prefix token is decoded separately so the logits after reset are fresh.
        self._eval(tokens[-1:])
        self._prefix_len = len(tokens)
        self._spans.clear()
        self._logits_fresh, self._held_logits = True, None

    def n_tokens(self) -> int:
        """Tokens in the sequence."""
        return int(self._llm.n_tokens)

    def span_count(self) -> int:
        """Spans after the prefix."""
        return len(self._spans)

    def append(self, text: str, *, join: bool = False) -> None:
        """Decode only the new tokens of ``text`` (user content is never parsed as special)."""
        self.spec_rollback()
        tokens = self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        if not tokens:
            return
        if self.n_tokens() + len(tokens) > self.n_ctx:
            raise ValueError(
                f"append of {len(tokens)} tokens overflows the window ({self.n_tokens()}/"
                f"{self.n_ctx}); the session must drop spans first"
            )
        self._eval(tokens)
        if join and self._spans:
            self._spans[-1] += len(tokens)
        else:
            self._spans.append(len(tokens))
        self._logits_fresh, self._held_logits = True, None

    def drop_oldest(self, n_spans: int) -> None:
        """Remove the oldest spans after the prefix and shift the rest down (KV shift)."""
        self.spec_rollback()
        n_spans = min(n_spans, len(self._spans))
        if n_spans <= 0:
            return
        start = self._prefix_len
        length = sum(self._spans[:n_spans])
        end = start + length
        n = self.n_tokens()
        ctx = self._llm._ctx
        if not ctx.kv_cache_seq_rm(_SEQ, start, end):
            raise RuntimeError("llama.cpp refused to remove a KV span")
        ctx.kv_cache_seq_shift(_SEQ, end, n, -length)
        ids = self._llm.input_ids
        ids[start : n - length] = ids[end:n].copy()
        self._llm.n_tokens = n - length
        del self._spans[:n_spans]

    # --- decisions and speculation -------------------------------------------------------

    def _last_logits(self) -> np.ndarray:
        if not self._logits_fresh and self._held_logits is not None:
            return self._held_logits
        if not self._logits_fresh:
            # After a rollback the logits buffer holds a speculative token's row: re-decode
            # the last real token (one token, a few ms) so the row matches the sequence.
            n = self.n_tokens()
            last = int(self._llm.input_ids[n - 1])
            self._llm.n_tokens = n - 1
            self._eval([last])
            self._logits_fresh = True
        ptr = llama_cpp.llama_get_logits_ith(self._llm._ctx.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self._n_vocab,))

    def label_logits(self, labels: Sequence[str]) -> list[float]:
        """Logits of each label's first token at the next position (microseconds)."""
        logits = self._last_logits()
        out: list[float] = []
        for label in labels:
            tid = self._label_ids.get(label)
            if tid is None:
                toks = self._llm.tokenize(label.encode("utf-8"), add_bos=False, special=False)
                tid = self._label_ids[label] = toks[0]
            out.append(float(logits[tid]))
        return out

    def end_probability(self, candidates: Sequence[str]) -> float | None:
        """Softmax mass of the candidates' first tokens at the next position (~1 ms)."""
        logits = self._last_logits().astype(np.float64)
        top = float(logits.max())
        total = float(np.exp(logits - top).sum())
        ids = {self.first_token(c) for c in candidates}
        return float(sum(np.exp(logits[i] - top) for i in ids) / total)

    def first_token(self, label: str) -> int:
        """The first token id of ``label`` (used to check labels are distinguishable)."""
        return int(self._llm.tokenize(label.encode("utf-8"), add_bos=False, special=False)[0])

    def spec_begin(self, prime: str) -> None:
        """Start a speculative continuation after the sequence (nothing is kept)."""
        self.spec_rollback()
        # Keep the decision row: after the rollback it is exactly what the sequence predicts.
        self._held_logits = self._last_logits().copy()
        self._spec_base = self.n_tokens()
        self._spec_out = []
        ids = self._llm.tokenize(prime.encode("utf-8"), add_bos=False, special=False)
        if ids and self._spec_base + len(ids) < self.n_ctx:
            self._eval(ids)
            self._logits_fresh = True

    def spec_step(
        self,
        max_tokens: int,
        stop: Sequence[str],
        budget_s: float | None = None,
        cancel: threading.Event | None = None,
    ) -> tuple[str, bool]:
        """Greedily extend the speculation by up to ``max_tokens`` tokens within ``budget_s``.

        Returns the text so far (cut at the first stop string) and whether it is finished
        (a stop string, end of generation, a full window). ``cancel`` stops it between
        tokens, unfinished: the engine decides whether the reply goes on or is dropped.
        """
        if self._spec_base is None:
            raise RuntimeError("spec_step without spec_begin")
        out = self._spec_out
        deadline = None if budget_s is None else time.perf_counter() + budget_s
        last_token_s = 0.0  # a token is not started when it would end past the deadline
        for _ in range(max_tokens):
            text = self._llm.detokenize(out).decode("utf-8", errors="ignore") if out else ""
            cut = _stop_index(text, stop)
            if cut is not None:
                return text[:cut], True
            if self.n_tokens() >= self.n_ctx - 1:
                return text, True
            if cancel is not None and cancel.is_set():
                return text, False  # stopped between tokens; the reply is not finished
            if deadline is not None and time.perf_counter() + last_token_s >= deadline:
                return text, False
            if out:
                t0 = time.perf_counter()
                self._eval(out[-1:])
                last_token_s = time.perf_counter() - t0
                self._logits_fresh = True
            logits = self._last_logits().copy()
            for tid in set(out[-REPEAT_WINDOW:]):
                v = logits[tid]
                logits[tid] = v / REPEAT_PENALTY if v > 0 else v * REPEAT_PENALTY
            tok = int(np.argmax(logits))
            if llama_cpp.llama_vocab_is_eog(self._llm._model.vocab, tok):
                return text, True
            out.append(tok)
        text = self._llm.detokenize(out).decode("utf-8", errors="ignore")
        cut = _stop_index(text, stop)
        return (text[:cut], True) if cut is not None else (text, False)

    def spec_rollback(self) -> None:
        """Drop every speculative token (``kv_cache_seq_rm``, ~0.03 ms)."""
        base = self._spec_base
        if base is None:
            return
        self._spec_base = None
        self._spec_out = []
        self._llm.n_tokens = base
        self._llm._ctx.kv_cache_seq_rm(_SEQ, base, -1)
        self._logits_fresh = False

    def pop_span(self) -> None:
        """Roll back the newest span (used to measure an append repeatedly at one length)."""
        if self._spans:
            n = self.n_tokens() - self._spans.pop()
            self._llm.n_tokens = n
            self._llm._ctx.kv_cache_seq_rm(_SEQ, n, -1)
            self._logits_fresh, self._held_logits = False, None

    def reprefill_ms(self) -> float:
        """Time the naive alternative: re-decode the whole sequence from scratch, then decide.

        Leaves the sequence as it was (same tokens, freshly decoded).
        """
        n = self.n_tokens()
        tokens = [int(x) for x in self._llm.input_ids[:n]]
        t0 = time.perf_counter()
        self._llm.n_tokens = 0
        self._eval(tokens)
        self._logits_fresh, self._held_logits = True, None
        self._last_logits()
        return (time.perf_counter() - t0) * 1000.0

    # --- snapshots -----------------------------------------------------------------------

    def snapshot(self) -> SeqSnapshot:
        """Copy the sequence's KV state (``llama_state_seq_get_data``)."""
        ctx = self._llm._ctx.ctx
        size = llama_cpp.llama_state_seq_get_size(ctx, _SEQ)
        buf = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(ctx, buf, size, _SEQ)
        tokens = self._llm.input_ids[: self.n_tokens()].copy()
        return SeqSnapshot(data=bytes(buf)[:written], tokens=tokens)

    def restore(self, snap: SeqSnapshot) -> None:
        """Put a snapshot back (``llama_state_seq_set_data``); spans are forgotten."""
        ctx = self._llm._ctx.ctx
        self._llm._ctx.kv_cache_seq_rm(_SEQ, 0, -1)
        buf = (ctypes.c_uint8 * len(snap.data)).from_buffer_copy(snap.data)
        if llama_cpp.llama_state_seq_set_data(ctx, buf, len(snap.data), _SEQ) == 0:
            raise RuntimeError("llama.cpp could not restore the sequence snapshot")
        n = len(snap.tokens)
        self._llm.input_ids[:n] = snap.tokens
        self._llm.n_tokens = n
        self._spans.clear()
        self._logits_fresh, self._held_logits = False, None

    def close(self) -> None:
        """Free the model and its context."""
        llm = getattr(self, "_llm", None)
        if llm is not None:
            llm.close()
            self._llm = None  # type: ignore[assignment]


def _stop_index(text: str, stop: Sequence[str]) -> int | None:
    hits = [i for s in stop if (i := text.find(s)) >= 0]
    return min(hits) if hits else None
