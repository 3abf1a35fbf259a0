"""The background agent: takes handoff packages from the engine, works with tools, reports.

``tasks.TaskManager`` runs each task on its own thread (``agent.Agent``: the model client of
``client``, the gated tools of ``tools``, commands in ``sandbox``, checkpoints for undo) and
reports ``TaskEvent`` values; ``link.AgentLink`` joins it to an engine; ``mcp_tools`` adds MCP
servers' tools; ``server`` runs the embedded agent model; ``eval`` is ``tandem eval agent``.
"""
