"""Features computed from the senses: voice activity, speech recognition (later OCR)."""
