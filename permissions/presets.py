"""Built-in rules: what Tandem never does, whatever the user or the model says.

- The screen is never captured while a password manager, a keyring, an authenticator or a
  private browser window is focused, matched case-insensitively on the app id (WM_CLASS,
  Wayland app id in reverse-DNS form, bundle id, exe name) *and* on the window title, so an
  empty app id with the title "Passwords.kdbx - KeePassXC" is caught too. Tor Browser always.
- Tools never touch Tandem's own permission settings and audit log, or the usual secret stores
  in the home directory: every string argument of every tool (MCP included) that names a path
  is resolved and checked. Protected directories are resolved (a symlinked ``~/.ssh`` is
  protected where it really is) and glob-escaped (a ``[`` in a name is literal).
- Destructive commands are denied outright, even inside compound commands and wrappers; they
  are semantic checks (``commands.destructive``), not argv prefixes.
- Network requests to cloud metadata and link-local addresses are denied, as is every scheme
  but http and https (``file:`` URLs are reads of a path, decided as such).
Users add apps with their own deny rules (``app``/``title`` globs) in the settings file.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

from permissions.commands import DESTRUCTIVE
from permissions.model import Decision, Rule, Sense
from permissions.paths import realpath

PASSWORD_MANAGERS = (
    # exact app ids first: the rule id names what matched
    "keepassxc",
    "keepass*",
    "*keepass*",
    "keeweb*",
    "*.keeweb*",
    "1password*",
    "*1password*",
    "*onepassword*",
    "*agilebits*",
    "bitwarden*",
    "*bitwarden*",
    "*vaultwarden*",
    "lastpass*",
    "*lastpass*",
    "dashlane*",
    "*dashlane*",
    "enpass*",
    "*enpass*",
    "*sinew*",
    "nordpass*",
    "*nordpass*",
    "protonpass*",
    "*protonpass*",
    "*proton-pass*",
    "proton pass*",
    "*roboform*",
    "keeper",
    "keeper password manager*",
    "*keepersecurity*",
    "seahorse",
    "*seahorse*",
    "gnome-keyring*",
    "*gnome-keyring*",
    "kwalletmanager*",
    "*kwallet*",
    "com.apple.keychainaccess",
    "*keychainaccess*",
    "keychain access",
    "com.apple.passwords*",
    "passwords",
    "com.1password.*",
    "com.bitwarden.*",
    "secrets",
    "*.secrets",
    "gnome-secrets",
    "*passwordsafe*",
    "password safe*",
    "*pwsafe*",
    "pass",
    "qtpass*",
    "*qtpass*",
    "gopass*",
    "*authy*",
    "*authenticator*",
    "*yubico*authenticator*",
)
"""Globs on the lower-cased app id."""

PASSWORD_MANAGER_TITLES = (
    "*keepassxc*",
    "*keepass*",
    "*keeweb*",
    "*1password*",
    "*bitwarden*",
    "*lastpass*",
    "*dashlane*",
    "*enpass*",
    "*nordpass*",
    "*proton pass*",
    "*roboform*",
    "*kwallet*",
    "*passwords and keys*",
    "*seahorse*",
    "*keychain access*",
    "*password safe*",
    "*pwsafe*",
    "*qtpass*",
    "secrets",
    "* - secrets",
    "* — secrets",
    "*authy*",
)
"""Globs on the lower-cased window title (distinctive names only)."""

PRIVATE_WINDOWS = (
    "*private browsing*",
    "*incognito*",
    "*inprivate*",
    "*private window*",
    "*private tab*",
    "*(private)*",
    "*tor browser*",
    "*mullvad browser*",
)
"""Globs on the lower-cased window title."""

PRIVATE_BROWSERS = (
    "*torbrowser*",
    "*tor browser*",
    "*tor-browser*",
    "org.torproject.*",
    "*mullvad*browser*",
)
"""Browsers whose every window is private (globs on the app id)."""

SECRET_PATHS = (
    "~/.ssh",
    "~/.gnupg",
    "~/.aws",
    "~/.azure",
    "~/.kube",
    "~/.config/gcloud",
    "~/.config/gh",
    "~/.netrc",
    "~/.git-credentials",
    "~/.pgpass",
    "~/.docker/config.json",
    "~/.password-store",
    "~/.local/share/keyrings",
    "~/.gnome2/keyrings",
    "~/.pki",
    "~/.mozilla/firefox",
    "~/.config/google-chrome",
    "~/.config/chromium",
    "~/.config/BraveSoftware",
    "~/.config/keepassxc",
    "~/.config/Bitwarden",
    "~/.config/1Password",
    "~/Library/Keychains",
)
NETWORK_PRESETS = ("scheme", "metadata", "link-local")
"""``preset:network:*``: schemes other than http(s), cloud metadata, link-local addresses."""


def protected_patterns(d: Path | str) -> tuple[str, ...]:
    """Glob-escaped absolute forms of a protected dir: as written and as resolved."""
    expanded = os.path.abspath(os.path.expanduser(str(d)))
    forms = dict.fromkeys((expanded, realpath(expanded) or expanded))
    return tuple(glob.escape(f) for f in forms)


def builtin_rules(protected_dirs: tuple[Path, ...] = ()) -> list[Rule]:
    """The presets, with Tandem's own config and data dirs protected."""
    rules = [
        Rule(
            f"preset:screen-password-manager:{app}",
            Decision.DENY,
            sense=Sense.SCREEN,
            app=app,
            builtin=True,
        )
        for app in PASSWORD_MANAGERS
    ]
    rules += [
        Rule(
            f"preset:screen-password-manager-title:{title.strip('*')}",
            Decision.DENY,
            sense=Sense.SCREEN,
            title=title,
            builtin=True,
        )
        for title in PASSWORD_MANAGER_TITLES
    ]
    rules += [
        Rule(
            f"preset:screen-private-window:{title.strip('*')}",
            Decision.DENY,
            sense=Sense.SCREEN,
            title=title,
            builtin=True,
        )
        for title in PRIVATE_WINDOWS
    ]
    rules += [
        Rule(
            f"preset:screen-private-window:{app.strip('*')}",
            Decision.DENY,
            sense=Sense.SCREEN,
            app=app,
            builtin=True,
        )
        for app in PRIVATE_BROWSERS
    ]
    rules += [
        Rule(
            f"preset:destructive:{name}",
            Decision.DENY,
            tool="run_command",
            matcher=f"destructive:{name}",
            builtin=True,
        )
        for name in DESTRUCTIVE
    ]
    seen: set[str] = set()
    for d in (*protected_dirs, *(Path(p) for p in SECRET_PATHS)):
        for pattern in protected_patterns(d):
            if pattern in seen:
                continue
            seen.add(pattern)
            rules.append(
                Rule(f"preset:protect:{d}", Decision.DENY, tool="*", path=pattern, builtin=True)
            )
    rules += [
        Rule(
            f"preset:network:{name}",
            Decision.DENY,
            tool="*",
            matcher=f"network:{name}",
            builtin=True,
        )
        for name in NETWORK_PRESETS
    ]
    return rules
