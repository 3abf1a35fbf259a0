"""MCP servers as extra tools, through the ``mcp`` SDK (stdio transport).

``McpServer`` starts one server program (its environment is the SDK's safe default: no keys,
no tokens), lists its tools and turns each into a ``Tool`` named ``mcp__<server>__<tool>``
that the agent's ``Registry`` registers like any other, so every call is decided by the gate
(MCP tools are HIGH risk: asked about unless a rule allows them; every string argument that
names a path is checked against the protected presets) and written to the audit log.

The SDK is asyncio-based: each server has one owner thread (``tandem-mcp-<server>``) running
its own event loop and client session; calls from task threads are handed to it and waited
for with a timeout. ``close`` ends the session (the SDK stops the child) and joins the thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from background_agent.errors import AgentError
from background_agent.tools import Tool, ToolContext

log = logging.getLogger(__name__)

CALL_TIMEOUT_S = 60.0
START_TIMEOUT_S = 60.0
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_TOOL = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_RESULT = 20_000


class McpError(AgentError):
    """An MCP server could not start, or a call to it failed."""


@dataclass(frozen=True, slots=True)
class _Call:
    tool: str
    args: dict[str, Any]
    done: concurrent.futures.Future[str]


class McpServer:
    """One MCP server on stdio, owned by its own thread and event loop."""

    def __init__(
        self,
        name: str,
        command: str,
        args: Sequence[str] = (),
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        if not _NAME.match(name):
            raise McpError(f"bad MCP server name {name[:60]!r} (letters, digits, _ and -)")
        self.name, self.command, self.args = name, command, list(args)
        self.cwd, self.env = cwd, env
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[_Call | None] | None = None
        self._ready = threading.Event()
        self._problem: str | None = None
        self._tools: list[Tool] = []

    def start(self) -> list[Tool]:
        """Start the server and list its tools (as gated-to-be ``Tool`` values).

        Raises:
            McpError: it could not start or list its tools in time.
        """
        self._thread = threading.Thread(target=self._own, name=f"tandem-mcp-{self.name}")
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            self.close()
            raise McpError(f"MCP server {self.name} did not start in {START_TIMEOUT_S:.0f} s")
        if self._problem is not None:
            problem = self._problem
            self.close()
            raise McpError(f"MCP server {self.name} failed: {problem}")
        return list(self._tools)

    def call(self, tool: str, args: dict[str, Any]) -> str:
        """Call one of the server's tools (from any thread); its text output.

        Raises:
            McpError: the server is gone, the call failed or timed out.
        """
        loop, queue = self._loop, self._queue
        if loop is None or queue is None or loop.is_closed():
            raise McpError(f"MCP server {self.name} is not running")
        done: concurrent.futures.Future[str] = concurrent.futures.Future()
        loop.call_soon_threadsafe(queue.put_nowait, _Call(tool, args, done))
        try:
            return done.result(CALL_TIMEOUT_S)
        except concurrent.futures.TimeoutError as e:
            raise McpError(f"{self.name}/{tool} ran past {CALL_TIMEOUT_S:.0f} s") from e

    def close(self) -> None:
        """End the session and the child, and join the owner thread."""
        loop, queue = self._loop, self._queue
        if loop is not None and queue is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed in between: it is ending
                loop.call_soon_threadsafe(queue.put_nowait, None)
        if self._thread is not None:
            self._thread.join(30.0)
            self._thread = None

    # --- the owner thread ----------------------------------------------------------------

    def _own(self) -> None:
        try:
            asyncio.run(self._session())
        except Exception as e:  # the SDK raises many kinds (groups too); each is one line here
            self._problem = self._problem or f"{type(e).__name__}: {str(e)[:200]}"
            log.warning("MCP server %s ended: %s", self.name, self._problem)
        finally:
            self._ready.set()

    async def _session(self) -> None:
        from mcp import ClientSession, StdioServerParameters
        from mcp.client.stdio import stdio_client

        params = StdioServerParameters(
            command=self.command, args=self.args, env=self.env, cwd=self.cwd
        )
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        with open(os.devnull, "w") as errlog:  # the server's own chatter stays off the terminal
            async with (
                stdio_client(params, errlog=errlog) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                listed = await session.list_tools()
                self._tools = [
                    self._tool(t.name, t.description, t.inputSchema)
                    for t in listed.tools
                    if _TOOL.match(t.name)
                ]
                self._ready.set()
                while (item := await self._queue.get()) is not None:
                    await self._serve(session, item)

    async def _serve(self, session: Any, item: _Call) -> None:
        try:
            result = await session.call_tool(item.tool, item.args)
        except Exception as e:  # a failed call is that call's error, never the session's end
            item.done.set_exception(McpError(f"{self.name}/{item.tool}: {str(e)[:200]}"))
            return
        texts = [getattr(c, "text", "") for c in result.content]
        text = "\n".join(t for t in texts if t)[:MAX_RESULT]
        if result.isError:
            item.done.set_exception(McpError(f"{self.name}/{item.tool}: {text[:300]}"))
        else:
            item.done.set_result(text or "(no output)")

    def _tool(self, tool: str, description: str | None, schema: dict[str, Any]) -> Tool:
        def body(args: dict[str, Any], ctx: ToolContext) -> str:
            return self.call(tool, args)

        params = dict(schema) if isinstance(schema, dict) else {"type": "object"}
        params.setdefault("type", "object")
        return Tool(f"mcp__{self.name}__{tool}", (description or tool)[:500], params, body)
