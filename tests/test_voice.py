"""Speech synthesis and the assistant's audio track; child processes that misbehave."""

from __future__ import annotations

import numpy as np
import pytest

from engine import audio
from engine.processes import ProcessError, run
from engine.voice import EspeakSynthesizer, VoicedSpeech, sentences


def test_replies_are_split_into_sentences() -> None:
    assert sentences("Sure. Let me look!  Then we run it? ok") == [
        "Sure.",
        "Let me look!",
        "Then we run it?",
        "ok",
    ]
    assert sentences("   ") == []


def test_espeak_speaks_and_text_is_never_an_option() -> None:
    synth = EspeakSynthesizer()
    x = synth.synthesize("--help")  # read aloud, not taken as a command-line option
    assert len(x) > audio.RATE * 0.2 and np.abs(x).max() > 0.05


def test_an_interrupted_utterance_is_cut_in_the_track() -> None:
    speech = VoicedSpeech(EspeakSynthesizer())
    handle = speech.say("One two three four five six seven eight nine ten.", 1.0)
    full = handle.end_t - handle.start_t
    assert full > 1.5
    handle.interrupt(1.5)
    track = speech.render(6.0)
    loud = np.nonzero(np.abs(track) > 0.01)[0] / audio.RATE
    assert loud[0] >= 1.0 and loud[-1] <= 1.5 + 1e-3


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["no-such-program-xyz"], "is not installed"),
        (["sh", "-c", "echo bad >&2; exit 3"], "failed with status 3: bad"),
        (["sleep", "5"], "ran past"),
    ],
)
def test_child_processes_fail_clearly(argv: list[str], message: str) -> None:
    with pytest.raises(ProcessError, match=message):
        run(argv, timeout_s=0.5)


def test_the_echo_gate_takes_the_echo_but_not_the_user() -> None:
    from engine.features.echo import EchoGate

    ref = EspeakSynthesizer().synthesize("Let me walk you through the parser step by step.")
    user = EspeakSynthesizer(voice="en-gb+f3").synthesize("Wait, stop, that is wrong.")
    delay = int(0.12 * audio.RATE)
    mic = np.zeros(len(ref) + delay, dtype=np.float32)
    mic[delay:] += 0.5 * ref  # the room sends the assistant's voice back, 120 ms late
    near = np.zeros_like(mic)  # the user's own voice, starting 0.5 s in
    near[8000 : 8000 + len(user)] = user[: len(mic) - 8000]

    def flagged(m: np.ndarray, loud: np.ndarray) -> float:
        gate, out = EchoGate(), []
        for i in range(0, len(m) - 512, 512):
            gate.feed_reference(
                ref[i : i + 512] if i + 512 <= len(ref) else np.zeros(512, np.float32)
            )
            if np.abs(loud[i : i + 512]).max() > 0.1:
                out.append(gate.is_echo(m[i : i + 512]))
        return float(np.mean(out))

    assert flagged(mic, mic) > 0.95  # the echo alone is taken for echo
    assert flagged(mic + near, near) < 0.5  # where the user talks over it, mostly not (0.43)
