#!/usr/bin/env bash
# Start a private PulseAudio with a virtual speaker and a virtual microphone (no sound card).
# Usage: eval "$(bash tests/devices/audio-up.sh DIR)"; stop with tests/devices/audio-down.sh DIR.
#   speaker  null sink the app plays into (record it from speaker.monitor)
#   micfeed  null sink tests play into; its monitor is remapped as the source "virtmic"
#   virtmic  also an ALSA device of that name (XDG_CONFIG_HOME/alsa/asoundrc), so PortAudio lists
#            it and a test can choose it by name, like a USB microphone
# A silent 20 ms stream is kept on each null sink, or the first capture callback can wait 2 s.
# rescue-streams is off: when a source goes away PulseAudio kills the streams on it (as a raw
# ALSA device does when unplugged) instead of moving them to another source, where the app
# could not tell that its microphone is gone. Streams on the default source still follow it.
set -euo pipefail
D=${1:?folder}
rm -rf "$D"; mkdir -p "$D/run/pulse"; chmod 700 "$D/run"
cat > "$D/pa.pa" << 'PA'
load-module module-native-protocol-unix auth-anonymous=1
load-module module-null-sink sink_name=speaker sink_properties=device.description=VirtualSpeaker rate=48000
load-module module-null-sink sink_name=micfeed sink_properties=device.description=MicFeed rate=48000
load-module module-remap-source master=micfeed.monitor source_name=virtmic source_properties=device.description=VirtualMic
set-default-sink speaker
set-default-source virtmic
PA
echo 'rescue-streams = no' > "$D/daemon.conf"
mkdir -p "$D/config/alsa"
cat > "$D/config/alsa/asoundrc" << 'ALSA'
pcm.virtmic {
    type pulse
    device virtmic
    hint { show on description "VirtualMic (PulseAudio source virtmic)" }
}
ALSA
echo 'autospawn = no' > "$D/run/pulse/client.conf"
export XDG_RUNTIME_DIR="$D/run" PULSE_CLIENTCONFIG="$D/run/pulse/client.conf"
export XDG_CONFIG_HOME="$D/config"
PULSE_CONFIG="$D/daemon.conf" pulseaudio -n -F "$D/pa.pa" --exit-idle-time=-1 --daemonize=no --log-target=stderr > "$D/pulse.log" 2>&1 &
echo $! > "$D/pulse.pid"
for _ in $(seq 1 100); do pactl info > /dev/null 2>&1 && break; sleep 0.05; done
pactl info > /dev/null
for s in micfeed speaker; do
  pacat --playback -d "$s" --latency-msec=20 --format=s16le --rate=48000 --channels=2 --raw /dev/zero > /dev/null 2>&1 &
  echo $! >> "$D/keepers.pid"
done
echo "export XDG_RUNTIME_DIR=$XDG_RUNTIME_DIR PULSE_CLIENTCONFIG=$PULSE_CLIENTCONFIG XDG_CONFIG_HOME=$XDG_CONFIG_HOME"
