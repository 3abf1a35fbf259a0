"""Where a measurement comes from: commit, clock mode, machine, configuration, date.

Every JSON object that ``tandem bench ...`` and ``tandem eval ...`` write carries one
``provenance`` field made here, so a figure in ``docs/measurements/`` can always be traced to
the code, the settings and the machine that produced it. Nothing here runs a program: the
commit is read from the ``.git`` folder's files, the machine from ``/proc`` and the standard
library.
"""

from __future__ import annotations

import datetime
import os
import platform
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import psutil

from engine.core.policy import PolicyConfig
from engine.model.load import ModelConfig
from engine.model.registry import DEFAULT_MODEL

Mode = Literal["live", "replay", "bench"]
REPO = Path(__file__).resolve().parents[2]


def git_commit(repo: Path = REPO) -> str:
    """The checked-out commit (40 hex digits) read from ``.git`` directly, or "unknown"."""
    git = repo / ".git"
    try:
        if git.is_file():  # a worktree or submodule: "gitdir: <path>"
            target = git.read_text(encoding="utf-8").strip().removeprefix("gitdir:").strip()
            git = (repo / target).resolve()
        head = (git / "HEAD").read_text(encoding="utf-8").strip()
        if not head.startswith("ref:"):
            return head if _is_sha(head) else "unknown"
        ref = head.removeprefix("ref:").strip()
        common = git
        if (git / "commondir").is_file():  # worktrees keep their refs in the main folder
            common = (git / (git / "commondir").read_text(encoding="utf-8").strip()).resolve()
        for folder in (git, common):
            loose = folder / ref
            if loose.is_file():
                sha = loose.read_text(encoding="utf-8").strip()
                return sha if _is_sha(sha) else "unknown"
        packed = common / "packed-refs"
        if packed.is_file():
            for line in packed.read_text(encoding="utf-8").splitlines():
                sha, _, name = line.partition(" ")
                if name.strip() == ref and _is_sha(sha):
                    return sha
    except OSError:
        return "unknown"
    return "unknown"


def _is_sha(text: str) -> bool:
    return len(text) == 40 and all(c in "0123456789abcdef" for c in text.lower())


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; the platform's name elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    """What the measurement ran on."""
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "ram_total_mb": round(psutil.virtual_memory().total / (1 << 20)),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "llama_cpp_python": _version("llama-cpp-python"),
        "onnxruntime": _version("onnxruntime"),
    }


def model_config(cfg: ModelConfig | None, policy: PolicyConfig | None = None) -> dict[str, Any]:
    """The settings a run used, as JSON (no secrets: a server's URL is reduced to its host)."""
    policy = policy or PolicyConfig()
    out: dict[str, Any] = {"eagerness": policy.eagerness}
    if cfg is not None:
        out.update(
            model=cfg.model or DEFAULT_MODEL,
            n_ctx=cfg.n_ctx,
            threads=cfg.n_threads if cfg.n_threads is not None else "auto",
            gpu_layers=cfg.n_gpu_layers,
        )
        if cfg.server_url:
            host = cfg.server_url.split("://", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1]
            out.update(server=host, server_model=cfg.server_model)
    return out


def provenance(
    mode: Mode,
    config: Mapping[str, Any] | None = None,
    *,
    cfg: ModelConfig | None = None,
) -> dict[str, Any]:
    """The ``provenance`` object: commit, mode, machine, configuration and date.

    Args:
        mode: how time ran: ``live`` (real clock, real devices), ``replay`` (virtual clock),
            ``bench`` (a benchmark).
        config: what else the run used (thresholds, repetitions, ...), merged over
            ``model_config(cfg)``.
        cfg: the model configuration, when the run used one.
    """
    return {
        "commit": git_commit(),
        "dirty": None,  # unknown: telling would need git itself
        "mode": mode,
        "machine": machine(),
        "config": {**model_config(cfg), **dict(config or {})},
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
