"""`tandem eval replies`: the fact matcher, the copy detector, the questions file, the command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app import cli
from engine.core.copying import PromptText, contains, copies, opens_with, overlap, words
from engine.core.events import DecisionEvent, SpeechStart, SpeechStop
from engine.eval.replies import (
    QuestionsError,
    fact_found,
    facts_found,
    first_reply,
    load_questions,
    stem,
)
from engine.model.session import ModelSession, load_prompt
from tests.fakes import FakeBackend

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_ANSWER = "It returns a new string with the whitespace at both ends removed."
OLD_EXAMPLE = "A copy of the string without leading and trailing whitespace."


# --- the fact matcher --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("replays", "replay"),
        ("replayed", "replay"),
        ("replaying", "replay"),
        ("rebasing", "rebas"),
        ("rebase", "rebas"),
        ("committed", "commit"),
        ("commits", "commit"),
        ("running", "run"),
        ("string", "string"),  # -ing without a vowel before it is not an ending
        ("strings", "string"),
        ("need", "need"),
        ("class", "class"),
        ("status", "status"),
        ("processes", "process"),
        ("applied", "apply"),
        ("copies", "copy"),
    ],
)
def test_stem(word: str, expected: str) -> None:
    assert stem(word) == expected


@pytest.mark.parametrize(
    ("reply", "alternatives", "found"),
    [
        ("Rebase replays your commits on top of main.", ["replay", "reapply"], True),
        ("It reapplied them.", ["replay", "reapply"], True),
        ("It REPLAYED them!", ["replay"], True),
        ("A replayer is something else.", ["replay"], False),  # not a stem of it
        ("Use git stash pop.", ["git stash"], True),
        ("git is great, and stash it", ["git stash"], False),  # the words must be in a row
        ("Use git reset --soft HEAD~1.", ["--soft"], True),
        ("Use git reset soft head 1.", ["head~1"], True),
        ("f-strings are nicer", ["f-string"], True),
        ("the cat", ["at"], False),  # word boundaries, not substrings
        ("", ["anything"], False),
        ("It's a KeyError: the key is not in the dict.", ["not in"], True),
    ],
)
def test_fact_found(reply: str, alternatives: list[str], found: bool) -> None:
    assert fact_found(reply, alternatives) is found


def test_facts_found_counts_each_fact_once() -> None:
    facts = [["rebase", "replay"], ["commit"], ["force push"]]
    assert facts_found("Rebase rewrites commits: replay, replay, commit.", facts) == 2


# --- the copy detector -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "source", "copied"),
    [
        (OLD_EXAMPLE, OLD_EXAMPLE, True),
        ("a copy of the string, without leading and trailing whitespace", OLD_EXAMPLE, True),
        (
            "It returns a copy of the string without leading and trailing whitespace.",
            OLD_EXAMPLE,
            True,
        ),  # 10 of its 12 words
        (
            "It returns a copy of the string without leading and trailing spaces.",
            OLD_EXAMPLE,
            False,
        ),  # 9 of 12: under the 80 % line
        ("git rebase replays your commits on top of the other branch.", OLD_EXAMPLE, False),
        ("I will say nothing of my antecedents.", "I will say nothing of my antecedents", True),
        ("Why would git rebase mess up my branch?", "why would git rebase mess up my branch", True),
        (
            "Rebase rewrites the commits on your branch.",
            "why would git rebase mess up my branch",
            False,
        ),
        ("Yes.", "yes", True),  # short replies copy only an equal source
        ("Okay.", "okay so the test fails", False),
        ("the test", "okay so the test fails", False),
        ("", "anything", False),
        ("anything", "", False),
        ("...", "...", False),  # no words, no copy
        # shared single words scattered in order are not a copy
        ("the string is a copy and the whitespace is gone", OLD_EXAMPLE, False),
    ],
)
def test_copies(reply: str, source: str, copied: bool) -> None:
    assert copies(reply, source) is copied


def test_overlap_and_words() -> None:
    assert words("Don't PANIC, it's fine!") == ["dont", "panic", "its", "fine"]
    assert overlap("a b c d e", "a b x d e") == pytest.approx(0.8)
    assert overlap("a b c d e", "a x b x c") == 0.0  # no run of two


@pytest.mark.parametrize(
    ("reply", "passage", "found"),
    [
        (f"Sure. {EXAMPLE_ANSWER} Also rebase.", EXAMPLE_ANSWER, True),
        ("a new string", EXAMPLE_ANSWER, False),  # only part of it
        ("Start by running the tests.", "running the tests", False),  # too short to look for
    ],
)
def test_contains(reply: str, passage: str, found: bool) -> None:
    assert contains(reply, passage) is found


@pytest.mark.parametrize(
    ("reply", "copied"),
    [
        (EXAMPLE_ANSWER, EXAMPLE_ANSWER),
        (f"Git rebase. {EXAMPLE_ANSWER}", EXAMPLE_ANSWER),
        ("Stay silent unless you are asked something.", "Stay silent unless"),
        ("Stay silent unless you are asked something or see something important.", "Stay silent"),
        ("hmm, let me think", "hmm let me think"),
        ("the user typed to you", "the time in seconds"),
        ("Rebase replays your commits onto the new base, so their hashes change.", None),
        ("Use git stash to save your changes, then git stash pop.", None),
    ],
)
def test_prompt_copies(reply: str, copied: str | None) -> None:
    prompt = PromptText.parse(load_prompt())
    found = prompt.copied_by(reply)
    if copied is None:
        assert found is None
    else:
        assert found is not None and found.startswith(copied)


@pytest.mark.parametrize(
    ("reply", "source", "opens"),
    [
        ("Mr. Quilter is the apostle", "Mr. Quilter is the apostle of the middle classes.", True),
        ("Mr Quilter is the", "Mr. Quilter is the apostle of the middle classes.", False),
        ("The apostle of the middle classes", "Mr. Quilter is the apostle of the middle", False),
        ("7 of clubs is a card", "7 of clubs", False),  # a short source: the full check
        ("Git rebase onto main replays your commits", "git rebase onto main, why?", False),
        ("How do I see which files", "how do I see which files I changed", True),
    ],
)
def test_opens_with(reply: str, source: str, opens: bool) -> None:
    assert opens_with(reply, source) is opens


def test_the_prompt_is_opened_by_its_example_answer_only() -> None:
    prompt = PromptText.parse(load_prompt())
    assert prompt.opened_by("It returns a new string") == EXAMPLE_ANSWER
    assert prompt.opened_by("It returns a list of the") is None
    assert prompt.opened_by("Stay silent unless you are") is not None  # an instruction


def test_prompt_text_has_no_chat_markup() -> None:
    prompt = PromptText.parse(load_prompt())
    assert EXAMPLE_ANSWER in prompt.quoted
    assert not any("<|" in s or "im_start" in s for s in (*prompt.sentences, *prompt.quoted))


# --- the questions file ------------------------------------------------------------------

GOOD = '{"question": "what does git stash do", "facts": [["save", "shelve"], ["changes"]]}'


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"facts": [["a"]]}', "'question' must be a non-empty string"),
        ('{"question": 3, "facts": [["a"]]}', "'question' must be a non-empty string"),
        ('{"question": "  ", "facts": [["a"]]}', "'question' must be a non-empty string"),
        ('{"question": "q"}', "'facts' must be a non-empty list"),
        ('{"question": "q", "facts": []}', "'facts' must be a non-empty list"),
        ('{"question": "q", "facts": "rebase"}', "'facts' must be a non-empty list"),
        ('{"question": "q", "facts": [[]]}', "fact 1 must be"),
        ('{"question": "q", "facts": [["a"], "b"]}', "fact 2 must be"),
        ('{"question": "q", "facts": [["a", 3]]}', "fact 1 must be"),
        ('{"question": "q", "facts": [["::"]]}', "fact 1 must be"),  # no word to match
        ('{"question": "q", "facts": [[["a"]]]}', "fact 1 must be"),
        ("[" * 5000 + "]" * 5000, "nested too deeply"),
        ('{"question": "' + "x" * 20_000 + '", "facts": [["x"]]}', "longer than"),
    ],
)
def test_malformed_lines_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text(f"{GOOD}\n\n{line}\n{GOOD}\n", encoding="utf-8")
    with pytest.raises(QuestionsError) as err:
        load_questions(path)
    assert f"{path}:3:" in str(err.value)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_questions_file_problems(tmp_path: Path) -> None:
    with pytest.raises(QuestionsError, match="not found"):
        load_questions(tmp_path / "missing.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(QuestionsError, match="no questions"):
        load_questions(empty)
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\xff\xfe\x00garbage\n")
    with pytest.raises(QuestionsError, match="not UTF-8"):
        load_questions(binary)


def test_questions_limit_and_normalising(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    line = '{"question": "what  does\\tgit stash do", "facts": [["Save"]], "topic": "git"}'
    path.write_text("\n".join([line] * 5), encoding="utf-8")
    qs = load_questions(path, limit=2)
    assert len(qs) == 2
    assert qs[0].question == "what does git stash do"
    assert qs[0].facts == (("save",),)  # keywords are matched in lower case; extra keys pass


def test_the_public_set_is_fair() -> None:
    qs = load_questions(REPO / "docs" / "replies" / "questions.jsonl")
    assert len(qs) >= 40
    assert all(1 <= len(q.facts) <= 3 for q in qs)
    # no fact is given away by the question itself: parroting the user must not score
    assert not [q.question for q in qs if facts_found(q.question, q.facts)]
    assert len({q.question for q in qs}) == len(qs)


# --- the command, end to end with a fake model -------------------------------------------


class SilentVoice:
    """A deterministic stand-in for the piper voice: 0.25 s of silence per word."""

    def synthesize(self, text: str) -> np.ndarray:
        return np.zeros(4000 * max(1, len(text.split())), dtype=np.float32)

    def synthesis_s(self, seconds_of_audio: float) -> float:
        return 0.05

    def close(self) -> None:
        pass


def fake_model(monkeypatch: pytest.MonkeyPatch, reply: str) -> None:
    import engine.model.load
    import engine.voice.synthesis

    monkeypatch.setattr(
        engine.model.load, "make_session", lambda cfg: ModelSession(FakeBackend(reply=reply))
    )
    monkeypatch.setattr(engine.voice.synthesis, "default_synthesizer", lambda **kw: SilentVoice())


def two_questions(tmp_path: Path) -> Path:
    path = tmp_path / "q.jsonl"
    rows = [
        {"question": "why would git rebase mess up my branch", "facts": [["replay"], ["commit"]]},
        {"question": "what does git stash do", "facts": [["save", "shelve"], ["changes"]]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_the_reply_is_every_clause_of_the_first_utterance() -> None:
    events = [
        DecisionEvent(1.2, "speak", "typed_request"),
        SpeechStart(1.4, "Rebase replays each commit,"),
        SpeechStart(2.9, "one by one, on the new base.", continues=True),
        SpeechStop(4.5, "done"),
        SpeechStart(9.0, "The tests passed."),  # task news later: another utterance
        SpeechStart(10.0, "All of them.", continues=True),
    ]
    asked = first_reply(events, 1.0)
    assert asked.reply == "Rebase replays each commit, one by one, on the new base."
    assert asked.first_audio_s == 0.4 and asked.decision == "speak"
    assert facts_found(asked.reply, [["replay"], ["new base"]]) == 2


def test_command_end_to_end_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_model(monkeypatch, "Rebase replays each commit on the new base.")
    assert cli.main(["eval", "replies", str(two_questions(tmp_path)), "--json"]) == 0
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert {"model", "fact_coverage", "copy_rate", "replies"} <= out.keys()
    assert out["model"] == "fake" and out["mode"] == "replay" and out["input"] == "typed"
    assert out["provenance"]["mode"] == "replay"
    first, second = out["replies"]
    assert set(first) >= {
        "question",
        "reply",
        "facts_found",
        "facts_total",
        "copies_prompt",
        "copies_user",
        "first_audio_s",
    }
    assert first["reply"] == "Rebase replays each commit on the new base."
    assert (first["facts_found"], first["facts_total"]) == (2, 2)
    assert (second["facts_found"], second["facts_total"]) == (0, 2)
    assert out["fact_coverage"] == 0.5
    assert out["copy_rate"] == 0.0
    assert not first["copies_prompt"] and not first["copies_user"]
    # typed at 1.0 s; spoken within the window, after the modelled synthesis time
    assert 0.0 < first["first_audio_s"] < 8.0


def test_a_model_that_only_copies_the_prompt_is_never_heard_saying_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The engine's copy guard tries another opening, then drops it: nothing copied is spoken.
    fake_model(monkeypatch, EXAMPLE_ANSWER)
    assert cli.main(["eval", "replies", str(two_questions(tmp_path)), "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert "copy rate 0.0%" in out and "answered 0/1" in out


def test_a_model_that_reads_the_user_back_is_never_heard_saying_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_model(monkeypatch, "Why would git rebase mess up my branch?")
    assert (
        cli.main(["eval", "replies", str(two_questions(tmp_path)), "--json", "--limit", "1"]) == 0
    )
    (row,) = json.loads(capsys.readouterr().out)["replies"]
    assert row["reply"] == "" and not row["copies_user"]


def test_command_malformed_file_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import engine.model.load

    def no_model(cfg: object) -> ModelSession:
        raise AssertionError("the model must not load for a malformed file")

    monkeypatch.setattr(engine.model.load, "make_session", no_model)
    path = tmp_path / "q.jsonl"
    path.write_text(f'{GOOD}\n{{"question": "q", "facts": [[]]}}\n', encoding="utf-8")
    assert cli.main(["eval", "replies", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{path}:2:" in err and err.startswith("tandem: error:")
    assert cli.main(["eval", "replies", str(path), "--limit", "0"]) == 2


def test_command_malformed_file_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text("[" * 100_000 + "\n", encoding="utf-8")  # deep and huge at once
    proc = subprocess.run(
        [sys.executable, "-m", "app", "eval", "replies", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    assert f"{path}:1:" in proc.stderr


def test_spoken_questions_are_said_heard_and_answered() -> None:
    from engine.eval.replay import Ears
    from engine.eval.replies import Question, Spoken, eval_replies
    from engine.model.worker import ModelWorker
    from engine.voice.playback import VoicedSpeech
    from engine.voice.synthesis import PiperSynthesizer

    voice = PiperSynthesizer(deterministic=True)  # the voice --spoken uses
    worker = ModelWorker()
    try:
        worker.start(
            lambda: ModelSession(FakeBackend(rules={"user": "speak"}, reply="Use git stash."))
        )
        q = Question("what does git stash do", (("save", "shelve"), ("stash",)))
        out = eval_replies(
            [q], worker, lambda: VoicedSpeech(voice), spoken=Spoken(voice, Ears.load())
        )
    finally:
        worker.close()
        voice.close()
    (row,) = out["replies"]
    assert out["input"] == "spoken" and out["mode"] == "replay"
    assert "stash" in row["heard"].lower()
    assert row["reply"] == "Use git stash." and row["facts_found"] == 1
    # counted from the end of the spoken question: the end-point's wait, then synthesis
    assert 0.0 < row["first_audio_s"] < 3.0
