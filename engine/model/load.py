"""Build a model session from a typed config: the embedded default, a GGUF, or a server."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from engine.model.backend import SessionBackend
from engine.model.session import ModelSession
from permissions.errors import SecretsError
from permissions.secrets import get_secret

DEFAULT_N_CTX = 2048
"""The working window for the embedded 135M model on a CPU. Measured here (2 threads):
append+decide grows from ~100 ms at 200 tokens to ~165 ms at 1.8k (flatness 1.5) but to
~220 ms at 3.9k with a 4,096 window (2.3): past 2k the window costs more than it gives a
135M model. Larger models on a GPU should raise it (``--n-ctx``)."""

log = logging.getLogger(__name__)


def server_key_name(url: str) -> str:
    """The keyring name under which a server's API key is kept."""
    return f"server:{url.rstrip('/')}"


def server_api_key(url: str) -> str | None:
    """The server's API key from the system keyring (never from files or the environment)."""
    try:
        return get_secret(server_key_name(url))
    except SecretsError as e:
        log.warning("no API key for the model server: %s", e)
        return None


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """Where the interaction model comes from and how it runs."""

    model: str | None = None
    sha256: str | None = None
    n_ctx: int = DEFAULT_N_CTX
    n_threads: int | None = None
    n_gpu_layers: int | None = None
    server_url: str | None = None
    server_model: str = "default"
    audio_active: bool = False


def make_backend(cfg: ModelConfig) -> SessionBackend:
    """The backend the config names (call on the model's owner thread)."""
    if cfg.server_url:
        from engine.model.remote_backend import RemoteBackend

        return RemoteBackend(
            cfg.server_url,
            model=cfg.server_model,
            n_ctx=cfg.n_ctx,
            api_key=server_api_key(cfg.server_url),
        )
    from engine.model.llama_backend import LlamaBackend, choose_threads
    from engine.model.registry import resolve

    # Threads chosen for the load: every core while the audio models are quiet, fewer while
    # they compute (``engine.core.cpu``); a number the user set is used as it is.
    threads = cfg.n_threads or choose_threads(audio_active=False)
    busy = cfg.n_threads or choose_threads(audio_active=cfg.audio_active)
    spec = resolve(cfg.model, cfg.sha256)  # the default falls back to SmolLM2, saying why
    return LlamaBackend(
        spec,
        n_ctx=cfg.n_ctx,
        n_threads=threads,
        threads_when_busy=busy,
        n_gpu_layers=cfg.n_gpu_layers,
        verify_file=not spec.verified,  # a joined model was hashed by resolve just now
    )


def make_session(cfg: ModelConfig) -> ModelSession:
    """A ``ModelSession`` on the configured backend (not yet started)."""
    return ModelSession(make_backend(cfg))
