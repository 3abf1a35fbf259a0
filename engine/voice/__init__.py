"""The voice: synthesis (piper, the espeak-ng child), playback of utterances as
interruptible speech handles."""
