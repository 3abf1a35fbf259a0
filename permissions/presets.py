"""Built-in rules: what Tandem never does, whatever the user or the model says.

- The screen is never captured while a password manager or a private browser window is
  focused (matched on the app id, e.g. WM_CLASS, and on the window title).
- Tools never touch Tandem's own permission settings and audit log, or the usual secret
  stores in the home directory (deny beats every allow).
- A few destructive commands are denied outright, even inside compound commands.
Users add apps with their own deny rules (``app``/``title`` globs) in the settings file.
"""

from __future__ import annotations

from pathlib import Path

from permissions.model import Decision, Rule, Sense

PASSWORD_MANAGERS = (
    "keepassxc",
    "keepass*",
    "1password*",
    "bitwarden*",
    "lastpass*",
    "dashlane*",
    "enpass*",
    "nordpass*",
    "protonpass*",
    "proton pass*",
    "seahorse",
    "gnome-keyring*",
    "kwalletmanager*",
    "com.apple.keychainaccess",
    "keychain access",
    "com.1password.*",
    "com.bitwarden.*",
)
PRIVATE_WINDOWS = ("*private browsing*", "*incognito*", "*inprivate*", "*private window*")
SECRET_PATHS = (
    "~/.ssh",
    "~/.gnupg",
    "~/.aws",
    "~/.config/gcloud",
    "~/.netrc",
    "~/.docker/config.json",
)
DESTRUCTIVE = (
    "rm -rf /",
    "rm -rf ~",
    "rm -fr /",
    "rm -rf --no-preserve-root",
    "mkfs",
    "dd",
    "shutdown",
    "reboot",
    "halt",
    "poweroff",
    "git push --force",
    "git push -f",
    "chmod -R 777 /",
)


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
            f"preset:screen-private-window:{title.strip('*')}",
            Decision.DENY,
            sense=Sense.SCREEN,
            title=title,
            builtin=True,
        )
        for title in PRIVATE_WINDOWS
    ]
    for d in (*protected_dirs, *(Path(p) for p in SECRET_PATHS)):
        rules.append(
            Rule(f"preset:protect:{d}", Decision.DENY, tool="*", path=str(d), builtin=True)
        )
    rules += [
        Rule(
            f"preset:destructive:{cmd}",
            Decision.DENY,
            tool="run_command",
            command=cmd,
            builtin=True,
        )
        for cmd in DESTRUCTIVE
    ]
    return rules
