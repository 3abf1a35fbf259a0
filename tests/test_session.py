"""The session protocol: decisions in the timeline, replies, eviction with a rolling recap."""

from __future__ import annotations

import math

import pytest

from engine.frames import DecisionKind as K
from engine.model.session import MAX_REPLY_CHARS, ModelSession, load_prompt
from tests.fakes import FakeBackend

SHORT_PROMPT = "system: you are Tandem"


def session(n_ctx: int = 4096, **kw: object) -> tuple[ModelSession, FakeBackend]:
    fake = FakeBackend(n_ctx=n_ctx, **kw)  # type: ignore[arg-type]
    s = ModelSession(fake, SHORT_PROMPT)
    s.start()
    return s, fake


def test_the_decision_follows_the_cue_at_the_start_of_the_next_span() -> None:
    s, fake = session()
    s.step('0.2 typed "hi" =>')
    s.record(K.SPEAK, 'Hello "there"')
    s.step("0.4 =>")
    assert fake.appends[-1] == " speak \"Hello 'there'\"\n0.4 =>"


def test_lines_held_during_a_reply_come_after_the_decision() -> None:
    s, fake = session()
    s.step('0.2 typed "hi" =>')
    s.note("0.4 app firefox =>")
    s.record(K.SPEAK, "Hello")
    s.step("0.6 =>")
    assert fake.appends[-1] == ' speak "Hello"\n0.4 app firefox\n0.6 =>'


def test_proposal_is_a_distribution_favouring_the_scored_label() -> None:
    s, _ = session()
    p = s.step('0.2 typed "hi" =>')
    assert math.isclose(sum(p.probs.values()), 1.0)
    assert p.best() is K.SPEAK


def test_replies_are_capped_and_leave_nothing_behind() -> None:
    s, fake = session(reply="word " * 200)
    s.step('0.2 typed "tell me everything" =>')
    n = fake.n_tokens()
    s.reply_begin(K.SPEAK)
    text, done = s.reply_step(1000)
    assert done and 0 < len(text) <= MAX_REPLY_CHARS
    assert fake.n_tokens() == n


def test_a_long_session_stays_inside_the_window_and_keeps_a_recap() -> None:
    s, fake = session(n_ctx=400)
    for k in range(3000):
        t = 0.2 * (k + 1)
        if k % 10 == 0:
            s.step(f'{t:.1f} typed "question {k}" =>')
            s.record(K.SILENT)
        elif k % 10 == 5:
            s.step(f"{t:.1f} =>")  # a heartbeat
            s.record(K.SILENT)
        else:
            s.maintain()  # a quiet tick
        assert fake.n_tokens() <= s.high_water + 20
    stats = s.stats()
    assert stats.evictions > 10
    assert stats.max_tokens <= fake.n_ctx
    recaps = [line for a in fake.appends for line in a.splitlines() if line.startswith("recap: ")]
    assert len(recaps) > 10
    assert all(r.startswith("recap: 5") or 'typed "question' in r for r in recaps[-3:])
    assert not any(r.rstrip().endswith(("=>", "silent")) for r in recaps)
    assert max(len(a.split()) for a in fake.appends) < 20  # no tick pays for a long recap


def test_eviction_happens_on_quiet_ticks_before_the_high_water_mark() -> None:
    s, fake = session(n_ctx=400)
    while fake.n_tokens() <= s.soft_water:
        s.step('9.9 typed "filler words here" =>')
        s.record(K.SILENT)
    assert s.stats().evictions == 0
    assert s.maintain() is True  # dropped spans and wrote the first recap line
    assert s.stats().evictions == 1
    assert fake.n_tokens() <= s.low_water + 20


def test_a_window_too_small_for_the_prompt_is_a_clear_error() -> None:
    from engine.errors import EngineError

    with pytest.raises(EngineError, match="too small"):
        ModelSession(FakeBackend(n_ctx=40), SHORT_PROMPT, reserve_tokens=30)


@pytest.mark.slow
def test_the_real_model_survives_many_evictions(llama_backend: object) -> None:
    from engine.model.llama_backend import LlamaBackend

    assert isinstance(llama_backend, LlamaBackend)
    s = ModelSession(llama_backend, load_prompt())
    s.start()
    for k in range(160):
        t = 0.2 * (k + 1)
        line = (
            f'{t:.1f} typed "what does line {k} do?" =>' if k % 4 == 0 else f"{t:.1f} app code =>"
        )
        p = s.step(line)
        assert math.isclose(sum(p.probs.values()), 1.0, rel_tol=1e-6)
        s.record(K.SILENT)
        assert llama_backend.n_tokens() <= llama_backend.n_ctx
    assert s.stats().evictions >= 2
    s.reply_begin(K.SPEAK)
    text, _ = s.reply_step(24)
    assert text.strip()
