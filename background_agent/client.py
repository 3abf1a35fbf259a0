"""The agent's model client: OpenAI-compatible chat with tool calls and streaming, over httpx.

It talks to any server that speaks ``POST /v1/chat/completions`` with ``stream: true``: the
embedded model in a ``llama_cpp.server`` that Tandem starts (``background_agent.server``), a
llama.cpp server, vLLM, SGLang, Ollama, or a hosted API (its key from ``keyring``).

Two ways to get tool calls:

- ``mode="native"``: the server's own ``tools``/``tool_calls`` (hosted APIs, vLLM with a tool
  parser); argument fragments are joined across the stream.
- ``mode="json"`` (the default for small local models): one *action* per reply, a JSON object
  ``{"tool": NAME, "arguments": {...}}`` (``"finish"`` ends the task), constrained by the
  server's JSON-schema grammar: ``response_format`` ``{"type": "json_object", "schema": ...}``
  (llama-cpp-python) or ``{"type": "json_schema", ...}`` (llama.cpp server, vLLM, SGLang). A
  server that refuses the request (HTTP 4xx) is asked again once without the optional fields
  (the constraint and ``stream_options``, which asks for token usage).

What comes back is only *text*: ``tools.parse_call`` repairs or rejects it before anything runs.
Transport errors, 429 and 5xx are retried with exponential backoff (cancellable); a timeout or
a dead server ends in one clear ``ModelServerError``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from background_agent.errors import ModelServerError, TaskCancelledError
from background_agent.repair import loads_lenient

log = logging.getLogger(__name__)

Mode = Literal["native", "json"]
Constraint = Literal["json_object", "json_schema", "none"]
FINISH = "finish"
"""The action that ends a task in ``json`` mode (its argument ``summary`` is the result)."""
RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class RawCall:
    """A tool call as the model wrote it (arguments still unparsed text)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Reply:
    """One model reply: text, the tool calls it asked for, and what it cost."""

    text: str
    calls: tuple[RawCall, ...] = ()
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = ""
    raw: str = ""
    """In ``json`` mode: the action text exactly as received (kept in the conversation)."""


@dataclass(slots=True)
class _Stream:
    text: list[str] = field(default_factory=list)
    calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    chunks: int = 0
    finish: str = ""


class ChatClient:
    """A chat-completions client for one server and model."""

    def __init__(
        self,
        base_url: str,
        model: str = "local",
        *,
        api_key: str | None = None,
        mode: Mode = "json",
        constraint: Constraint = "json_object",
        timeout_s: float = 120.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        temperature: float = 0.1,
        max_tokens: int = 768,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith("/v1"):
            self.base_url += "/v1"
        self.model, self.mode, self.constraint = model, mode, constraint
        self.retries, self.backoff_s = retries, backoff_s
        self.temperature, self.max_tokens = temperature, max_tokens
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        timeout = httpx.Timeout(timeout_s, connect=min(5.0, timeout_s))
        self._http = httpx.Client(headers=headers, timeout=timeout, trust_env=False)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    # --- messages in this client's mode ----------------------------------------------------

    def assistant_message(self, reply: Reply) -> dict[str, Any]:
        """The assistant turn to keep in the conversation for ``reply``."""
        if self.mode == "json":
            return {"role": "assistant", "content": reply.raw or reply.text}
        msg: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
        if reply.calls:
            msg["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in reply.calls
            ]
        return msg

    def result_message(self, call: RawCall, output: str) -> dict[str, Any]:
        """The turn that gives a tool's output back to the model."""
        if self.mode == "json":  # chat templates of small models may lack a tool role
            return {"role": "user", "content": f"Result of {call.name}:\n{output}"}
        return {"role": "tool", "tool_call_id": call.id, "content": output}

    # --- the request -----------------------------------------------------------------------

    def complete(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]],
        *,
        cancel: threading.Event | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> Reply:
        """One streamed reply.

        Raises:
            ModelServerError: the server is unreachable, timed out or keeps failing.
            TaskCancelledError: ``cancel`` was set.
        """
        body: dict[str, Any] = {
            "model": self.model,
            "messages": list(messages),
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        if self.mode == "native" and tools:
            body["tools"] = [{"type": "function", "function": dict(t)} for t in tools]
        constrained = self.mode == "json" and self.constraint != "none"
        if constrained:
            body["response_format"] = self._format(action_schema(tools))
        try:
            stream = self._post(body, cancel, on_text)
        except _RefusedError:
            log.warning("model server refused the request's options: asking without them")
            body.pop("response_format", None)
            body.pop("stream_options", None)
            try:
                stream = self._post(body, cancel, on_text)
            except _RefusedError as again:
                raise ModelServerError(str(again)) from None
        return self._reply(stream)

    def _format(self, schema: dict[str, Any]) -> dict[str, Any]:
        if self.constraint == "json_object":
            return {"type": "json_object", "schema": schema}
        return {"type": "json_schema", "json_schema": {"name": "action", "schema": schema}}

    def _post(
        self,
        body: dict[str, Any],
        cancel: threading.Event | None,
        on_text: Callable[[str], None] | None,
    ) -> _Stream:
        url = f"{self.base_url}/chat/completions"
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                delay = self.backoff_s * 2 ** (attempt - 1)
                if cancel is not None and cancel.wait(delay):
                    raise TaskCancelledError("cancelled")
                if cancel is None:
                    time.sleep(delay)
            if cancel is not None and cancel.is_set():
                raise TaskCancelledError("cancelled")
            try:
                with self._http.stream("POST", url, json=body) as r:
                    if r.status_code >= 400:
                        r.read()
                        detail = r.text.strip().replace("\n", " ")[:200]
                        problem = f"HTTP {r.status_code}: {detail}"
                        if r.status_code in RETRY_STATUS:
                            continue
                        raise _RefusedError(f"model server at {self.base_url} refused: {problem}")
                    return self._read(r, cancel, on_text)
            except httpx.TimeoutException:
                problem = "timed out"
            except httpx.TransportError as e:
                problem = type(e).__name__
        tries = self.retries + 1
        raise ModelServerError(
            f"model server at {self.base_url} failed ({problem}) after {tries} tries"
        )

    def _read(
        self,
        r: httpx.Response,
        cancel: threading.Event | None,
        on_text: Callable[[str], None] | None,
    ) -> _Stream:
        s = _Stream()
        for line in r.iter_lines():
            if cancel is not None and cancel.is_set():
                raise TaskCancelledError("cancelled")
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            try:
                chunk = json.loads(data)
            except json.JSONDecodeError:
                continue  # a keep-alive or a broken line: skipped, the rest still counts
            if not isinstance(chunk, dict):
                continue
            usage = chunk.get("usage")
            if isinstance(usage, dict):
                s.prompt_tokens = int(usage.get("prompt_tokens") or 0)
                s.completion_tokens = int(usage.get("completion_tokens") or 0)
            for choice in chunk.get("choices") or []:
                self._take(s, choice, on_text)
        return s

    @staticmethod
    def _take(s: _Stream, choice: Any, on_text: Callable[[str], None] | None) -> None:
        if not isinstance(choice, dict):
            return
        s.finish = str(choice.get("finish_reason") or s.finish)
        delta = choice.get("delta") or {}
        if not isinstance(delta, dict):
            return
        content = delta.get("content")
        if isinstance(content, str) and content:
            s.text.append(content)
            s.chunks += 1
            if on_text is not None:
                on_text(content)
        for tc in delta.get("tool_calls") or []:
            if not isinstance(tc, dict):
                continue
            slot = s.calls.setdefault(int(tc.get("index") or 0), {"id": "", "name": "", "args": ""})
            slot["id"] = tc.get("id") or slot["id"]
            fn = tc.get("function") or {}
            if isinstance(fn, dict):
                slot["name"] += fn.get("name") or ""
                slot["args"] += fn.get("arguments") or ""
            s.chunks += 1

    def _reply(self, s: _Stream) -> Reply:
        text = "".join(s.text)
        tokens = s.completion_tokens or s.chunks  # a server without usage: one chunk a token
        if self.mode == "native":
            calls = tuple(
                RawCall(c["id"] or f"call_{k}", c["name"], c["args"] or "{}")
                for k, c in sorted(s.calls.items())
            )
            return Reply(text, calls, s.prompt_tokens, tokens, s.finish, text)
        return Reply(text, _action_calls(text), s.prompt_tokens, tokens, s.finish, text)


class _RefusedError(Exception):
    """The server answered 4xx (not worth retrying)."""


def action_schema(tools: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The JSON schema of one action: a call of one of ``tools``, or ``finish``."""
    finish = {
        "type": "object",
        "properties": {"summary": {"type": "string"}},
        "required": ["summary"],
        "additionalProperties": False,
    }
    options = [
        {
            "type": "object",
            "properties": {"tool": {"const": t["name"]}, "arguments": t["parameters"]},
            "required": ["tool", "arguments"],
            "additionalProperties": False,
        }
        for t in tools
    ]
    options.append(
        {
            "type": "object",
            "properties": {"tool": {"const": FINISH}, "arguments": finish},
            "required": ["tool", "arguments"],
            "additionalProperties": False,
        }
    )
    return {"anyOf": options}


def _action_calls(text: str) -> tuple[RawCall, ...]:
    """The call in a ``json``-mode action, kept as text for the parser to repair or reject.

    A reply that is not an action at all (plain prose) is no call: the task ends with it as
    the summary. A ``finish`` action is no call either.
    """
    obj = loads_lenient(text)
    if not isinstance(obj, dict):
        return () if "{" not in text else (RawCall("call_0", "", text),)
    name = obj.get("tool", obj.get("name", ""))
    if name == FINISH:
        return ()
    args = obj.get("arguments", obj.get("args", obj.get("parameters", {})))
    return (RawCall("call_0", str(name), json.dumps(args) if not isinstance(args, str) else args),)


def finish_summary(reply: Reply) -> str:
    """The result line of a reply that made no call (a ``finish`` action or prose)."""
    obj = loads_lenient(reply.text)
    if isinstance(obj, dict):
        args = obj.get("arguments")
        if isinstance(args, dict) and isinstance(args.get("summary"), str):
            return str(args["summary"])
    return reply.text.strip()
