"""The espeak-ng child program: phonemes for piper, and the fallback voice's audio.

espeak-ng is GPL-3.0, so Tandem never loads it in its own process: ``engine.voice.synthesis``
runs this file as a separate program (``python -I espeak_child.py LIBRARY DATA_DIR``) and
talks to it in JSON lines over stdin/stdout. It uses the standard library and ctypes only,
and is started once and kept (a start costs about 100 ms, too much per sentence).

Requests and answers, one JSON object per line:

- ``{"op": "phonemes", "text": ..., "voice": "en-us"}`` ->
  ``{"sentences": [the IPA of each sentence, ...]}``
- ``{"op": "synth", "text": ..., "voice": "en-us", "wpm": 170}`` ->
  ``{"sample_rate": 22050, "pcm": base64 of int16 little-endian samples}``
- anything that fails -> ``{"error": "..."}`` (never the text itself)

The first line it writes is ``{"ready": true, "sample_rate": ...}`` or ``{"error": ...}``.
"""

from __future__ import annotations

import base64
import ctypes
import json
import os
import re
import sys
from typing import Any, BinaryIO

AUDIO_OUTPUT_SYNCHRONOUS = 2
INITIALIZE_DONT_EXIT = 0x8000  # return an error instead of exit() when the data is missing
CHARS_UTF8 = 1
ENDPAUSE = 0x1000
POS_CHARACTER = 1
PHONEMES_IPA = 0x02
PARAM_RATE = 1

SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)

# The library's espeak_TextToPhonemes drops the clause's punctuation (piper-phonemize uses a
# patched espeak that reports it), so clauses are cut here, where espeak would cut them: at a
# mark followed by a space or the end. The mark is put back the way piper-phonemize does.
_CLAUSE = re.compile(r"([.,;:!?]+)(?=\s|$)")
_MARKS = {".": ".", "!": "!", "?": "?", ",": ", ", ":": ": ", ";": "; "}
_SENTENCE_END = frozenset(".!?")
_LANGUAGE_SWITCH = re.compile(r"\([a-z]{2,3}(?:-[a-z0-9]+)?\)")  # "(fr)" around foreign words


def clean(text: str) -> bytes:
    """UTF-8 for C: no NUL (it would end the string), lone surrogates replaced."""
    return text.replace("\x00", " ").encode("utf-8", "replace")


class Espeak:
    """libespeak-ng through ctypes, in synchronous mode (one request at a time)."""

    def __init__(self, library: str, data: str) -> None:
        lib = ctypes.CDLL(library)
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_TextToPhonemes.argtypes = [
            ctypes.POINTER(ctypes.c_void_p),
            ctypes.c_int,
            ctypes.c_int,
        ]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        lib.espeak_SetSynthCallback.argtypes = [SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        self.sample_rate = lib.espeak_Initialize(
            AUDIO_OUTPUT_SYNCHRONOUS, 0, data.encode(), INITIALIZE_DONT_EXIT
        )
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak-ng did not start with the data in {data}")
        self._lib = lib
        self._pcm: list[bytes] = []
        self._callback = SynthCallback(self._collect)  # kept: the library holds the pointer
        lib.espeak_SetSynthCallback(self._callback)
        self._voice = ""

    def _use(self, voice: str) -> None:
        if voice != self._voice:
            if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ValueError(f"espeak-ng has no voice {voice!r}")
            self._voice = voice

    def _clause(self, text: str) -> str:
        """IPA for text without clause marks (espeak may still split a long one)."""
        buf = ctypes.create_string_buffer(clean(text))
        ptr = ctypes.c_void_p(ctypes.addressof(buf))
        parts = []
        while ptr.value:
            out = self._lib.espeak_TextToPhonemes(ctypes.byref(ptr), CHARS_UTF8, PHONEMES_IPA)
            if out:
                parts.append(out.decode("utf-8", "replace").strip())
        return _LANGUAGE_SWITCH.sub("", " ".join(p for p in parts if p))

    def phonemes(self, text: str, voice: str) -> list[str]:
        """IPA per sentence, with the clause marks piper was trained on."""
        self._use(voice)
        sentences, current = [], ""
        pieces = _CLAUSE.split(text)  # text, marks, text, marks, ..., text
        for i in range(0, len(pieces), 2):
            marks = pieces[i + 1] if i + 1 < len(pieces) else ""
            if pieces[i].strip():
                current += self._clause(pieces[i])
            if marks:
                current += _MARKS[marks[-1]]
            if current.strip() and (not marks or marks[-1] in _SENTENCE_END):
                sentences.append(current.strip())
                current = ""
        return sentences

    def _collect(self, wav: Any, n: int, events: Any) -> int:
        if n > 0 and wav:
            self._pcm.append(ctypes.string_at(wav, n * 2))
        return 0  # 0: go on

    def synth(self, text: str, voice: str, wpm: int) -> bytes:
        """16-bit PCM at ``sample_rate``: the fallback voice."""
        self._use(voice)
        self._lib.espeak_SetParameter(PARAM_RATE, wpm, 0)
        self._pcm = []
        if text.strip():
            data = clean(text)
            status = self._lib.espeak_Synth(
                data, len(data) + 1, 0, POS_CHARACTER, 0, CHARS_UTF8 | ENDPAUSE, None, None
            )
            if status != 0:
                raise RuntimeError(f"espeak_Synth failed with status {status}")
        return b"".join(self._pcm)


def answer(espeak: Espeak, request: dict[str, Any]) -> dict[str, Any]:
    """One request's answer."""
    op, text, voice = request["op"], str(request["text"]), str(request.get("voice", "en-us"))
    if op == "phonemes":
        return {"sentences": espeak.phonemes(text, voice)}
    if op == "synth":
        pcm = espeak.synth(text, voice, int(request.get("wpm", 170)))
        return {"sample_rate": espeak.sample_rate, "pcm": base64.b64encode(pcm).decode()}
    raise ValueError(f"unknown op {op!r}")


def main(argv: list[str]) -> int:
    """Serve requests until stdin closes."""
    # Answers go to a private copy of stdout; the library's own prints go to stderr, so
    # nothing it writes can break the protocol.
    out: BinaryIO = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)

    def reply(obj: dict[str, Any]) -> None:
        out.write(json.dumps(obj).encode() + b"\n")
        out.flush()

    try:
        espeak = Espeak(argv[1], argv[2])
    except (IndexError, OSError, RuntimeError, AttributeError) as e:
        reply({"error": f"cannot load espeak-ng: {e}"})
        return 1
    reply({"ready": True, "sample_rate": espeak.sample_rate})
    for line in sys.stdin.buffer:
        try:
            reply(answer(espeak, json.loads(line)))
        except KeyError as e:
            reply({"error": f"bad request: no {e}"})
        except (ValueError, TypeError, RuntimeError) as e:
            reply({"error": f"{type(e).__name__}: {e}"})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
