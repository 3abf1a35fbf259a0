"""The realtime core: frames, clock, channels, the micro-turn assembler, the policy, the
engine's state machine and its typed timeline events. No native libraries, no devices."""
