"""What one decision costs: the gate's ``authorize`` on an ordinary mix of requests.

The mix is what a pair programmer asks all day: a read inside the workspace, ``pytest``, a
write under ``src``, a network fetch; the rules are a user's ordinary rules (those four
allowed, a few deny rules) padded to ``n_rules`` with more of the same kinds. No audit log
and no prompts: this is the decision alone (an audit append adds an fsync).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from permissions.gate import Gate
from permissions.model import Decision, Rule, Scope, Sense, ToolRequest

WARMUP = 50


def ordinary_rules(n_rules: int) -> tuple[Rule, ...]:
    """``n_rules`` user rules: the four a user adds in the first week, then padding."""
    base = [
        Rule("u:pytest", Decision.ALLOW, tool="run_command", command="pytest", scope=Scope.SESSION),
        Rule("u:src", Decision.ALLOW, tool="write_file", path="src/**"),
        Rule(
            "u:docs-site",
            Decision.ALLOW,
            tool="fetch_url",
            scope=Scope.SESSION,
            host="docs.python.org",
        ),
        Rule("u:no-secrets", Decision.DENY, tool="*", path="secrets/**"),
        Rule("u:no-slack", Decision.DENY, sense=Sense.SCREEN, app="slack*"),
    ]
    pad: list[Rule] = []
    for i in range(max(0, n_rules - len(base))):
        kind = i % 4
        if kind == 0:
            pad.append(
                Rule(
                    f"u:cmd{i}",
                    Decision.ALLOW,
                    tool="run_command",
                    command=f"tool{i} --check",
                    scope=Scope.SESSION,
                )
            )
        elif kind == 1:
            pad.append(Rule(f"u:write{i}", Decision.ALLOW, tool="write_file", path=f"docs{i}/**"))
        elif kind == 2:
            pad.append(Rule(f"u:deny{i}", Decision.DENY, tool="*", path=f"private{i}/**"))
        else:
            pad.append(Rule(f"u:app{i}", Decision.DENY, sense=Sense.SCREEN, app=f"app{i}*"))
    return tuple((base + pad)[: max(n_rules, 0)])


def measure_decision_cost(n_rules: int, n_requests: int) -> dict[str, Any]:
    """Time ``n_requests`` decisions (after a warm-up) with ``n_rules`` user rules.

    Args:
        n_rules: how many user rules the gate holds (besides its presets).
        n_requests: how many decisions to time, cycling through the mix.

    Returns:
        ``{"n_rules", "n_requests", "p50_us", "p99_us", "mean_us", "max_us", "decisions"}``;
        ``decisions`` counts each decision kind, to show the mix was decided as expected.
    """
    with tempfile.TemporaryDirectory(prefix="tandem-bench-") as tmp:
        ws = Path(tmp)
        (ws / "src" / "pkg").mkdir(parents=True)
        (ws / "src" / "app.py").write_text("print('hi')\n")
        gate = Gate(ordinary_rules(n_rules), protected_dirs=(ws / "cfg", ws / "data"))
        mix = [
            ToolRequest("read_file", {"path": "src/app.py"}, ws),
            ToolRequest("run_command", {"command": "pytest -q tests/test_app.py"}, ws),
            ToolRequest("write_file", {"path": "src/pkg/mod.py", "content": "x = 1\n"}, ws),
            ToolRequest("fetch_url", {"url": "https://docs.python.org/3/library/"}, ws),
        ]
        for i in range(WARMUP):
            gate.authorize(mix[i % len(mix)])
        times: list[float] = []
        decisions: dict[str, int] = {}
        for i in range(n_requests):
            req = mix[i % len(mix)]
            t0 = time.perf_counter_ns()
            verdict = gate.authorize(req)
            times.append((time.perf_counter_ns() - t0) / 1000)
            key = f"{req.tool}:{verdict.decision.value}"
            decisions[key] = decisions.get(key, 0) + 1
    times.sort()
    return {
        "n_rules": n_rules,
        "n_requests": n_requests,
        "p50_us": round(statistics.median(times), 1),
        "p99_us": round(times[min(len(times) - 1, int(len(times) * 0.99))], 1),
        "mean_us": round(statistics.fmean(times), 1),
        "max_us": round(times[-1], 1),
        "decisions": decisions,
    }
