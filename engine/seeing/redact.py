"""Secrets never reach the model: redaction of screen text before it enters the stream.

Applied to every OCR line before anything else sees it (cues, summaries, ``ScreenState``).
What is removed, replaced by ``[redacted]``:

- API keys and tokens of the common providers by their shape (OpenAI, Anthropic, GitHub,
  GitLab, AWS access key ids, Google, Slack, Stripe, Hugging Face, npm, PyPI, SendGrid,
  Twilio, DigitalOcean), ``Bearer`` tokens and JWTs;
- the value of any ``key=value`` / ``key: value`` whose key names a secret (password, passwd,
  pwd, secret, token, api key, access key, auth, credential, private key), and every value of a
  ``.env``-style line (``NAME=value``, ``export NAME=value``);
- passwords in URLs (``scheme://user:password@host``);
- private-key blocks (every line from ``-----BEGIN ... PRIVATE KEY-----`` to its END line);
- long high-entropy tokens (32+ characters mixing letters and digits), whatever they are.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

MARK = "[redacted]"

_PROVIDERS = re.compile(
    r"(?:"
    r"sk-ant-[A-Za-z0-9_\-]{16,}"
    r"|sk-(?:proj-|svcacct-|admin-|live-)?[A-Za-z0-9_\-]{20,}"
    r"|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"
    r"|glpat-[A-Za-z0-9_\-]{16,}"
    r"|(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}"
    r"|AIza[0-9A-Za-z_\-]{30,}"
    r"|xox[abposr]-[A-Za-z0-9\-]{10,}"
    r"|(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}"
    r"|hf_[A-Za-z0-9]{30,}"
    r"|npm_[A-Za-z0-9]{30,}"
    r"|pypi-[A-Za-z0-9_\-]{30,}"
    r"|SG\.[\w\-]{16,}\.[\w\-]{16,}"
    r"|SK[0-9a-fA-F]{32}"
    r"|dop_v1_[0-9a-f]{40,}"
    r"|eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"
    r")"
)
_BEARER = re.compile(r"(?i)\b(bearer|token)\s+[A-Za-z0-9._~+/=\-]{16,}")
_SECRET_KEY = (
    r"[\w.\-]*(?:pass(?:word|wd|phrase)?|pwd|secret|token|api[_\-]?key|apikey|access[_\-]?key"
    r"|auth|credential|private[_\-]?key|client[_\-]?secret)[\w.\-]*"
)
_KEY_VALUE = re.compile(
    rf"(?i)(\b{_SECRET_KEY}[\"']?\s*(?::|=|:=|=>)\s*)(\"[^\"]*\"|'[^']*'|[^\s,;]+)"
)
_ENV_LINE = re.compile(r"^(\s*(?:export\s+)?[A-Z][A-Z0-9_]{2,}\s*=\s*)(\S.*)$")
_URL_PASSWORD = re.compile(r"([a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@]+:)([^\s@/]+)(@)")
_BEGIN_KEY = re.compile(r"-----\s*BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?\s*-----")
_END_KEY = re.compile(r"-----\s*END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?\s*-----")
_LONG_TOKEN = re.compile(r"[A-Za-z0-9+/_\-=]{32,}")
ENTROPY_BITS = 3.5
"""Bits per character above which a 32+ character token is taken for a secret."""


def redact_line(text: str) -> str:
    """One line with its secrets replaced by ``[redacted]``."""
    text = _PROVIDERS.sub(MARK, text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {MARK}", text)
    text = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{MARK}{m.group(3)}", text)
    text = _KEY_VALUE.sub(lambda m: m.group(1) + (MARK if m.group(2) != MARK else m.group(2)), text)
    env = _ENV_LINE.match(text)
    if env:
        text = env.group(1) + MARK
    return _LONG_TOKEN.sub(lambda m: MARK if _secret_like(m.group(0)) else m.group(0), text)


def redact_lines(lines: Iterable[str]) -> list[str]:
    """Lines with secrets replaced; a private-key block is removed line by line to its end."""
    out: list[str] = []
    in_key = False
    for line in lines:
        if _BEGIN_KEY.search(line):
            in_key = not _END_KEY.search(line)
            out.append(MARK)
            continue
        if in_key:
            if _END_KEY.search(line):
                in_key = False
            out.append(MARK)
            continue
        out.append(redact_line(line))
    return out


def _secret_like(token: str) -> bool:
    """A long token that mixes letters and digits and looks random (not a path or a word)."""
    if re.fullmatch(r"[0-9a-fA-F]+", token) and len(token) in (40, 64):
        return False  # a git commit or a SHA-256: shown everywhere in a developer's screen
    if not (re.search(r"[A-Za-z]", token) and re.search(r"[0-9]", token)):
        return False
    counts: dict[str, int] = {}
    for ch in token:
        counts[ch] = counts.get(ch, 0) + 1
    n = len(token)
    bits = -sum(c / n * math.log2(c / n) for c in counts.values())
    return bits >= ENTROPY_BITS
