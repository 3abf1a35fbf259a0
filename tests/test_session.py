"""The session protocol: decisions in the timeline, replies, eviction with a rolling recap."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest

from engine.core.frames import DecisionKind as K
from engine.model.session import MAX_REPLY_CHARS, ModelSession, load_prompt
from tests.conftest import THREADS
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


@pytest.fixture(scope="module")
def smollm_backend() -> Iterator[object]:
    """SmolLM2 by name: 160 micro-turns test the eviction mechanics, not the default model."""
    from engine.model.llama_backend import LlamaBackend
    from engine.model.registry import FALLBACK_MODEL, resolve

    backend = LlamaBackend(resolve(FALLBACK_MODEL), n_ctx=1024, n_threads=THREADS)
    yield backend
    backend.close()


@pytest.mark.slow
def test_the_real_model_survives_many_evictions(smollm_backend: object) -> None:
    from engine.model.llama_backend import LlamaBackend

    llama_backend = smollm_backend
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


def test_warm_up_measures_and_leaves_a_fresh_session() -> None:
    from tests.fakes import FakeBackend

    backend = FakeBackend()
    session = ModelSession(backend, "system: you are Tandem")
    session.start()
    fresh = backend.n_tokens()
    cal = session.warm_up()
    assert backend.n_tokens() == fresh and backend.span_count() == 0  # nothing of it is left
    assert cal.append_ms >= 0 and cal.first_append_ms >= 0 and cal.decode_tok_s > 0


@pytest.mark.parametrize(
    ("decode_tok_s", "append_ms", "tokens"),
    [
        (35.0, 100.0, 4),  # the 0.5B on 2 cores: 80 ms left after the append, ~2 tokens: floor 4
        (35.0, 20.0, 5),
        (120.0, 40.0, 16),  # SmolLM2: 140 ms left
        (2000.0, 5.0, 64),  # a GPU: capped
    ],
)
def test_the_live_budget_follows_the_machine(
    decode_tok_s: float, append_ms: float, tokens: int
) -> None:
    from engine.core.engine import LIVE_BUDGET, live_budget

    budget = live_budget(decode_tok_s, append_ms)
    assert budget.tokens_per_tick == tokens
    assert budget.seconds_per_tick == LIVE_BUDGET.seconds_per_tick


def test_a_final_transcript_is_probed_for_its_end_and_stays_one_span() -> None:
    fake = FakeBackend(end_prob=0.8)
    session = ModelSession(fake, "system: you are Tandem")
    session.start()
    line = '1.2 user "and then how much" =>'
    _, end = session.step_probing(line, line.index(' much"') + len(" much"))
    assert end == 0.8
    assert fake.probes == ['1.2 user "and then how much']  # read before the quote closed
    assert fake.appends == [line] and fake.span_count() == 1
