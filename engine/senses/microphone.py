"""The microphone sense (the only sounddevice importer).

Today: finding out whether there is a microphone at all, with a reason when there is not.
The voice issue grows this into the capture stream (16 kHz mono, callback that only copies,
device recovery) behind a lease from the permission gate.
"""

from __future__ import annotations

from engine.senses import DeviceProbe


def probe() -> DeviceProbe:
    """Look for a default input device without opening it."""
    try:
        import sounddevice as sd
    except OSError as e:  # PortAudio's shared library is missing
        return DeviceProbe(False, f"no audio system ({e}); install libportaudio2")
    try:
        info = sd.query_devices(kind="input")
    except sd.PortAudioError as e:
        return DeviceProbe(False, f"no input device ({e})")
    if not isinstance(info, dict):
        return DeviceProbe(False, "no input device")
    rate = int(float(info.get("default_samplerate", 0)))
    return DeviceProbe(True, f"{info.get('name', '?')} ({rate} Hz)")
