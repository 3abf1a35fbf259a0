#!/usr/bin/env bash
# Stop what audio-up.sh started (keepers first, then the server).
D=${1:?folder}
for f in keepers pulse; do
  for p in $(cat "$D/$f.pid" 2> /dev/null); do
    kill "$p" 2> /dev/null || continue
    for _ in $(seq 1 40); do kill -0 "$p" 2> /dev/null || break; sleep 0.05; done
    kill -9 "$p" 2> /dev/null
  done
done
true
