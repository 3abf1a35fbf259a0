"""Hearing: voice activity (Silero), recognition (Whisper), echo gating, end of turn and the
barge-in arbiter, and the live hearing thread that feeds the engine."""
