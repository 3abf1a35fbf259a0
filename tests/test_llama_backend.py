"""The in-process llama.cpp session: rollback, snapshots, KV shifting, model files."""

from __future__ import annotations

import shutil
from pathlib import Path

import llama_cpp
import pytest

from engine.core.cpu import heavy
from engine.errors import ModelFileError
from engine.model.llama_backend import LlamaBackend, choose_threads
from engine.model.registry import (
    DEFAULT_MODEL,
    EMBEDDED,
    FALLBACK_MODEL,
    ModelSpec,
    file_sha256,
    resolve,
    verify,
)
from engine.model.session import LABELS, REPLY_STOP, load_prompt

LABEL_TEXTS = list(LABELS.values())


@pytest.fixture(scope="module")
def smollm_spec() -> ModelSpec:
    """SmolLM2 by name: the file-handling tests copy and cut it (98 MB, not the default's 491)."""
    return resolve(FALLBACK_MODEL)


def fill(b: LlamaBackend, n: int, start: int = 0) -> None:
    for k in range(start, start + n):
        b.append(f'{0.2 * (k + 1):.1f} app code "file{k}.py" => silent\n')


def test_decision_labels_have_distinct_first_tokens(llama_backend: LlamaBackend) -> None:
    firsts = [llama_backend.first_token(label) for label in LABEL_TEXTS]
    assert len(set(firsts)) == len(firsts)


def test_rollback_restores_the_exact_logits(llama_backend: LlamaBackend) -> None:
    llama_backend.reset(load_prompt())
    fill(llama_backend, 3)
    llama_backend.append('0.8 typed "how do I sort a dict by value?" =>')
    before = llama_backend.label_logits(LABEL_TEXTS)
    llama_backend.spec_begin(' speak "')
    text, _ = llama_backend.spec_step(12, REPLY_STOP)
    assert text
    llama_backend.spec_rollback()
    assert llama_backend.label_logits(LABEL_TEXTS) == before


def test_snapshot_restore_gives_identical_logits(llama_backend: LlamaBackend) -> None:
    llama_backend.reset(load_prompt())
    fill(llama_backend, 2)
    snap = llama_backend.snapshot()
    n = llama_backend.n_tokens()
    llama_backend.append('0.6 typed "first branch" =>')
    first = llama_backend.label_logits(LABEL_TEXTS)
    fill(llama_backend, 4, start=10)
    llama_backend.restore(snap)
    assert llama_backend.n_tokens() == n
    llama_backend.append('0.6 typed "first branch" =>')
    assert llama_backend.label_logits(LABEL_TEXTS) == pytest.approx(first, abs=1e-4)


def test_reset_from_the_prefix_snapshot_matches_a_cold_prefill(embedded_spec: ModelSpec) -> None:
    b = LlamaBackend(embedded_spec, n_ctx=1024, n_threads=2)
    try:
        b.reset(load_prompt())  # cold: decodes and snapshots the prefix
        b.append('0.2 typed "hello" =>')
        cold = b.label_logits(LABEL_TEXTS)
        fill(b, 5)
        b.reset(load_prompt())  # warm: restored from the snapshot
        b.append('0.2 typed "hello" =>')
        assert b.label_logits(LABEL_TEXTS) == pytest.approx(cold, abs=1e-4)
    finally:
        b.close()


def test_dropping_spans_shifts_the_cache_and_keeps_token_order(llama_backend: LlamaBackend) -> None:
    b = llama_backend
    b.reset(load_prompt())
    prefix = list(b._llm.input_ids[: b.n_tokens()])
    fill(b, 6)
    spans = [
        b._llm.tokenize(
            f'{0.2 * (k + 1):.1f} app code "file{k}.py" => silent\n'.encode(), add_bos=False
        )
        for k in range(6)
    ]
    b.drop_oldest(4)
    expected = prefix + spans[4] + spans[5]
    assert b.n_tokens() == len(expected)
    assert list(b._llm.input_ids[: b.n_tokens()]) == expected
    b.append('2.0 typed "still there?" =>')  # positions continue right after the shift
    assert b.span_count() == 3
    scores = b.label_logits(LABEL_TEXTS)
    assert max(scores) > min(scores)


def test_an_append_that_overflows_the_window_is_refused(embedded_spec: ModelSpec) -> None:
    b = LlamaBackend(embedded_spec, n_ctx=512, n_threads=2)
    try:
        b.reset("<|im_start|>system\nshort<|im_end|>\n")
        with pytest.raises(ValueError, match="overflows the window"):
            b.append("word " * 600)
    finally:
        b.close()


@pytest.mark.parametrize(
    ("audio", "cores", "expected"),
    [(False, 2, 2), (True, 2, 1), (True, 1, 1), (False, 16, 8), (True, 8, 4), (False, 1, 1)],
)
def test_thread_choice_leaves_room_for_audio(audio: bool, cores: int, expected: int) -> None:
    assert choose_threads(audio_active=audio, cores=cores) == expected


def test_the_spare_core_is_taken_only_while_no_other_heavy_job_computes(
    smollm_spec: ModelSpec,
) -> None:
    b = LlamaBackend(smollm_spec, n_ctx=512, n_threads=2, threads_when_busy=1)

    def threads_now() -> int:
        return int(llama_cpp.llama_n_threads(b._llm._ctx.ctx))

    try:
        b.reset("<|im_start|>system\nshort<|im_end|>\n")
        b.append(" 0.2 app code =>")
        assert threads_now() == 2
        with heavy():  # the recogniser computes on the other core
            b.append(' silent\n0.4 user "so" =>')
            assert threads_now() == 1
            b.spec_begin(" speak:")
            b.spec_step(2, ())
            assert threads_now() == 1
        b.spec_step(2, ())
        assert threads_now() == 2
    finally:
        b.close()


# --- model files -----------------------------------------------------------------------------


def test_the_embedded_model_is_verified_by_sha256(embedded_spec: ModelSpec) -> None:
    assert embedded_spec.name == DEFAULT_MODEL == "qwen2.5-coder-0.5b"
    assert embedded_spec.sha256 == EMBEDDED[DEFAULT_MODEL].sha256
    assert embedded_spec.verified  # joined from its parts and hashed by resolve
    verify(embedded_spec)  # does not raise


def test_smollm2_is_verified_by_sha256(smollm_spec: ModelSpec) -> None:
    assert smollm_spec.sha256 == EMBEDDED[FALLBACK_MODEL].sha256
    verify(smollm_spec)  # does not raise


def test_a_flipped_byte_fails_the_checksum(smollm_spec: ModelSpec, tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    shutil.copyfile(smollm_spec.path, bad)
    with bad.open("r+b") as f:
        f.seek(50_000_000)
        byte = f.read(1)
        f.seek(50_000_000)
        f.write(bytes([byte[0] ^ 0xFF]))
    spec = ModelSpec("bad", bad, smollm_spec.sha256)
    with pytest.raises(ModelFileError, match="SHA-256") as err:
        verify(spec)
    assert file_sha256(bad) in str(err.value)


def test_a_truncated_file_without_checksum_gives_a_clear_error(
    smollm_spec: ModelSpec, tmp_path: Path
) -> None:
    cut = tmp_path / "cut.gguf"
    with smollm_spec.path.open("rb") as src:
        cut.write_bytes(src.read(20_000_000))
    with pytest.raises(ModelFileError, match="could not load"):
        LlamaBackend(resolve(str(cut)), n_ctx=512, n_threads=1)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found"),
        (b"", "bad magic"),
        (b"PK\x03\x04zipfile", "bad magic"),
        (b"GGUF\x63\x00\x00\x00", "unsupported GGUF version"),
    ],
)
def test_broken_model_files(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "m.gguf"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelFileError, match=message):
        verify(resolve(str(path)))


def test_unknown_model_names_are_explained() -> None:
    with pytest.raises(ModelFileError, match="smollm2-135m") as err:
        resolve("gpt-17")
    assert "qwen2.5-coder-0.5b" in str(err.value)
