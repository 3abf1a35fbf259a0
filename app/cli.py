"""The ``tandem`` command line.

Every command prints human-readable text by default and one JSON object with ``--json``.
Errors the user can act on (a corrupt model, a dead server, a malformed scenario) print one
clear message and exit with status 1; usage errors exit with 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.errors import EngineError
from engine.model.load import DEFAULT_N_CTX, ModelConfig
from permissions.errors import PermissionsError


def _model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        help="embedded model name or path to a .gguf (default: qwen2.5-coder-0.5b, or"
        " smollm2-135m when its parts are missing)",
    )
    g.add_argument("--sha256", help="expected SHA-256 of --model when it is a path")
    g.add_argument("--n-ctx", type=int, help=f"context window in tokens (default: {DEFAULT_N_CTX})")
    g.add_argument("--threads", type=int, help="llama.cpp threads (default: chosen for the load)")
    g.add_argument("--gpu-layers", type=int, help="layers to offload (default: all if a GPU build)")
    g.add_argument("--server", help="OpenAI-compatible server URL instead of the in-process model")
    g.add_argument("--server-model", help="model name to ask the server for (default: default)")


def _model_config(a: argparse.Namespace) -> ModelConfig:
    return ModelConfig(
        model=a.model,
        sha256=a.sha256,
        n_ctx=DEFAULT_N_CTX if a.n_ctx is None else a.n_ctx,
        n_threads=a.threads,
        n_gpu_layers=a.gpu_layers,
        server_url=a.server,
        server_model=a.server_model or "default",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests)."""
    parser = argparse.ArgumentParser(prog="tandem", description="Tandem pair-programming companion")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log engine events (no content)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="start Tandem live in the terminal")
    _model_args(run)
    run.add_argument("--duration", type=float, help="stop after this many seconds")
    run.add_argument("--mic", action="store_true", help="switch the microphone on for this session")
    run.add_argument(
        "--screen", action="store_true", help="watch the screen this session (screen.enabled)"
    )
    run.add_argument(
        "--mic-device", metavar="NAME_OR_INDEX", help="microphone to use (see `tandem devices`)"
    )
    run.add_argument(
        "--speaker-device", metavar="NAME_OR_INDEX", help="speaker to use (see `tandem devices`)"
    )
    run.add_argument(
        "--levels", action="store_true", help="print the microphone level (at most 5 lines/s)"
    )

    devs = sub.add_parser("devices", help="list the microphones and speakers")
    devs.add_argument("--json", action="store_true")

    rep = sub.add_parser("replay", help="replay a scenario folder on a virtual clock")
    rep.add_argument("scenario", type=Path)
    rep.add_argument("--out", type=Path, required=True, help="timeline.jsonl to write")
    rep.add_argument("--speech-out", type=Path, help="WAV of the assistant's audio on the timeline")
    rep.add_argument("--json", action="store_true")
    _model_args(rep)

    bench = sub.add_parser("bench", help="measure speed and memory")
    bsub = bench.add_subparsers(dest="bench", required=True)
    sess = bsub.add_parser("session", help="persistent-session cost and a long session")
    sess.add_argument("--json", action="store_true")
    sess.add_argument("--hours", type=float, default=2.0, help="simulated hours (default 2)")
    sess.add_argument("--reps", type=int, default=9, help="repetitions per context row")
    _model_args(sess)
    tts = bsub.add_parser("tts", help="voices: load time, first audio, real-time factor")
    tts.add_argument("--json", action="store_true")
    tts.add_argument("--runs", type=int, default=3, help="runs per voice (medians)")
    gate = bsub.add_parser("gate", help="permission decision cost with 10 and 1,000 user rules")
    gate.add_argument("--json", action="store_true")
    gate.add_argument("--requests", type=int, default=4000, help="decisions timed per row")
    cap = bsub.add_parser(
        "capture", help="screen capture + change detection + OCR: CPU share, idle and busy"
    )
    cap.add_argument("--json", action="store_true")
    cap.add_argument("--seconds", type=float, default=10.0, help="seconds per screen state")
    ctl = bsub.add_parser("control", help="control-lane latency live: event handled, voice stop")
    ctl.add_argument("--json", action="store_true")
    ctl.add_argument(
        "--seconds", type=float, default=15.0, help="seconds of events per backend (default 15)"
    )
    ctl.add_argument(
        "--trials", type=int, default=10, help="voice onsets on the speaker per backend"
    )
    ctl.add_argument(
        "--no-onset", action="store_true", help="skip the speaker part (needs PulseAudio)"
    )
    _model_args(ctl)

    ui = bsub.add_parser("ui", help="the desktop window's longest event-loop stall in a live talk")
    ui.add_argument("--json", action="store_true")
    ui.add_argument("--seconds", type=float, default=120.0, help="length of the conversation")
    ui.add_argument(
        "--fake-model", action="store_true", help="the scripted fake model (the UI alone)"
    )

    appp = sub.add_parser("app", help="start the desktop app (window, tray, push-to-mute)")
    appp.add_argument("--minimized", action="store_true", help="start in the tray")
    appp.add_argument(
        "--timeline", type=Path, help="append every timeline event to this JSONL file (opt-in)"
    )

    doc = sub.add_parser("doctor", help="check this machine for Tandem and say how to fix it")
    doc.add_argument("--json", action="store_true")
    doc.add_argument("--no-models", action="store_true", help="skip the SHA-256 model checks")

    perm = sub.add_parser("permissions", help="what the permission gate decides")
    psub = perm.add_subparsers(dest="permissions", required=True)
    exp = psub.add_parser("explain", help="what the gate would decide right now")
    what = exp.add_mutually_exclusive_group(required=True)
    what.add_argument("--tool", help="tool name, e.g. run_command or mcp__github__create_issue")
    what.add_argument("--sense", choices=["microphone", "screen", "camera"])
    exp.add_argument("--args", default="{}", help="the tool's arguments as a JSON object")
    exp.add_argument("--workspace", type=Path, default=Path.cwd(), help="workspace folder")
    exp.add_argument("--app", default="", help="focused application id (e.g. WM_CLASS)")
    exp.add_argument("--title", default="", help="focused window title")
    exp.add_argument("--json", action="store_true")

    audit = sub.add_parser("audit", help="the append-only audit log")
    asub = audit.add_subparsers(dest="audit", required=True)
    tail = asub.add_parser("tail", help="the latest entries")
    tail.add_argument("-n", type=int, default=20)
    tail.add_argument("--json", action="store_true")
    export = asub.add_parser("export", help="every entry as JSON lines")
    export.add_argument("--out", type=Path, help="file to write (default: standard output)")
    verify = asub.add_parser("verify", help="check the hash chain")
    verify.add_argument("--json", action="store_true")

    ev = sub.add_parser("eval", help="measure on recorded data")
    esub = ev.add_subparsers(dest="eval", required=True)
    easr = esub.add_parser("asr", help="word error rate and real-time factor")
    easr.add_argument("dir", type=Path)
    easr.add_argument("--json", action="store_true")
    easr.add_argument(
        "--language", default="en", help="only files in this language ('all': every file)"
    )
    easr.add_argument(
        "--asr-model", type=Path, help="a CTranslate2 Whisper folder (default: tiny.en)"
    )
    easr.add_argument("--threads", type=int, default=2)
    edup = esub.add_parser("duplex", help="turn-taking metrics on replayed scenarios")
    edup.add_argument("root", type=Path)
    edup.add_argument("--json", action="store_true")
    edup.add_argument(
        "--live",
        action="store_true",
        help="play each scenario in real time through a private PulseAudio into `tandem run`",
    )
    edup.add_argument(
        "--limit", type=int, metavar="N", help="only N scenarios, taken in turn from each task"
    )
    edup.add_argument(
        "--also-replay", action="store_true", help="with --live: replay them too, side by side"
    )
    edup.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="with --live: keep each scenario's recording and Tandem's output and log in DIR",
    )
    _model_args(edup)
    ebuild = esub.add_parser("build-duplex", help="make duplex scenarios from real recordings")
    ebuild.add_argument("--from", dest="source", type=Path, required=True, help="evaldata folder")
    ebuild.add_argument("--out", type=Path, required=True)
    escr = esub.add_parser("screen", help="screen cues: recall, false interjections, latency")
    escr.add_argument("root", type=Path)
    escr.add_argument("--json", action="store_true")
    escr.add_argument(
        "--fake-model",
        action="store_true",
        help="the scripted fake model (the remark does not depend on the model)",
    )
    _model_args(escr)
    ebscr = esub.add_parser("build-screen", help="make screen scenarios from real screenshots")
    ebscr.add_argument("--from", dest="source", type=Path, required=True, help="evaldata folder")
    ebscr.add_argument("--out", type=Path, required=True)
    ebscr.add_argument("--speech", type=Path, help="a WAV of real speech (a failure while talking)")
    evad = esub.add_parser("vad", help="frame-level precision, recall, F1 at 10 ms")
    evad.add_argument("dir", type=Path)
    evad.add_argument("--json", action="store_true")
    erep = esub.add_parser("replies", help="coding questions through the engine: facts, copies")
    erep.add_argument("questions", type=Path, help="QUESTIONS.jsonl (see docs/EVAL_FORMATS.md)")
    erep.add_argument("--json", action="store_true")
    erep.add_argument("--limit", type=int, metavar="N", help="only the first N questions")
    erep.add_argument(
        "--spoken", action="store_true", help="say each question with the voice and hear it"
    )
    _model_args(erep)

    eagent = esub.add_parser("agent", help="coding tasks solved by the background agent")
    eagent.add_argument("tasks", type=Path, help="TASKS.jsonl in the polyglot format")
    eagent.add_argument("--json", action="store_true")
    eagent.add_argument("--limit", type=int, metavar="N", help="only the first N tasks")
    where = eagent.add_mutually_exclusive_group()
    where.add_argument("--model", help="agent model: a .gguf path or an embedded model name")
    where.add_argument("--server", help="OpenAI-compatible server URL (key from the keyring)")
    eagent.add_argument("--server-model", default="default", help="model name on --server")
    eagent.add_argument(
        "--tool-mode",
        choices=("json", "native"),
        default="json",
        help="json: one grammar-constrained JSON action per reply; native: the server's tools",
    )
    eagent.add_argument("--threads", type=int, help="llama.cpp threads (default: all cores)")
    eagent.add_argument("--n-ctx", type=int, default=8192, help="context window in tokens")
    eagent.add_argument("--max-steps", type=int, default=20, help="model turns per task")

    und = sub.add_parser("undo", help="restore the workspace to the agent's last checkpoint")
    und.add_argument("--workspace", type=Path, default=Path("."), help="default: this folder")

    sec = sub.add_parser("secrets", help="API keys in the system keyring")
    ssub = sec.add_subparsers(dest="secrets", required=True)
    sset = ssub.add_parser("set", help="store a secret read from standard input")
    sset.add_argument("name", help="e.g. server:http://host:8080 (see --server)")
    sdel = ssub.add_parser("delete", help="delete a secret")
    sdel.add_argument("name")

    conf = sub.add_parser("config", help="the settings (model, devices, voice, turn-taking ...)")
    csub = conf.add_subparsers(dest="config", required=True)
    cshow = csub.add_parser("show", help="the settings in force and where each value came from")
    cshow.add_argument("--json", action="store_true")
    cshow.add_argument(
        "--tuning", action="store_true", help="also the engine's tuning constants and sources"
    )
    cset = csub.add_parser("set", help="write one setting, e.g. turn_taking.eagerness 0.7")
    cset.add_argument("key", help="section.key (see tandem config show)")
    cset.add_argument("value", help="the value; none, null, auto or default for a null")
    csub.add_parser("path", help="where the settings file is")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tandem`` command."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "devices":
            return _devices(args)
        if args.command == "replay":
            return _replay(args)
        if args.command == "permissions":
            return _permissions(args)
        if args.command == "audit":
            return _audit(args)
        if args.command == "secrets":
            return _secrets(args)
        if args.command == "eval":
            return _eval(args)
        if args.command == "undo":
            return _undo(args)
        if args.command == "config":
            return _config(args)
        if args.command == "app":
            return _app(args)
        if args.command == "doctor":
            return _doctor(args)
        if args.command == "bench" and args.bench == "ui":
            return _bench_ui(args)
        return _bench(args)
    except (EngineError, PermissionsError) as e:
        print(f"tandem: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _run(a: argparse.Namespace) -> int:
    from app.terminal import AudioChoice, run_live

    if not a.mic and (a.mic_device or a.speaker_device or a.levels):
        print(
            "tandem: error: --mic-device, --speaker-device and --levels need --mic", file=sys.stderr
        )
        return 2

    from engine import config

    # Precedence per key: these flags > TANDEM_<SECTION>_<KEY> > config.json > defaults.
    loaded = config.load(cli={key: getattr(a, flag) for flag, key in config.FLAG_KEYS.items()})
    bad_flags = loaded.lines(config.Source.CLI)
    if bad_flags:
        print(f"tandem: error: {bad_flags[0]}", file=sys.stderr)
        return 2
    for line in loaded.lines():
        print(f"tandem: warning: {line}", file=sys.stderr)
    cfg = loaded.config

    def out(line: str) -> None:
        print(line, flush=True)

    audio = AudioChoice(
        mic=config.device_choice(cfg.devices.mic),
        speaker=config.device_choice(cfg.devices.speaker),
        levels=a.levels,
    )
    asyncio.run(
        run_live(
            config.model_config(cfg),
            out,
            sys.stdin,
            a.duration,
            listen=a.mic,
            audio=audio,
            policy=config.policy_config(cfg),
            voice=cfg.voice,
            watch=cfg.screen if a.screen or cfg.screen.enabled else None,
            proactive=cfg.proactivity.policy(),
        )
    )
    return 0


def _app(a: argparse.Namespace) -> int:
    import os

    if not any(os.environ.get(v) for v in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")):
        print(
            "tandem: error: no display: the desktop app needs a graphical session"
            " (in a terminal: tandem run --mic)",
            file=sys.stderr,
        )
        return 1
    try:
        from app.desktop.main import run_app
    except ImportError as e:
        print(f"tandem: error: the desktop app needs PySide6 ({e}): make install", file=sys.stderr)
        return 1
    return run_app(minimized=a.minimized, timeline=a.timeline)


def _doctor(a: argparse.Namespace) -> int:
    from app import doctor

    checks = doctor.run_checks(models=not a.no_models)
    result = doctor.report(checks)
    if a.json:
        print(json.dumps(result, indent=2))
    else:
        print("\n".join(doctor.lines(checks)))
    return 0 if result["ok"] else 1


def _bench_ui(a: argparse.Namespace) -> int:
    from app.desktop.bench import run_bench

    result = run_bench(seconds=a.seconds, fake_model=a.fake_model)
    if a.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"longest event-loop stall {result['max_stall_ms']:.1f} ms over"
            f" {result['seconds']:.0f} s ({result['events']} timeline events,"
            f" {result['turns']} turns; p99 {result['p99_stall_ms']:.1f} ms)"
        )
    return 0


def _devices(a: argparse.Namespace) -> int:
    from engine.senses.sound import devices

    found = devices()
    if a.json:
        default_in = next((d.index for d in found if d.default_input), None)
        default_out = next((d.index for d in found if d.default_output), None)
        listing = [d.to_json() for d in found]
        print(
            json.dumps(
                {"devices": listing, "default_input": default_in, "default_output": default_out}
            )
        )
        return 0
    for kind in ("input", "output"):
        rows = [d for d in found if d.channels(kind)]
        print(f"{kind} devices:" + ("" if rows else " none"))
        for d in rows:
            mark = "*" if d.is_default(kind) else " "
            what = f"{d.hostapi}, {d.channels(kind)} ch, {d.rate} Hz"
            print(f"  {mark} {d.index:>3}  {d.name}  ({what})")
    print("* default; choose with: tandem run --mic --mic-device NAME_OR_INDEX")
    return 0


def _replay(a: argparse.Namespace) -> int:
    from engine.core import audio
    from engine.core.events import TimelineEvent
    from engine.eval.replay import hear_scenario, load_scenario, replay, summary, write_timeline
    from engine.model.load import make_session
    from engine.model.worker import ModelWorker
    from engine.voice.playback import VoicedSpeech
    from engine.voice.synthesis import default_synthesizer

    scenario = load_scenario(a.scenario)
    heard = hear_scenario(scenario)
    speech = VoicedSpeech(default_synthesizer(deterministic=True))  # replay is deterministic
    events: list[TimelineEvent] = []
    worker = ModelWorker()
    cfg = _model_config(a)
    try:
        worker.start(lambda: make_session(cfg))
        ticks = asyncio.run(replay(scenario, worker, events.append, heard, speech))
    finally:
        worker.close()
    write_timeline(events, a.out)
    if a.speech_out:  # the assistant's track, as long as the scenario (Full-Duplex-Bench style)
        audio.write_wav(a.speech_out, speech.render(scenario.duration))
    result: dict[str, Any] = {
        "scenario": str(a.scenario),
        "out": str(a.out),
        "duration_s": round(scenario.duration, 3),
        "ticks": ticks,
        "events": summary(events),
    }
    if a.json:
        print(json.dumps(result))
    else:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(result["events"].items()))
        print(f"replayed {scenario.duration:.1f} s ({ticks} ticks) -> {a.out}\n{counts}")
    return 0


def _provenance(mode: Any, a: argparse.Namespace | None = None, **config: Any) -> dict[str, Any]:
    from engine.eval.provenance import provenance

    return provenance(mode, config, cfg=_model_config(a) if a is not None else None)


def _bench(a: argparse.Namespace) -> int:
    if a.bench == "tts":
        return _bench_tts(a)
    if a.bench == "control":
        return _bench_control(a)
    if a.bench == "gate":
        return _bench_gate(a)
    if a.bench == "capture":
        return _bench_capture(a)
    from engine.eval.bench import bench_session

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    result = bench_session(_model_config(a), hours=a.hours, reps=a.reps, progress=progress)
    if a.json:
        prov = _provenance(
            "bench", a, hours=a.hours, reps=a.reps, threads_used=result.get("n_threads")
        )
        print(json.dumps({**result, "provenance": prov}))
        return 0
    print(f"model {result['model']}  n_ctx {result['n_ctx']}  threads {result['n_threads']}")
    print(f"{'context':>8} {'append+decide ms':>17} {'re-prefill ms':>14} {'ratio':>6}")
    for r in result["rows"]:
        ratio = r["reprefill_ms"] / r["append_decide_ms"]
        print(
            f"{r['context']:>8} {r['append_decide_ms']:>17.1f} {r['reprefill_ms']:>14.1f}"
            f" {ratio:>6.1f}"
        )
    print(f"flatness {result['flatness']}")
    for k, v in result["long_session"].items():
        print(f"  {k}: {v}")
    return 0


def _bench_capture(a: argparse.Namespace) -> int:
    from engine.eval.bench_capture import run

    result = run(seconds=a.seconds)
    if a.json:
        print(json.dumps({**result, "provenance": _provenance("bench", seconds=a.seconds)}))
        return 0
    print(f"{result['screen']}, at most {result['rate_fps_max']:g} frames/s (shares of one core)")
    for state in ("idle", "busy"):
        r = result[state]
        print(
            f"{state:<5} total {r['total']:.1%}  (tandem {r['tandem']:.1%}, ocr {r['ocr']:.1%});"
            f" X server {r['x_server']:.1%}; {r['grabs_per_s']:g} grabs/s,"
            f" {r['changed_per_s']:g} read/s, {r['ocr_jobs_dropped']} stale OCR jobs dropped"
        )
    return 0


def _eval_screen(a: argparse.Namespace) -> int:
    import asyncio

    from engine.core.events import to_json
    from engine.eval import screen
    from engine.eval.replay import Ears, hear_scenario, load_scenario, replay
    from engine.model.worker import ModelWorker

    if a.eval == "build-screen":
        made = screen.build_scenarios(a.source, a.out, a.speech)
        print(f"wrote {len(made)} scenarios under {a.out}")
        return 0
    scenarios = screen.find(a.root)
    if not scenarios:
        print(f"tandem: error: no screen_cue scenarios under {a.root}", file=sys.stderr)
        return 2
    ears: list[Ears] = []
    worker = ModelWorker()

    def one(root: Path) -> list[dict[str, Any]]:
        scenario = load_scenario(root)
        if (root / "mic.wav").exists() and not ears:
            ears.append(Ears.load())
        heard = hear_scenario(scenario, ears[0]) if ears else []
        worker.call_sync(lambda s: s.start())
        events: list[Any] = []
        asyncio.run(replay(scenario, worker, events.append, heard))
        return [to_json(e) for e in sorted(events, key=lambda e: e.t)]

    def progress(name: str, row: dict[str, Any]) -> None:
        print(
            f"{name}: {row['recalled']}/{row['cues']} cues, {row['false']} false",
            file=sys.stderr,
            flush=True,
        )

    try:
        if a.fake_model:
            from engine.model.fake_backend import FakeBackend
            from engine.model.session import ModelSession

            worker.start(lambda: ModelSession(FakeBackend(reply="Sure."), "system: Tandem"))
        else:
            from engine.model.load import make_session

            cfg = _model_config(a)
            worker.start(lambda: make_session(cfg))
        result = screen.eval_screen(scenarios, one, progress)
    finally:
        worker.close()
    if a.json:
        prov = _provenance("replay", a, scenarios=len(scenarios), clock="virtual")
        print(json.dumps({**result, "provenance": prov}))
        return 0
    print(
        f"{result['scenarios']} scenarios: recall {result['recall']} of {result['cues']} cues"
        f" (latency median {result['latency_s_median']} s, max {result['latency_s_max']} s,"
        " modelled OCR time);"
        f" false interjections {result['false_interjections']} of"
        f" {result['ordinary_changes']} ordinary changes ({result['false_rate']});"
        f" while the user spoke {result['while_user_speaking']}"
    )
    return 0


def _bench_tts(a: argparse.Namespace) -> int:
    from engine.eval.bench_tts import bench_tts

    result = bench_tts(runs=a.runs)
    if a.json:
        print(json.dumps({**result, "provenance": _provenance("bench", runs=a.runs)}))
        return 0
    print(f"{'voice':<16} {'load ms':>8} {'first audio ms':>15} {'RTF':>7}  (median of {a.runs})")
    for name, r in result["voices"].items():
        print(f"{name:<16} {r['load_ms']:>8.0f} {r['first_audio_ms']:>15.0f} {r['rtf']:>7.3f}")
    return 0


def _bench_gate(a: argparse.Namespace) -> int:
    from permissions.bench import measure_decision_cost

    rows = [measure_decision_cost(n, a.requests) for n in (10, 1000)]
    if a.json:
        print(json.dumps({"rows": rows, "provenance": _provenance("bench", requests=a.requests)}))
    else:
        for r in rows:
            print(
                f"{r['n_rules']:>5} rules: p50 {r['p50_us']:.0f} us, p99 {r['p99_us']:.0f} us,"
                f" mean {r['mean_us']:.0f} us ({r['n_requests']} decisions)"
            )
    return 0


def _bench_control(a: argparse.Namespace) -> int:
    from engine.eval.bench_control import CALL_S, bench_control

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    cfg = _model_config(a)
    result = bench_control(
        cfg, seconds=a.seconds, trials=a.trials, onset=not a.no_onset, progress=progress
    )
    if a.json:
        prov = _provenance(
            "live", a, slow_call_s=CALL_S, seconds=a.seconds, trials=a.trials, clock="real"
        )
        print(json.dumps({**result, "provenance": prov}))
        return 0
    targets = result["targets"]
    print(
        f"targets: event -> handled p99 <= {targets['event_to_handled_p99_ms']} ms, "
        f"voice onset -> speaker silent <= {targets['onset_to_silent_ms']} ms"
    )
    for name in ("slow", "model"):
        r = result[name]
        h = r["event_to_handled"]
        print(
            f"{r['backend']:<16} event -> handled  n {h['n']:>4}  p50 {h['p50_ms']} ms  "
            f"p99 {h['p99_ms']} ms  max {h['max_ms']} ms  (model busy {r['model_busy_share']:.0%})"
        )
        onset = r.get("onset")
        if onset is not None:
            o = onset["onset_to_silent"]
            print(
                f"{'':<16} onset -> silent   n {o['n']:>4}  p50 {o['p50_ms']} ms  "
                f"p99 {o['p99_ms']} ms  max {o['max_ms']} ms"
            )
    if "onset_skipped" in result:
        print(f"voice onset -> speaker silent: skipped ({result['onset_skipped']})")
    return 0


def _permissions(a: argparse.Namespace) -> int:
    from permissions import settings
    from permissions.gate import Gate
    from permissions.model import AppContext, Sense, ToolRequest

    loaded = settings.load()
    if loaded.problem:
        print(f"tandem: warning: {loaded.problem}", file=sys.stderr)
    gate = Gate.from_settings(loaded)
    app = AppContext(a.app, a.title)
    if a.sense:
        verdict = gate.explain_sense(Sense(a.sense), app)
    else:
        try:
            tool_args = json.loads(a.args)
        except json.JSONDecodeError as e:
            print(f"tandem: error: --args is not JSON ({e.msg})", file=sys.stderr)
            return 2
        except RecursionError:
            print("tandem: error: --args is nested too deeply", file=sys.stderr)
            return 2
        verdict = gate.explain_tool(ToolRequest(a.tool, tool_args, a.workspace, app))
    if a.json:
        print(json.dumps(verdict.to_json()))
    else:
        rule = f" (rule {verdict.rule})" if verdict.rule else ""
        print(f"{verdict.decision.value}{rule}: {verdict.reason}")
    return 0


def _eval(a: argparse.Namespace) -> int:
    from engine.eval import asr_vad as evals

    if a.eval in ("duplex", "build-duplex"):
        return _eval_duplex(a)
    if a.eval in ("screen", "build-screen"):
        return _eval_screen(a)
    if a.eval == "replies":
        return _eval_replies(a)
    if a.eval == "agent":
        return _eval_agent(a)
    if a.eval == "asr":
        from engine.hearing.asr import Recognizer

        language = None if a.language == "all" else a.language
        recognizer = Recognizer(a.asr_model, threads=a.threads, language=language)
        result = evals.eval_asr(a.dir, lambda x: recognizer.transcribe(x).text, language)
        if a.json:
            prov = _provenance(
                "replay", asr_model=str(a.asr_model or "tiny.en"), language=a.language
            )
            print(json.dumps({**result, "provenance": prov}))
        else:
            for f in result["files"]:
                print(f"{f['wer']:6.1%}  {f['audio']}")
            print(
                f"WER {result['wer']:.1%}  RTF {result['rtf']:.3f}  ({len(result['files'])} files)"
            )
        return 0
    from engine.hearing.vad import SileroVad, VadStream, segments

    vad = SileroVad()
    result = evals.eval_vad(a.dir, lambda x: segments(vad.scores(x), VadStream()))
    if a.json:
        print(json.dumps({**result, "provenance": _provenance("replay", vad="silero")}))
    else:
        for f in result["files"]:
            print(f"F1 {f['f1']:.3f}  P {f['precision']:.3f}  R {f['recall']:.3f}  {f['audio']}")
        p, r = result["precision"], result["recall"]
        print(f"F1 {result['f1']:.3f}  precision {p:.3f}  recall {r:.3f}")
    return 0


def _undo(a: argparse.Namespace) -> int:
    from background_agent.checkpoints import undo
    from background_agent.errors import AgentError

    try:
        print(undo(a.workspace))
    except AgentError as e:
        print(f"tandem: error: {e}", file=sys.stderr)
        return 1
    return 0


def _eval_agent(a: argparse.Namespace) -> int:
    import multiprocessing

    from background_agent.client import ChatClient
    from background_agent.errors import AgentError
    from background_agent.eval import load_tasks, run_eval
    from background_agent.server import LlamaServer, agent_model
    from engine.model.load import server_api_key

    if a.limit is not None and a.limit < 1:
        print("tandem: error: --limit must be at least 1", file=sys.stderr)
        return 2
    try:
        tasks = load_tasks(a.tasks, a.limit)
    except AgentError as e:
        print(f"tandem: error: {e}", file=sys.stderr)
        return 2

    def progress(i: int, row: dict[str, Any]) -> None:
        mark = "pass" if row["passed"] else "FAIL"
        line = f"{i}/{len(tasks)} {mark} {row['id']} ({row['status']}, {row['steps']} steps)"
        print(line, file=sys.stderr, flush=True)

    server: LlamaServer | None = None
    client: ChatClient | None = None
    threads = a.threads or max(1, multiprocessing.cpu_count())
    try:
        if a.server:
            model = a.server_model
            key = server_api_key(a.server)
            client = ChatClient(
                a.server, model, api_key=key, mode=a.tool_mode, constraint="json_schema"
            )
        else:
            spec = agent_model(a.model)
            model = spec.name
            server = LlamaServer(spec.path, n_threads=threads, n_ctx=a.n_ctx)
            client = ChatClient(server.start(), model, mode=a.tool_mode)
        result = run_eval(tasks, client, max_steps=a.max_steps, progress=progress)
    except AgentError as e:
        print(f"tandem: error: {e}", file=sys.stderr)
        return 1
    finally:
        if client is not None:
            client.close()
        if server is not None:
            server.stop()
    result = {"model": model, "server": a.server or "embedded llama_cpp.server", **result}
    if a.json:
        prov = _provenance(
            "live", None, model=model, threads=threads, n_ctx=a.n_ctx, tool_mode=a.tool_mode,
            max_steps=a.max_steps, tasks=len(tasks), server=result["server"],
        )  # fmt: skip
        print(json.dumps({**result, "provenance": prov}))
        return 0
    for r in result["tasks"]:
        mark = "pass" if r["passed"] else "FAIL"
        print(
            f"{mark}  {r['id']}  {r['steps']} steps, {r['tool_calls']} calls "
            f"({r['tool_calls_audited']} audited), {r['tokens']} tokens, {r['seconds']} s"
        )
    print(f"pass rate {result['pass_rate']:.1%} ({result['passed']}/{len(result['tasks'])})")
    return 0


def _eval_duplex(a: argparse.Namespace) -> int:
    from engine.eval import duplex
    from engine.eval.live_duplex import find_scenarios

    if a.eval == "build-duplex":
        from engine.hearing.asr import Recognizer

        made = duplex.build_scenarios(a.source, a.out, Recognizer(threads=2))
        print(f"wrote {len(made)} scenarios under {a.out}")
        return 0
    if a.live:
        return _eval_duplex_live(a)
    if a.also_replay:
        print("tandem: error: --also-replay goes with --live", file=sys.stderr)
        return 2
    scenarios = find_scenarios(a.root, a.limit)
    result = _replay_duplex(a, scenarios)
    if a.json:
        prov = _provenance("replay", a, scenarios=len(scenarios), clock="virtual")
        print(json.dumps({**result, "provenance": prov}))
        return 0
    for task, figures in result.items():
        if task != "scenarios":
            print(f"{task:<12} " + "  ".join(f"{k} {v}" for k, v in figures.items()))
    return 0


def _eval_replies(a: argparse.Namespace) -> int:
    from engine.eval import replies
    from engine.eval.replay import Ears
    from engine.model.load import make_session
    from engine.model.worker import ModelWorker
    from engine.voice.playback import VoicedSpeech
    from engine.voice.synthesis import default_synthesizer

    if a.limit is not None and a.limit < 1:
        print("tandem: error: --limit must be at least 1", file=sys.stderr)
        return 2
    try:
        questions = replies.load_questions(a.questions, a.limit)
    except replies.QuestionsError as e:
        print(f"tandem: error: {e}", file=sys.stderr)
        return 2

    def progress(i: int, row: dict[str, Any]) -> None:
        facts = f"{row['facts_found']}/{row['facts_total']}"
        print(f"{i}/{len(questions)} facts {facts}  {row['question']}", file=sys.stderr, flush=True)

    voice = default_synthesizer(deterministic=True)  # replay is deterministic
    worker = ModelWorker()
    cfg = _model_config(a)
    try:
        spoken = replies.Spoken(voice, Ears.load()) if a.spoken else None
        worker.start(lambda: make_session(cfg))
        result = replies.eval_replies(
            questions, worker, lambda: VoicedSpeech(voice), progress, spoken
        )
    finally:
        worker.close()
        voice.close()
    if a.json:
        prov = _provenance(
            "replay", a, questions=len(questions), input=result["input"], clock="virtual"
        )
        print(json.dumps({**result, "provenance": prov}))
        return 0
    for r in result["replies"]:
        copy = " [copies the prompt]" if r["copies_prompt"] else ""
        copy += " [copies the user]" if r["copies_user"] else ""
        when = "no reply" if r["first_audio_s"] is None else f"{r['first_audio_s']:.2f} s"
        print(f"{r['facts_found']}/{r['facts_total']}  {when:>8}  {r['question']}")
        print(f"          -> {json.dumps(r['reply'])}{copy}")
    median = result["first_audio_s_median"]
    print(
        f"model {result['model']} ({result['input']}, replay time): "
        f"fact coverage {result['fact_coverage']:.1%} "
        f"({result['facts_found']}/{result['facts_total']}), "
        f"copy rate {result['copy_rate']:.1%} (prompt {result['copies_prompt']}, "
        f"user {result['copies_user']}), answered {result['answered']}/{result['questions']}, "
        "first audio median " + ("-" if median is None else f"{median:.2f} s")
    )
    return 0


def _replay_duplex(a: argparse.Namespace, scenarios: list[Path]) -> dict[str, Any]:
    """The replay evaluation of ``scenarios`` (virtual clock, modelled latencies)."""
    from engine.core.events import to_json
    from engine.eval import duplex
    from engine.eval.replay import Ears, replay_events
    from engine.model.load import make_session
    from engine.model.worker import ModelWorker
    from engine.voice.playback import VoicedSpeech
    from engine.voice.synthesis import default_synthesizer

    ears = Ears.load()
    voice = default_synthesizer(deterministic=True)  # replay is deterministic
    worker = ModelWorker()
    cfg = _model_config(a)
    try:
        worker.start(lambda: make_session(cfg))
        return duplex.eval_duplex(
            a.root,
            lambda root: [
                to_json(e) for e in replay_events(root, worker, ears, VoicedSpeech(voice))
            ],
            scenarios,
        )
    finally:
        worker.close()
        voice.close()


MODEL_FLAGS = {
    "model": "--model",
    "sha256": "--sha256",
    "n_ctx": "--n-ctx",
    "threads": "--threads",
    "gpu_layers": "--gpu-layers",
    "server": "--server",
    "server_model": "--server-model",
}


def _model_flags(a: argparse.Namespace) -> list[str]:
    """The model options the user gave, passed on to ``tandem run`` as they were."""
    out: list[str] = []
    for attr, flag in MODEL_FLAGS.items():
        value = getattr(a, attr, None)
        if value is not None:
            out += [flag, str(value)]
    return out


def _eval_duplex_live(a: argparse.Namespace) -> int:
    from engine.eval import live_duplex as live
    from engine.eval.virtual_audio import missing_tools

    missing = missing_tools()
    if missing:
        print(
            "tandem: error: live evaluation needs PulseAudio; not installed: "
            f"{', '.join(missing)} (Debian: apt install pulseaudio pulseaudio-utils)",
            file=sys.stderr,
        )
        return 2
    scenarios = live.find_scenarios(a.root, a.limit)
    # Kept evidence includes the engine's log (no content: end-of-turn scores, barge-in).
    verbose = ["--verbose"] if a.keep is not None else []
    command = [sys.executable, "-m", "app", *verbose, "run", *_model_flags(a)]
    options = live.LiveOptions(command=command, keep=a.keep)

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    try:
        result = live.eval_duplex_live(scenarios, options, progress)
    except live.LiveEvalError as e:
        print(f"tandem: error: {e}", file=sys.stderr)
        return 2
    replay = None
    if a.also_replay:
        progress(f"replaying the same {len(scenarios)} scenarios")
        replay = _replay_duplex(a, scenarios)
    if a.json:
        out = {**result, **({"replay": replay} if replay is not None else {})}
        out["provenance"] = _provenance(
            "live",
            a,
            scenarios=len(scenarios),
            clock="real",
            detector=live.detector_settings(),
            tandem_command=" ".join(["tandem", *live.tandem_argv(options)[3:]]),
            tandem_models=sorted({o["model"] for o in result["scenarios"] if o.get("model")}),
            tandem_settings=live.tandem_settings([sys.executable, "-m", "app"]),
        )
        print(json.dumps(out))
        return 0
    for o in result["scenarios"]:
        print(f"{o['scenario']:<16} {live.brief(o)}")
    print()
    print("\n".join(live.side_by_side(result, replay)))
    return 0


def _secrets(a: argparse.Namespace) -> int:
    import getpass

    from permissions.secrets import delete_secret, set_secret

    if a.secrets == "delete":
        print("deleted" if delete_secret(a.name) else "no such secret")
        return 0
    # Read from the terminal without echo, or from a pipe; never from the command line,
    # where it would land in the shell history and the process list.
    value = getpass.getpass(f"{a.name}: ") if sys.stdin.isatty() else sys.stdin.readline()
    set_secret(a.name, value.strip())
    print(f"stored {a.name}")
    return 0


def _config(a: argparse.Namespace) -> int:
    import os

    from engine import config

    if a.config == "path":
        print(config.config_path())
        return 0
    if a.config == "set":
        try:
            path, value = config.set_value(a.key, a.value)
        except config.ConfigUsageError as e:
            print(f"tandem: error: {e}", file=sys.stderr)
            return 2
        key = config.BY_NAME[a.key]
        print(f"{a.key} = {json.dumps(config.to_json_value(value))} (written to {path})")
        if key.env in os.environ:
            print(f"tandem: note: {key.env} is set and overrides it here", file=sys.stderr)
        return 0
    loaded = config.load()
    for line in loaded.lines():
        print(f"tandem: warning: {line}", file=sys.stderr)
    tuning = config.tuning_rows() if a.tuning else []
    if a.json:
        print(json.dumps({**loaded.to_json(), **({"tuning": tuning} if a.tuning else {})}))
        return 0
    state = "" if loaded.file_found else " (not there yet: tandem config set creates it)"
    print(f"# {loaded.path}{state}")
    values = config.to_json(loaded.config)
    for key in config.KEYS:
        source = loaded.sources[key.dotted]
        where = f"env {key.env}" if source is config.Source.ENV else source.value
        value = json.dumps(values[key.section][key.name])
        print(f"{key.dotted:<43} {value:<24} {where:<8}  # {key.help}")
    if tuning:
        print("# tuning constants (engine/core/tuning.py): not settings; each with its source")
        for row in tuning:
            print(f"{row['name']} = {row['value']}  # {row['source']}")
    return 0


def _audit(a: argparse.Namespace) -> int:
    from permissions.audit import open_log

    log = open_log()
    try:
        if a.audit == "verify":
            result = log.verify()
            if a.json:
                print(json.dumps(result.to_json()))
            else:
                state = "intact" if result.intact else f"NOT intact: {result.problem}"
                note = result.to_json().get("note")
                print(f"{result.entries} entries, {state}" + (f" ({note})" if note else ""))
            return 0 if result.intact else 1
        rows = log.tail(a.n) if a.audit == "tail" else list(log.rows())
        if a.audit == "export":
            lines = "".join(json.dumps(r) + "\n" for r in rows)
            if a.out:
                a.out.write_text(lines)
            else:
                sys.stdout.write(lines)
        elif a.json:
            print(json.dumps(rows))
        else:
            for r in rows:
                rule = f" [{r['rule']}]" if r["rule"] else ""
                print(
                    f"{r['seq']:>6} {r['ts']:.3f} {r['kind']:<8} {r['subject']:<24} "
                    f"{r['decision']:<6} {r['reason']}{rule}"
                )
        return 0
    finally:
        log.close()


if __name__ == "__main__":
    sys.exit(main())
