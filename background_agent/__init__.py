"""The background agent: consumes handoff requests, produces task updates (a later issue)."""
