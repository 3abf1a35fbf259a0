"""Remote backend: any OpenAI-compatible server (llama.cpp server, vLLM, SGLang, Ollama).

The session's text is re-sent each tick, but the server's prompt cache (``cache_prompt`` in
llama.cpp, automatic prefix caching in vLLM/SGLang, the slot cache in llama-cpp-python's
server) matches the unchanged prefix, so only the new tokens are evaluated: a growing session
does not cost a full re-prefill per tick. Dropping old spans changes the prefix, so the
session drops many at once (down to its low-water mark) and pays one re-prefill per eviction.

Decisions read ``logprobs`` of the first generated token (``/v1/completions``, ``max_tokens=1``);
servers that return no log-probs fall back to the greedy token's text. Replies stream over SSE in
slices (one request per slice, the partial reply in the prompt) and stop as soon as the
cancel flag is set.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import httpx

from engine.errors import ModelServerError

TOP_LOGPROBS = 20
ERROR_BODY_CHARS = 200


class RemoteBackend:
    """One session on an OpenAI-compatible ``/v1/completions`` endpoint."""

    def __init__(
        self,
        base_url: str,
        *,
        model: str = "default",
        n_ctx: int = 2048,
        api_key: str | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        url = base_url.rstrip("/")
        if not url.endswith("/v1"):
            url += "/v1"
        self.base_url = url
        self.name = f"{model}@{url}"
        self.model = model
        self.n_ctx = n_ctx
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=httpx.Timeout(timeout_s, connect=5.0), headers=headers)
        self._prefix = ""
        self._spans: list[str] = []
        self._known_tokens = 0  # prompt tokens the server reported for ``_known_chars``
        self._known_chars = 0
        self._spec: str | None = None
        self._spec_text = ""

    # --- the sequence (kept as text; the server caches its tokens) ------------------------

    def _prompt(self) -> str:
        return self._prefix + "".join(self._spans)

    def reset(self, prefix: str) -> None:
        """Start over with ``prefix``; one request checks the server and warms its cache."""
        self.spec_rollback()
        self._prefix = prefix
        self._spans = []
        self._complete(self._prompt(), max_tokens=1, logprobs=None)

    def n_tokens(self) -> int:
        """Tokens in the session: the server's last count, plus an estimate for new text."""
        chars = len(self._prompt())
        if self._known_chars <= 0:
            return chars // 3
        per_char = self._known_tokens / self._known_chars
        return round(self._known_tokens + (chars - self._known_chars) * per_char)

    def span_count(self) -> int:
        """Spans after the prefix."""
        return len(self._spans)

    def append(self, text: str, *, join: bool = False) -> None:
        """Queue ``text``; the next request carries it and the server decodes only it."""
        self.spec_rollback()
        if join and self._spans:
            self._spans[-1] += text
        else:
            self._spans.append(text)

    def drop_oldest(self, n_spans: int) -> None:
        """Forget the oldest spans (the server re-prefills once from the changed point)."""
        self.spec_rollback()
        kept_chars = len(self._prompt())
        del self._spans[: max(0, n_spans)]
        if self._known_chars:
            scale = len(self._prompt()) / kept_chars
            self._known_chars = round(self._known_chars * scale)
            self._known_tokens = round(self._known_tokens * scale)

    # --- decisions and speculation -------------------------------------------------------

    def label_logits(self, labels: Sequence[str]) -> list[float]:
        """Log-probabilities of each label's first token as the next token."""
        choice = self._complete(self._prompt(), max_tokens=1, logprobs=TOP_LOGPROBS)
        top = _top_logprobs(choice)
        if top is None:  # the server gives no log-probs: trust the greedy token alone
            text = str(choice.get("text", ""))
            return [0.0 if text and lab.startswith(text) else -math.inf for lab in labels]
        out = []
        for label in labels:
            scores = [lp for tok, lp in top.items() if tok.strip() and label.startswith(tok)]
            out.append(max(scores) if scores else -math.inf)
        return out

    def end_probability(self, candidates: Sequence[str]) -> float | None:
        """From the server's top log-probs (None when it gives none): each distinct top token
        that starts a candidate counts once."""
        choice = self._complete(self._prompt(), max_tokens=1, logprobs=TOP_LOGPROBS)
        top = _top_logprobs(choice)
        if top is None:
            return None
        hits = {tok for tok in top if tok and any(c.startswith(tok) for c in candidates)}
        return min(1.0, sum(math.exp(top[tok]) for tok in hits))

    def spec_begin(self, prime: str) -> None:
        """Start a speculative continuation (kept client-side; the server caches the prefix)."""
        self._spec = prime
        self._spec_text = ""

    def spec_step(
        self,
        max_tokens: int,
        stop: Sequence[str],
        budget_s: float | None = None,
        cancel: threading.Event | None = None,
    ) -> tuple[str, bool]:
        """One streamed request for up to ``max_tokens`` more tokens of the continuation."""
        if self._spec is None:
            raise RuntimeError("spec_step without spec_begin")
        body = self._body(self._prompt() + self._spec + self._spec_text, max_tokens, None)
        body.update(stream=True, stop=list(stop))
        deadline = None if budget_s is None else time.perf_counter() + budget_s
        finished = True
        grown_from = len(self._spec_text)
        for chunk, reason in self._stream(body):
            self._spec_text += chunk
            if cancel is not None and cancel.is_set():
                finished = False  # stopped, not finished: the engine decides what follows
                break
            if reason is not None:
                # "length" means our slice ran out, not the reply; a slice that added
                # nothing ends it (a server stuck at "length" cannot loop us forever).
                finished = reason != "length" or len(self._spec_text) == grown_from
                break
            if deadline is not None and time.perf_counter() >= deadline:
                finished = False
                break
        return self._spec_text, finished

    def spec_rollback(self) -> None:
        """Forget the speculation (nothing was added to the session)."""
        self._spec = None
        self._spec_text = ""

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    # --- HTTP ----------------------------------------------------------------------------

    def _body(self, prompt: str, max_tokens: int, logprobs: int | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": prompt,
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "cache_prompt": True,  # llama.cpp server; others ignore it and cache by prefix
        }
        if logprobs is not None:
            body["logprobs"] = logprobs
        return body

    def _complete(self, prompt: str, max_tokens: int, logprobs: int | None) -> dict[str, Any]:
        data = self._request(self._body(prompt, max_tokens, logprobs))
        try:
            choice = data["choices"][0]
            if not isinstance(choice, dict):
                raise TypeError("choice is not an object")
        except (KeyError, IndexError, TypeError) as e:
            raise ModelServerError(f"{self.base_url}: malformed completion ({e})") from e
        usage = data.get("usage")
        if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
            self._known_tokens = usage["prompt_tokens"]
            self._known_chars = len(prompt)
        return choice

    def _request(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            resp = self._client.post(f"{self.base_url}/completions", json=body)
        except httpx.TimeoutException as e:
            raise ModelServerError(f"model server at {self.base_url} timed out ({e})") from e
        except httpx.HTTPError as e:
            raise ModelServerError(f"model server at {self.base_url} is unreachable ({e})") from e
        _check_status(resp, self.base_url)
        try:
            data = resp.json()
        except ValueError as e:
            raise ModelServerError(f"{self.base_url}: answer is not JSON") from e
        if not isinstance(data, dict):
            raise ModelServerError(f"{self.base_url}: answer is not a JSON object")
        return data

    def _stream(self, body: dict[str, Any]) -> Iterator[tuple[str, str | None]]:
        try:
            with self._client.stream("POST", f"{self.base_url}/completions", json=body) as resp:
                if resp.status_code >= 400:
                    resp.read()
                _check_status(resp, self.base_url)
                for line in resp.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        return
                    yield _chunk(payload, self.base_url)
        except httpx.TimeoutException as e:
            raise ModelServerError(f"model server at {self.base_url} timed out ({e})") from e
        except httpx.HTTPError as e:
            raise ModelServerError(f"model server at {self.base_url} is unreachable ({e})") from e


def _check_status(resp: httpx.Response, url: str) -> None:
    if resp.status_code >= 400:
        snippet = resp.text[:ERROR_BODY_CHARS].replace("\n", " ")
        raise ModelServerError(f"model server at {url} answered HTTP {resp.status_code}: {snippet}")


def _chunk(payload: str, url: str) -> tuple[str, str | None]:
    """(text, finish_reason) of one SSE completion chunk."""
    try:
        choice = json.loads(payload)["choices"][0]
        text = choice.get("text", "")
        reason = choice.get("finish_reason")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
        raise ModelServerError(f"{url}: malformed stream chunk ({e})") from e
    return (text if isinstance(text, str) else ""), (reason if isinstance(reason, str) else None)


def _top_logprobs(choice: dict[str, Any]) -> dict[str, float] | None:
    """The first position's {token text: logprob}, from either completions log-prob shape."""
    lp = choice.get("logprobs")
    if not isinstance(lp, dict):
        return None
    top = lp.get("top_logprobs")
    if isinstance(top, list) and top and isinstance(top[0], dict):
        return {str(k): float(v) for k, v in top[0].items() if isinstance(v, int | float)}
    content = lp.get("content")  # chat-style shape some servers use for completions too
    if isinstance(content, list) and content and isinstance(content[0], dict):
        entries = content[0].get("top_logprobs") or []
        return {
            str(e["token"]): float(e["logprob"])
            for e in entries
            if isinstance(e, dict) and "token" in e and "logprob" in e
        }
    return None
