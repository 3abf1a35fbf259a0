"""Measurement, off the runtime path: replay on a virtual clock, benches, duplex, ASR and VAD
evaluation. Runtime code never imports this package (import-linter enforces it)."""
