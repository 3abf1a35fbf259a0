"""Every tuning constant of the engine, named in one place with where its value came from.

The constants stay in the modules that read them; this table names each one (``module`` and
``attr``) and says in one line where its value came from. The first word of a source says
what kind of source it is:

- ``measured``: measured on the 2-core development machine (the JSON under
  ``docs/measurements/`` or the command named);
- ``format``: fixed by a model or a file format (Silero's window, Whisper's 16 kHz);
- ``convention``: a usual value elsewhere (speaking rate, dBFS floors);
- ``derived``: computed from other entries;
- ``chosen``: a judgement, not measured (the commit that set it, where it helps).

``tests/test_config.py`` fails when a module in ``TUNED_MODULES`` defines a module-level
UPPER_CASE int or float that is not listed here, or when an entry no longer resolves; so no
constant is added or renamed silently. The user's own knobs are not here: they are the
configuration (``engine.config``; its ``turn_taking`` section is ``PolicyConfig``, whose
defaults are listed below all the same). ``tandem config show --tuning`` prints the table.

Values are looked up lazily (``Tuned.value``): the table imports none of the modules it lists
(so the core does not depend on hearing, voice or the devices, and no native library loads).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from dataclasses import dataclass

KINDS = ("measured", "format", "convention", "derived", "chosen")

TUNED_MODULES = (
    "engine.core.frames",
    "engine.core.engine",
    "engine.core.policy",
    "engine.core.microturn",
    "engine.core.proactivity",
    "engine.seeing.regions",
    "engine.seeing.ocr",
    "engine.seeing.reader",
    "engine.seeing.redact",
    "engine.seeing.cues",
    "engine.seeing.state",
    "engine.seeing.vision",
    "engine.senses.screen",
    "engine.hearing.bargein",
    "engine.hearing.endpoint",
    "engine.hearing.pipeline",
    "engine.hearing.asr",
    "engine.hearing.listener",
    "engine.hearing.vad",
    "engine.hearing.echo",
    "engine.senses.sound",
    "engine.voice.handles",
    "engine.voice.synthesis",
    "engine.voice.playback",
    "engine.voice.piper",
    "engine.model.load",
    "engine.model.session",
    "engine.model.llama_backend",
    "engine.model.remote_backend",
    "engine.live",
)
"""The modules whose numeric constants this table must cover."""


@dataclass(frozen=True, slots=True)
class Tuned:
    """One constant: ``module.attr`` (``attr`` may be ``Class.parameter``: its default)."""

    module: str
    attr: str
    source: str

    @property
    def name(self) -> str:
        """``module.attr``."""
        return f"{self.module}.{self.attr}"

    def value(self) -> object:
        """The value in force (imports the module)."""
        obj: object = importlib.import_module(self.module)
        head, _, param = self.attr.partition(".")
        obj = getattr(obj, head)
        if not param:
            return obj
        if dataclasses.is_dataclass(obj):
            for f in dataclasses.fields(obj):
                if f.name == param:
                    return f.default
            raise AttributeError(f"{self.name}: no such field")
        if not callable(obj):
            raise AttributeError(f"{self.name}: {head} is not a class")
        default = inspect.signature(obj).parameters[param].default
        if default is inspect.Parameter.empty:
            raise AttributeError(f"{self.name}: no default")
        return default


def _t(module: str, attr: str, source: str) -> Tuned:
    return Tuned(f"engine.{module}", attr, source)


TUNING: tuple[Tuned, ...] = (
    # --- the screen -----------------------------------------------------------------------
    _t(
        "core.microturn",
        "SCREEN_CHARS",
        "chosen: a screen change or cue is a few words in the session (~25 tokens at most)",
    ),
    _t("senses.screen", "DEFAULT_FPS", "chosen: the screen issue's default rate"),
    _t(
        "senses.screen",
        "IDLE_INTERVAL_S",
        "measured 2026-12-02 (tandem bench capture): a still 1080p screen costs 0.7 % of a core"
        " at one grab a second",
    ),
    _t("senses.screen", "IDLE_GROWTH", "chosen: 5 -> 1 frame/s in four unchanged frames"),
    _t(
        "seeing.regions",
        "TILE",
        "measured (design notes): a 1080p uint32 diff 1.3 ms; 32 px is about two terminal lines",
    ),
    _t("seeing.regions", "MERGE_GAP_TILES", "chosen: a line with spaces in it is one region"),
    _t("seeing.regions", "MAX_REGIONS", "chosen: more regions read as one box (a repaint)"),
    _t("seeing.ocr", "TESSERACT_TIMEOUT_S", "chosen: far above 0.3-0.8 s per region measured"),
    _t("seeing.ocr", "MIN_CONFIDENCE", "chosen: tesseract's words under 30 are borders, icons"),
    _t(
        "seeing.ocr",
        "SMALL_TEXT_PX",
        "chosen: small regions read at 2x (tesseract wants ~20 px capitals)",
    ),
    _t("seeing.reader", "MAX_READ_REGIONS", "chosen: bounds one job's OCR time (~4 x 0.3 s)"),
    _t("seeing.reader", "MIN_REGION_PX", "chosen: below a line of text"),
    _t("seeing.reader", "LAST_LINE_CHARS", "chosen: a screen change costs ~20 tokens"),
    _t(
        "seeing.reader",
        "OCR_DUTY",
        "measured 2026-12-02 (tandem bench capture): a scrolling terminal cost 84 % of a core"
        " unthrottled, 33 % with half the OCR thread's time",
    ),
    _t("seeing.redact", "ENTROPY_BITS", "chosen: random base62 is ~5.9 bits/char, English ~4"),
    _t("seeing.cues", "MAX_SUMMARY", "chosen: a cue is a few words"),
    _t("seeing.state", "MAX_LINES", "chosen: a few windows of terminal text"),
    _t("seeing.vision", "VISION_TIMEOUT_S", "chosen: a remote vision model on a slow link"),
    _t("seeing.vision", "MAX_ANSWER_TOKENS", "chosen: an answer of a few sentences"),
    _t("seeing.vision", "MAX_IMAGE_EDGE", "chosen: under common servers' image caps"),
    _t(
        "core.engine",
        "LOOK_CHARS",
        "chosen: a question about the screen brings ~75 tokens of its newest text",
    ),
    _t("core.proactivity", "RATE_WINDOW_S", "chosen: the issue's rate limit counts per 10 min"),
    _t("core.proactivity", "ProactivityConfig.min_gap_s", "chosen: not measured"),
    _t(
        "core.proactivity",
        "ProactivityConfig.stale_s",
        "chosen: a cue older than this has scrolled on (the target is a remark within 3 s)",
    ),
    _t("core.proactivity", "ProactivityConfig.snooze_s", 'chosen: "not now" holds 10 minutes'),
    _t(
        "core.proactivity",
        "ProactivityConfig.max_per_10_min",
        "chosen: the configuration's default",
    ),
    _t(
        "core.proactivity",
        "ProactivityConfig.pause_s",
        "measured 2026-12-02 (tandem eval screen, speaking_failure): a remark 0.1 s after the"
        " VAD's speech end fell into a breath mid-sentence; 1.5 s is the end-of-turn's longest",
    ),
    _t("core.proactivity", "ProactivityConfig.asked_stale_s", "chosen: a reminder keeps a minute"),
    # --- the clock and the engine ----------------------------------------------------------
    _t(
        "core.frames",
        "TICK_S",
        "chosen: the design card's 200 ms micro-turn; append+decide takes 100-160 ms in it"
        " (measured: tandem bench session, bench-session-2026-11-25-cpu2.json)",
    ),
    _t(
        "core.engine",
        "LIVE_BUDGET",
        "chosen: 0.18 s of model time per live tick of 0.2 s (append first, then reply tokens;"
        " a token is not started when it would end past it), 20 ms left for the loop;"
        " 64 tokens caps a slice",
    ),
    _t(
        "core.engine",
        "MIN_CLAUSE_WORDS",
        "chosen: a reply is spoken clause by clause as it is decoded; a comma clause of one"
        ' or two words ("Yes, ...") is not worth its own synthesis',
    ),
    _t(
        "core.engine",
        "TASK_NEWS_QUIET_S",
        "chosen: a task result waits for a second of quiet (longer than a breath, VAD"
        " min_silence_s 0.25 s) so it never lands in the middle of a sentence",
    ),
    _t(
        "core.engine",
        "HANDOFF_SCREEN_CHARS",
        "chosen: the end of the screen text (~1,000 tokens) fits the agent's first request",
    ),
    _t(
        "core.engine",
        "MIN_SLICE_S",
        "chosen: a reply slice gets at least 30 ms even when the append used the tick's budget",
    ),
    _t(
        "core.engine",
        "DATA_CAPACITY",
        "chosen: data-lane bound (drop oldest), far above one tick's frames; not measured",
    ),
    _t(
        "core.engine",
        "USER_COPY_SHARE",
        "measured 2026-12-02 (tandem eval replies, 46 questions): a 78 % read-back of the"
        " question passed 0.8; 0.75 catches it",
    ),
    _t(
        "model.session",
        "WARM_REPLY_TOKENS",
        "chosen: enough reply tokens at start-up to time the decoder, cheap on any machine",
    ),
    _t(
        "hearing.endpoint",
        "BROKEN_OFF",
        "chosen: completeness gives 0.1-0.2 to words that cannot end a sentence, 0.9 to"
        " whatever Whisper closed with a period",
    ),
    _t(
        "hearing.endpoint",
        "HEARD_CLEARLY",
        "measured: Whisper tiny.en's confidence on the user speech of tandem eval build-duplex"
        " (2026-12-02): English 0.59-0.93, five other languages 0.25-0.45",
    ),
    _t("hearing.endpoint", "WORDS_WEIGHT", "chosen with PROSODY_SURE (see there)"),
    _t("hearing.endpoint", "PROSODY_WEIGHT", "chosen with PROSODY_SURE (see there)"),
    _t(
        "hearing.endpoint",
        "LM_WEIGHT",
        "chosen with LM_SURE: half weight, and it may only lower the fused score (replay,"
        " 21 pauses: a symmetric mean took 6 against 5 without the model)",
    ),
    _t(
        "hearing.endpoint",
        "LM_UNSURE",
        "measured 2026-12-02 (Qwen 0.5B, build-duplex): English content-word pauses median 0.02",
    ),
    _t(
        "hearing.endpoint",
        "LM_SURE",
        "measured 2026-12-02: finished turns 0.16-0.69 (AUC 0.79-0.80 against pauses); just"
        " under their lowest, so that only words unlikely to end hold the turn",
    ),
    _t(
        "hearing.endpoint",
        "PROSODY_UNSURE",
        "measured 2026-12-02 on build-duplex scenarios: mid-sentence cuts scored 0.82-0.99",
    ),
    _t(
        "hearing.endpoint",
        "PROSODY_SURE",
        "measured 2026-12-02: finished turns scored 0.97-0.99; replay pause takeovers 12 -> 5"
        " of 21 (tandem eval duplex)",
    ),
    _t(
        "core.microturn",
        "MAX_ITEM_CHARS",
        "chosen: a pasted file must not blow the 200 ms append budget",
    ),
    # --- turn-taking policy (defaults of the user's turn_taking settings) -------------------
    _t(
        "core.policy",
        "HOLD_S",
        "derived: the 1 s thinking pauses of build-duplex plus the VAD's 0.1-0.2 s to hear the"
        " voice again; live with the 10 s Whisper window the graded wait took 4 of 21 pauses",
    ),
    _t(
        "core.policy",
        "PolicyConfig.eagerness",
        "chosen: the middle; end-point 0.8 - 0.6 x eagerness s (0.5 s); a turn is surely finished"
        " at 0.9 - 0.2 x eagerness fused (0.8: between the pauses' 0.0-0.75 and the turn"
        " ends' 0.83-0.97, replay 2026-12-04)",
    ),
    _t(
        "core.policy",
        "PolicyConfig.max_wait_s",
        "chosen: the 1.5 s silence cap of the previous engine (commit f92c6e7), now the wait"
        " after words that broke off",
    ),
    _t("core.policy", "PolicyConfig.interject_threshold", "chosen: not measured yet"),
    _t(
        "core.policy",
        "PolicyConfig.interject_cooldown_s",
        "chosen: at most one unasked remark per 30 s; not measured yet",
    ),
    _t("core.policy", "PolicyConfig.backchannel_threshold", "chosen: not measured yet"),
    _t(
        "core.policy",
        "PolicyConfig.backchannel_gap_s",
        "chosen: no more than one mm-hmm per 4 s; not measured yet",
    ),
    _t(
        "core.policy",
        "PolicyConfig.model_stop_threshold",
        "chosen: the model stops its own reply only when it is sure; not measured yet",
    ),
    # --- barge-in --------------------------------------------------------------------------
    _t(
        "hearing.bargein",
        "BACKCHANNEL_MAX_S",
        "chosen (commit 5880c68): a backchannel is short; checked by tandem eval duplex"
        " (7 real AMI backchannels, eval-duplex-2026-11-25-cpu2.json)",
    ),
    _t(
        "hearing.bargein",
        "ONSET_GIVE_UP_S",
        "chosen: a safety net; an unconfirmed onset resumes when hearing says it faded",
    ),
    _t(
        "hearing.pipeline",
        "ONSET_FADE_S",
        "measured: live (eval duplex --live, interrupt scenarios, 2026-12-02) a 0.5 s timer"
        " resumed over users whose first syllable came before a gap (3 of 8 strict failures),"
        " 0.25 s of quiet did too (4 of 8); the gaps were up to ~0.6 s",
    ),
    _t(
        "hearing.bargein",
        "END_LAG_S",
        "derived: VadStream.min_silence_s (0.25 s), how late the VAD reports a stop; suspected"
        " cause of 3 of 7 live backchannel false stops, not re-measured",
    ),
    _t(
        "hearing.bargein",
        "TRANSCRIPT_WAIT_S",
        "measured: live recognition on the busy 2-core machine took over 1 s (issue 8); 0.6 s"
        " resumed over users who had only paused; a safety net, the final decides",
    ),
    # --- hearing ---------------------------------------------------------------------------
    _t(
        "hearing.pipeline",
        "ASR_BASE_S",
        "measured (2026-12-03): Whisper tiny.en, beam 5, 10 s window, 1-2 threads on the 2-core"
        " CPU: 0.04 s for 0.5 s of audio, 0.07-0.08 s for 4 s, 0.11-0.16 s for 11 s",
    ),
    _t("hearing.pipeline", "ASR_PER_S", "measured: with ASR_BASE_S, the slope of that fit"),
    _t(
        "hearing.asr",
        "WINDOW_S",
        "measured (2026-12-03): 8 English recordings and their first 1.5 s, WER and time per"
        " window (30 s 7.5 %/0.46 s, 10 s 7.5 %/0.12 s, 5 s 15 %: loops)",
    ),
    _t(
        "hearing.asr",
        "SILENCE_AFTER_S",
        "measured (2026-12-03): the utterance and 1 s filled the window for long utterances;"
        " cut to the utterance and 0.5-2 s, short ones loop (WER 55-67 %)",
    ),
    _t(
        "hearing.pipeline",
        "PROSODY_WAIT_S",
        "derived: Smart Turn's modelled 0.1 s (PREDICT_S) and twice that on a busy core; the final"
        " no longer waits for the recogniser's 0.3 s",
    ),
    _t("hearing.asr", "LOOPING", "convention: faster-whisper's compression_ratio_threshold"),
    _t("hearing.asr", "UNSURE", "convention: faster-whisper's log_prob_threshold"),
    _t(
        "hearing.asr",
        "TOKENS_PER_S",
        "convention: English speech is 3-5 Whisper tokens a second; twice that is room",
    ),
    _t(
        "hearing.pipeline",
        "SPECULATE_AFTER_S",
        "chosen (commit a6e02ea): shorter dips are mid-word; recognition then overlaps the"
        " end-point's wait",
    ),
    _t(
        "hearing.pipeline",
        "PARTIAL_EVERY_S",
        "chosen: a partial transcript about once a second, for the panel and barge-in",
    ),
    _t(
        "hearing.pipeline",
        "ONSET_THRESHOLD",
        "measured: first window at 0.5 came 0.06-0.32 s (median 0.26) after the voice began,"
        " at 0.2 0.01-0.28 s (median 0.06), on the 8 interrupt scenarios of tandem eval"
        " build-duplex (2026-12-02); room tone before speech at most 0.11",
    ),
    _t(
        "hearing.pipeline",
        "ONSET_ECHO_MAX",
        "measured (commit 021cbe3): on the device tests' open-speaker echo path; the echo"
        " gate itself stops at 0.75",
    ),
    _t(
        "hearing.pipeline",
        "ONSET_WINDOWS_WITH_ECHO",
        "measured (commit 021cbe3): one unexplained window paused the assistant for its own"
        " echo; two in a row did not",
    ),
    _t(
        "hearing.pipeline",
        "SILENCE_FLOOR",
        "measured (commit 95cdb06): Silero's memory scored digital silence as speech; -60 dBFS",
    ),
    _t(
        "hearing.pipeline",
        "PAD_S",
        "measured (2026-12-03): the VAD confirms a start up to 0.32 s late; streamed WER on the"
        " English evaldata clips 7.7% at 0.1 s and 0.3 s, 6.0% at 0.5 s",
    ),
    _t("hearing.pipeline", "MAX_UTTERANCE_S", "format: Whisper's encoder sees a 30 s window"),
    _t("hearing.pipeline", "RATE", "format: Silero VAD and Whisper take 16 kHz"),
    _t("hearing.vad", "WINDOW", "format: Silero VAD v6 takes 512-sample windows at 16 kHz"),
    _t("hearing.vad", "CONTEXT", "format: Silero VAD v6 carries 64 samples of context"),
    _t("hearing.vad", "RATE", "format: Silero VAD runs at 16 kHz"),
    _t("hearing.vad", "WINDOW_S", "derived: WINDOW / RATE (32 ms)"),
    _t(
        "hearing.vad",
        "VadStream.threshold",
        "convention: Silero's own default speech threshold; VAD F1 0.937 on the TEN test set"
        " (eval-vad-2026-11-25-cpu2.json)",
    ),
    _t("hearing.vad", "VadStream.min_silence_s", "chosen: quiet that ends a VAD segment"),
    _t("hearing.vad", "VadStream.min_speech_s", "chosen: speech that confirms a voice onset"),
    _t(
        "hearing.echo",
        "EchoGate.max_delay_s",
        "measured (commit 95cdb06): the echo delay of the private PulseAudio's open-speaker"
        " path fits in 0.8 s",
    ),
    _t(
        "hearing.echo",
        "EchoGate.threshold",
        "measured (commit 95cdb06): correlation above which a window is the assistant's echo",
    ),
    _t(
        "hearing.echo",
        "REFERENCE_FLOOR",
        "measured (2026-12-03): a near-silent reference gave correlations of 22-139 and hid"
        " the user's words after a barge-in; -60 dBFS, as SILENCE_FLOOR",
    ),
    # --- the hearing thread ----------------------------------------------------------------
    _t(
        "hearing.listener",
        "LEASE_POLL_S",
        "chosen: unmute is heard within 50 ms; asking the gate while muted writes nothing",
    ),
    _t(
        "hearing.listener",
        "RETRY_S",
        "measured: a lost microphone reopens 0.57 s after it is back (tests/test_mic_devices.py,"
        " mic-recovery-2026-11-25-cpu2.json)",
    ),
    _t(
        "hearing.listener",
        "WATCHDOG_S",
        "measured: a frozen sound server is reported lost after 1.0 s"
        " (mic-recovery-2026-11-25-cpu2.json)",
    ),
    _t(
        "hearing.listener",
        "START_GRACE_S",
        "measured (commit 8a6a631): a fresh PulseAudio stream's first block takes up to ~2 s",
    ),
    _t(
        "hearing.listener",
        "REF_LEAD",
        "chosen (commit 95cdb06): the echo reference runs at most two 20 ms blocks ahead",
    ),
    _t("hearing.listener", "POLL_S", "derived: one 20 ms audio block (senses.sound.BLOCK_S)"),
    _t(
        "hearing.listener",
        "LEVEL_S",
        "chosen: level windows of 100 ms; the terminal prints at most 5 lines/s",
    ),
    _t("hearing.listener", "CLIP", "convention: a sample at -0.09 dBFS or above is clipping"),
    _t("hearing.listener", "FLOOR_DBFS", "convention: the floor that stands in for log(0)"),
    # --- devices ---------------------------------------------------------------------------
    _t("senses.sound", "BLOCK_S", "chosen (commit c87cefe): 20 ms PortAudio blocks"),
    _t(
        "senses.sound",
        "OUTPUT_LATENCY_S",
        "measured 2026-12-02 (private PulseAudio, play to monitor): default 0.04 s gave 55-60 ms"
        " with ALSA underruns, 0.06 s 70-80 ms and none, 0.1 s 155-165 ms",
    ),
    _t("senses.sound", "RING_S", "chosen: 5 s of blocks in each ring (drop oldest)"),
    _t(
        "senses.sound",
        "OPEN_TIMEOUT_S",
        "chosen (commit 8a6a631): a device that does not open in 3 s is reported",
    ),
    _t(
        "senses.sound",
        "CLOSE_TIMEOUT_S",
        "chosen (commit 8a6a631): a stalled close is left to finish on its own after 1 s",
    ),
    _t(
        "senses.sound",
        "RESCAN_S",
        "measured: a device back in ALSA's list is heard again after 1.1 s with rescans 2 s"
        " apart (mic-recovery-2026-11-25-cpu2.json)",
    ),
    # --- voice -----------------------------------------------------------------------------
    _t("voice.handles", "WORDS_PER_S", "convention: ~156 words a minute, a calm speaking rate"),
    _t(
        "voice.synthesis",
        "CLAUSE_CHARS",
        "chosen (commit 92f003b): a longer sentence is synthesised clause by clause",
    ),
    _t(
        "voice.synthesis",
        "PIPER_BASE_S",
        "measured: tandem bench tts 2026-11-25, piper with 1 thread: first audio 165-200 ms for"
        " a 2.3 s sentence (bench-tts-2026-11-25-cpu2.json)",
    ),
    _t(
        "voice.synthesis",
        "PIPER_RTF",
        "measured: tandem bench tts 2026-11-25, piper with 1 thread: RTF 0.071-0.080",
    ),
    _t(
        "voice.synthesis",
        "ESPEAK_S",
        "measured: tandem bench tts 2026-11-25, espeak-ng: 7.4 ms to first audio",
    ),
    _t(
        "voice.piper",
        "MAX_PHONEMES",
        "chosen: longer phoneme runs are cut at a word (attention cost grows with the square)",
    ),
    _t(
        "voice.piper",
        "PEAK",
        "chosen: piper normalises each sentence to full scale; headroom for resampling",
    ),
    # --- the model -------------------------------------------------------------------------
    _t(
        "model.load",
        "DEFAULT_N_CTX",
        "measured: tandem bench session, flatness 1.5 at a 2,048 window vs 2.3 at 4,096"
        " (bench-session-2026-11-25-cpu2.json)",
    ),
    _t(
        "model.session",
        "MAX_REPLY_CHARS",
        "chosen: about 60 tokens, a sentence or two; longer work is a handoff",
    ),
    _t("model.session", "RECAP_ITEMS", "chosen: the rolling recap keeps its last three lines"),
    _t(
        "model.session",
        "RECAP_ITEM_CHARS",
        "chosen: ~30 tokens (~150 ms on the CPU), so one recap line is written per quiet tick",
    ),
    _t(
        "model.llama_backend",
        "REPEAT_PENALTY",
        "chosen (commit 8356310): repetition penalty on greedy reply tokens; not measured",
    ),
    _t(
        "model.llama_backend",
        "REPEAT_WINDOW",
        "chosen (commit 8356310): tokens the repetition penalty looks back",
    ),
    _t(
        "model.remote_backend",
        "TOP_LOGPROBS",
        "chosen: enough of the server's top log-probabilities to find each decision label",
    ),
    _t(
        "model.remote_backend",
        "ERROR_BODY_CHARS",
        "chosen: an error line quotes at most 200 characters of the server's answer",
    ),
)
"""The table, grouped by stage."""
