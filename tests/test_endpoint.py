"""How finished the user's words sound (engine/hearing/endpoint.py), as a table."""

from __future__ import annotations

import pytest

from engine.hearing.endpoint import completeness


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("Why does the parser fail on nested brackets?", 1.0, 1.0),
        ("Run the tests.", 0.9, 0.9),
        ("And so my fellow Americans ask...", 0.0, 0.1),  # Whisper heard it break off
        ("Mr. Quilter is the apostle of the", 0.0, 0.2),  # ends on an article
        ("I was going to refactor this and", 0.0, 0.2),
        ("open the file, um", 0.0, 0.2),
        ("so that it", 0.6, 0.6),  # "it" can end a sentence: no evidence either way
        ("ten of clubs", 0.6, 0.6),  # no punctuation at all
        ("", 0.0, 0.0),
        ("...", 0.0, 0.0),
    ],
)
def test_completeness(text: str, low: float, high: float) -> None:
    assert low <= completeness(text) <= high
