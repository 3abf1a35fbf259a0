"""Shell command analysis: what an allow rule for ``pytest`` must never let through.

A command is *plain* (``simple``) when bash would run one program with literal arguments and
nothing else: ``permissions.shell`` decides that with a real bash grammar plus a strict word
scanner. On top of that, a plain command still cannot be allowed by a prefix rule when its
program runs *another* command (``env``, ``sudo``, ``find``, ``make``, ``python3.11``, any
shell ...), is a network client (``curl``), names a URL, or uses an option of the allowed
program that writes a file or loads code (``git log --output=``, ``pytest -p``).

Deny rules look at every part: each command anywhere in the script (lists, pipelines,
subshells, substitutions, function bodies, heredocs fed to a shell), after brace expansion,
and every command a wrapper would run (``sudo``/``timeout``/``xargs``/``find -exec`` tails,
``bash -c '...'`` strings, ``git -c alias.x=...``). Matching is semantic: programs by
basename and without version suffixes (``/bin/rm``, ``python3.11``), flags split and
reordered (``-rf`` = ``-r -f`` = ``-f -r``), ``--`` handled.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from permissions import shell
from permissions.paths import realpath

WRAPPERS = frozenset(
    {
        # run a command given as arguments
        "env",
        "sudo",
        "doas",
        "su",
        "pkexec",
        "runuser",
        "setpriv",
        "sg",
        "newgrp",
        "command",
        "builtin",
        "exec",
        "eval",
        "source",
        ".",
        "alias",
        "trap",
        "nohup",
        "time",
        "nice",
        "ionice",
        "timeout",
        "stdbuf",
        "chrt",
        "taskset",
        "setsid",
        "xargs",
        "parallel",
        "watch",
        "flock",
        "chroot",
        "unshare",
        "nsenter",
        "strace",
        "ltrace",
        "gdb",
        "lldb",
        "valgrind",
        "perf",
        "script",
        "expect",
        "unbuffer",
        "rlwrap",
        "entr",
        "hyperfine",
        "systemd-run",
        "at",
        "batch",
        "crontab",
        "firejail",
        "bwrap",
        "proot",
        "fakeroot",
        "catchsegv",
        "dbus-launch",
        "sshpass",
        "shell",
        "system",
        "spawn",
        "torsocks",
        "proxychains",
        "proxychains4",
        "caffeinate",
        "busybox",
        "toybox",
        "xterm",
        "gnome-terminal",
        "konsole",
        "kitty",
        "alacritty",
        "tmux",
        "screen",
        "ssh",
        "mosh",
        # run commands from their own language or files
        "find",
        "awk",
        "gawk",
        "mawk",
        "nawk",
        "sed",
        "gsed",
        "ed",
        "ex",
        "vi",
        "vim",
        "nvim",
        "view",
        "emacs",
        "less",
        "more",
        "most",
        "man",
        "tar",
        "zip",
        "rsync",
        "scp",
        "make",
        "gmake",
        "cmake",
        "ninja",
        "meson",
        "xdg-open",
        "open",
        "gio",
        "docker",
        "podman",
        "kubectl",
        "npm",
        "npx",
        "yarn",
        "pnpm",
        "pip",
        "pipx",
        "uv",
        "uvx",
        "poetry",
        "pdm",
        "hatch",
        "tox",
        "nox",
        "conda",
        "mamba",
        "cargo",
        "go",
        "dotnet",
        "java",
        "mvn",
        "gradle",
        "rake",
        "bundle",
        "gem",
        # interpreters and shells (any version suffix is stripped before the lookup)
        "sh",
        "bash",
        "zsh",
        "dash",
        "fish",
        "ksh",
        "mksh",
        "csh",
        "tcsh",
        "ash",
        "yash",
        "rc",
        "python",
        "pypy",
        "perl",
        "ruby",
        "irb",
        "node",
        "nodejs",
        "deno",
        "bun",
        "php",
        "lua",
        "luajit",
        "tclsh",
        "wish",
        "r",
        "rscript",
        "osascript",
        "pwsh",
        "powershell",
        "cmd",
        "jshell",
        "julia",
        "guile",
        "racket",
        "sbcl",
        "ghci",
        "runghc",
        "swift",
        "scala",
        "kotlin",
        "groovy",
        "elixir",
        "erl",
        "escript",
        "ocaml",
    }
)
"""Programs that run *another* command: a prefix rule on them would allow anything."""

NETWORK_CLIENTS = frozenset(
    {
        "curl",
        "wget",
        "wget2",
        "aria2c",
        "http",
        "https",
        "httpie",
        "xh",
        "nc",
        "ncat",
        "netcat",
        "socat",
        "telnet",
        "ftp",
        "sftp",
        "tftp",
        "lftp",
        "lynx",
        "w3m",
        "links",
        "elinks",
        "openssl",
        "gnutls-cli",
        "smbclient",
        "ldapsearch",
        "mail",
        "sendmail",
        "nmap",
        "dig",
        "nslookup",
        "host",
    }
)
"""Programs that talk to the network: never allowed by a plain command rule (the host counts)."""

GIT_EXEC_SUBCOMMANDS = frozenset(
    {
        "bisect",
        "config",
        "difftool",
        "mergetool",
        "filter-branch",
        "filter-repo",
        "submodule",
        "help",
        "instaweb",
        "daemon",
        "web--browse",
        "send-email",
        "shell",
        "upload-pack",
        "receive-pack",
        "upload-archive",
        "credential",
        "archimport",
        "cvsimport",
        "cvsserver",
        "svn",
        "p4",
        "remote-ext",
        "remote-fd",
        "var",
    }
)
GIT_SUBCOMMANDS = frozenset(
    {
        "add",
        "annotate",
        "apply",
        "archive",
        "blame",
        "branch",
        "bundle",
        "cat-file",
        "check-ignore",
        "checkout",
        "cherry",
        "cherry-pick",
        "clean",
        "clone",
        "commit",
        "count-objects",
        "describe",
        "diff",
        "fetch",
        "format-patch",
        "fsck",
        "gc",
        "grep",
        "init",
        "log",
        "ls-files",
        "ls-remote",
        "ls-tree",
        "merge",
        "merge-base",
        "mv",
        "notes",
        "pull",
        "push",
        "range-diff",
        "rebase",
        "reflog",
        "remote",
        "reset",
        "restore",
        "rev-list",
        "rev-parse",
        "revert",
        "rm",
        "shortlog",
        "show",
        "show-branch",
        "show-ref",
        "stash",
        "status",
        "switch",
        "tag",
        "whatchanged",
        "worktree",
    }
)
"""Built-in git commands a rule may name (an unknown name may be an alias: ``!sh -c ...``)."""

_GIT_GLOBAL_WITH_VALUE = frozenset(
    {"-C", "-c", "--git-dir", "--work-tree", "--namespace", "--super-prefix", "--config-env"}
)
_GIT_GLOBAL_HAZARDS = frozenset(
    {"-C", "-c", "--git-dir", "--work-tree", "--exec-path", "--config-env", "--namespace"}
)


@dataclass(frozen=True, slots=True)
class _Hazards:
    longs: tuple[str, ...]
    shorts: str
    why: str
    abbreviations: bool  # does the program accept unique prefixes of long options?


OPTION_HAZARDS: dict[str, _Hazards] = {
    "git": _Hazards(
        (
            "output",
            "output-directory",
            "exec",
            "exec-path",
            "upload-pack",
            "receive-pack",
            "config-env",
            "git-dir",
            "work-tree",
            "ext-diff",
            "open-files-in-pager",
            "template",
            "separate-git-dir",
            "remote",
            "extcmd",
            "tool",
        ),
        "oOx",
        "writes a file or runs another program",
        True,
    ),
    "pytest": _Hazards(
        (
            "basetemp",
            "junitxml",
            "junit-xml",
            "result-log",
            "resultlog",
            "log-file",
            "debug",
            "html",
            "report-log",
            "json-report-file",
            "override-ini",
            "config-file",
            "inifile",
            "pyargs",
            "pdbcls",
            "pastebin",
        ),
        "pco",
        "writes or deletes files, or loads code or configuration",
        False,  # pytest's parser sets allow_abbrev=False
    ),
}
OPTION_HAZARDS["py.test"] = OPTION_HAZARDS["pytest"]
"""Options of commonly allowed programs that write files or load code: never allowed."""

MAX_PARTS = 512
MAX_WORDS = 8192
MAX_DEPTH = 4
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://|^file:", re.IGNORECASE)
_LITERALS = re.compile(r"\"((?:[^\"\\]|\\.)*)\"|'((?:[^'\\]|\\.)*)'")
_VERSION = re.compile(r"^([a-z][a-z+]*?)[-_.]?\d+(?:\.\d+)*[a-z]?$")
_FLAG_ALIASES: dict[str, dict[str, str]] = {
    "rm": {"-R": "-r", "--recursive": "-r", "--force": "-f", "--dir": "-d"},
    "cp": {"-R": "-r", "--recursive": "-r", "--force": "-f"},
    "chmod": {"--recursive": "-R"},
    "chown": {"--recursive": "-R"},
    "chgrp": {"--recursive": "-R"},
    "git": {"-f": "--force", "--force-with-lease": "--force", "--force-if-includes": "--force"},
}


@dataclass(frozen=True, slots=True)
class ParsedCommand:
    """A command line analysed; ``argv`` is set only for a simple (plain) command.

    Attributes:
        raw: the command line.
        simple: one program with literal arguments that a prefix rule may cover.
        argv: its words (empty unless simple).
        parts: every command deny rules must see (see the module doc).
        problem: why it is not simple (``""`` when it is).
        redirects: every redirection target and assigned value in the script.
        bombs: functions that call themselves (fork bombs).
        complete: False when the analysis was cut short: deny cannot rule anything out.
    """

    raw: str
    simple: bool
    argv: tuple[str, ...]
    parts: tuple[tuple[str, ...], ...]
    problem: str
    redirects: tuple[str, ...] = ()
    bombs: tuple[str, ...] = ()
    complete: bool = True


def basename(word: str) -> str:
    """The program name of a path (``/usr/bin/rm`` -> ``rm``)."""
    return word.rsplit("/", 1)[-1]


@functools.lru_cache(maxsize=4096)
def program_names(word: str) -> tuple[str, ...]:
    """Lookup names of a program word: basename, lower case, ``.exe`` and versions stripped.

    ``/usr/bin/Python3.11`` -> ``("python3.11", "python")``; ``perl5.36`` -> ``("perl5.36",
    "perl")``; ``node18`` -> ``("node18", "node")``.
    """
    name = word.replace("\\", "/").rsplit("/", 1)[-1].lower()
    for suffix in (".exe", ".com", ".bat", ".cmd"):
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    m = _VERSION.match(name)
    return (name, m.group(1)) if m else (name,)


def is_wrapper(word: str) -> bool:
    """Does this program run another command (so a rule naming it covers anything)?"""
    return any(n in WRAPPERS for n in program_names(word))


def is_network_client(word: str) -> bool:
    """Is this program a network client (``curl``, ``wget``, ``nc`` ...)?"""
    return any(n in NETWORK_CLIENTS for n in program_names(word))


def is_url(word: str) -> bool:
    """Does the word look like a URL (``scheme://...`` or ``file:...``)?"""
    return bool(_URL.match(word))


def parse(command: str) -> ParsedCommand:
    """Analyse ``command`` without running anything."""
    if "\x00" in command:
        return ParsedCommand(command, False, (), (), "NUL byte in command", complete=False)
    script = shell.parse(command)
    collector = _Parts()
    collector.add_script(script, 0)
    problem = script.problem
    argv: tuple[str, ...] = ()
    if script.argv is not None:
        problem = _hazard(script.argv)
        argv = script.argv if not problem else ()
    if not collector.complete:
        problem = problem or "too complex to analyse"
    return ParsedCommand(
        command,
        not problem,
        argv,
        tuple(collector.parts),
        problem,
        tuple(collector.redirects),
        tuple(collector.bombs),
        collector.complete and script.complete,
    )


class _Parts:
    """Every command a script would run, wrappers unwrapped, deduplicated, capped."""

    def __init__(self) -> None:
        self.parts: list[tuple[str, ...]] = []
        self.redirects: list[str] = []
        self.bombs: list[str] = []
        self.complete = True
        self._seen: set[tuple[str, ...]] = set()
        self._parsed: set[str] = set()

    def add_script(self, script: shell.Script, depth: int) -> None:
        self.complete = self.complete and script.complete
        self.bombs.extend(script.recursive_functions)
        self.redirects.extend(script.assigned)
        for cmd in script.commands:
            self.redirects.extend(cmd.redirects)
            self.add_words(cmd.words, depth)
        for text in script.texts:
            self.add_text(text, depth + 1)

    def add_text(self, text: str, depth: int) -> None:
        """Parse a string a program would run as a shell script (``bash -c '...'``)."""
        if depth > MAX_DEPTH or text in self._parsed or not text.strip():
            return
        if len(self._parsed) >= MAX_PARTS:
            self.complete = False
            return
        self._parsed.add(text)
        self.add_script(shell.parse(text), depth)

    def add_words(self, words: Sequence[str], depth: int) -> None:
        expanded: list[str] = []
        for w in words:
            expanded.extend(shell.expand_braces(w))
            if len(expanded) > MAX_WORDS:
                self.complete = False
                break
        argv = tuple(expanded)
        if not argv:
            return
        self._add(argv)
        if program_names(argv[0])[0] == "git":
            self._git_config(argv, depth)
        if not is_wrapper(argv[0]):
            return
        for i in range(1, len(argv)):  # every tail a wrapper might run, whatever its options
            self._add(argv[i:])
        for w in argv[1:]:
            self._strings(w, depth)

    def _strings(self, w: str, depth: int) -> None:
        """Shell code inside one argument: the word itself, ``k=v`` values, quoted literals."""
        texts = [w]
        if "=" in w:
            texts.append(w.split("=", 1)[1])
        literals = [
            m.group(1) if m.group(1) is not None else m.group(2) for m in _LITERALS.finditer(w)
        ]
        texts.extend(literals)
        if len(literals) > 1:  # ["rm", "-rf", "/"] in a program's own language
            texts.append(" ".join(literals))
        for t in texts:
            if any(ch in t for ch in " \t\n;|&$`()<>"):
                self.add_text(t, depth + 1)
                if t.lstrip().startswith((":", "!")):  # vim -c ':!cmd', less '!cmd'
                    self.add_text(t.lstrip().lstrip(":!"), depth + 1)

    def _git_config(self, argv: tuple[str, ...], depth: int) -> None:
        """``git -c alias.x='!cmd'`` runs ``cmd``; ``alias.x='push -f'`` runs ``git push -f``."""
        for i, w in enumerate(argv[:-1]):
            if w not in ("-c", "--config-env"):
                continue
            key, _, value = argv[i + 1].partition("=")
            if not value:
                continue
            if value.startswith("!"):
                self.add_text(value[1:], depth + 1)
            elif key.lower().startswith("alias."):
                try:
                    self.add_words(("git", *shlex.split(value)), depth + 1)
                except ValueError:
                    self.add_words(("git", *value.split()), depth + 1)
            else:
                self.add_text(value, depth + 1)

    def _add(self, argv: tuple[str, ...]) -> None:
        if argv in self._seen:
            return
        if len(self.parts) >= MAX_PARTS:
            self.complete = False
            return
        self._seen.add(argv)
        self.parts.append(argv)


def _hazard(argv: tuple[str, ...]) -> str:
    """Why a plain command still cannot be allowed by a prefix rule (``""``: it can)."""
    prog = argv[0]
    names = program_names(prog)
    if any(n in WRAPPERS for n in names):
        return f"{names[0]!r} runs another command"
    if any(n in NETWORK_CLIENTS for n in names):
        return f"{names[0]!r} is a network client"
    for w in argv[1:]:
        value = w.split("=", 1)[1] if "=" in w and not is_url(w) else w
        if is_url(value) and not value.lower().startswith("file:"):
            return "names a URL (network access)"
        if "ext::" in w or "fd::" in w:
            return "names a git transport that runs a command"
    if names[0] == "git":
        sub, index = git_subcommand(argv)
        for w in argv[1:index]:
            if w.split("=", 1)[0] in _GIT_GLOBAL_HAZARDS:
                return f"git option {w.split('=', 1)[0]!r} changes what git runs or where"
        if sub in GIT_EXEC_SUBCOMMANDS:
            return f"git {sub!r} runs other programs or changes the configuration"
    for name in names:
        hazards = OPTION_HAZARDS.get(name)
        if hazards is not None:
            found = _option_hazard(argv, hazards)
            if found:
                return f"{name} option {found!r} {hazards.why}"
    return ""


def _option_hazard(argv: Sequence[str], hazards: _Hazards) -> str:
    """The first hazardous option, also after ``--`` (pytest loads ``-p`` plugins from
    anywhere in its arguments, ``--`` or not)."""
    for w in argv[1:]:
        if w == "--":
            continue
        if w.startswith("--"):
            name = w[2:].split("=", 1)[0]
            if name in hazards.longs or (
                hazards.abbreviations and name and any(o.startswith(name) for o in hazards.longs)
            ):
                return w.split("=", 1)[0]
        elif w.startswith("-") and len(w) > 1:
            for ch in w[1:]:
                if ch in hazards.shorts:
                    return f"-{ch}"
    return ""


def git_subcommand(argv: Sequence[str]) -> tuple[str, int]:
    """The git subcommand after the global options, and its index (``("", len)`` if none)."""
    i = 1
    while i < len(argv):
        w = argv[i]
        if w in _GIT_GLOBAL_WITH_VALUE:
            i += 2
            continue
        if w.startswith("-"):
            i += 1
            continue
        return w, i
    return "", len(argv)


def rule_is_explicit(rule_command: str) -> bool:
    """May an allow rule with this command prefix cover a dangerous request at all?

    Never for a wrapper, a network client, a bare ``git``, a git command that runs other
    programs, or a git name that is not a built-in command (it may be an alias).
    """
    words = rule_words(rule_command)
    if not words:
        return False
    names = program_names(words[0])
    if any(n in WRAPPERS or n in NETWORK_CLIENTS for n in names):
        return False
    if names[0] == "git":
        return len(words) >= 2 and words[1] in GIT_SUBCOMMANDS
    return True


@functools.lru_cache(maxsize=8192)
def rule_words(rule_prefix: str) -> tuple[str, ...]:
    """A rule's command split into words (``()`` when it cannot be split)."""
    try:
        return tuple(shlex.split(rule_prefix))
    except ValueError:
        return ()


def prefix_matches(rule_prefix: str, argv: tuple[str, ...]) -> bool:
    """True when ``argv`` starts with the rule's words exactly (for allow rules).

    The program must be named as the rule names it: ``pytest`` (found on PATH) is not
    ``/tmp/pytest`` or ``./pytest``, which could be anything.
    """
    want = rule_words(rule_prefix)
    return bool(want) and len(argv) >= len(want) and argv[: len(want)] == want


@dataclass(frozen=True, slots=True)
class CommandPattern:
    """A deny/ask rule's command, normalised: program names, positionals in order, flags."""

    programs: frozenset[str]
    positionals: tuple[str, ...]
    flags: tuple[str, ...]

    def matches(self, argv: Sequence[str]) -> bool:
        """Does one command (``argv``) match, flags in any order and spelling?"""
        if not argv or not self.programs.intersection(program_names(argv[0])):
            return False
        name = program_names(argv[0])[-1]
        pos, longs, letters, raw = _split_flags(argv[1:], name)
        it = iter(pos)
        if not all(any(p == q for q in it) for p in self.positionals):
            return False  # the rule's positional words must appear in order
        for flag in self.flags:
            if flag in raw:
                continue
            if flag.startswith("--"):
                canon = _FLAG_ALIASES.get(name, {}).get(flag, flag)
                if canon in longs or canon in letters:
                    continue
                if any(flag.startswith(x) and len(x) > 3 for x in longs):
                    continue  # an abbreviation of the rule's flag
                return False
            if not all(_alias(name, f"-{ch}") in letters for ch in flag[1:]):
                return False
        return True


def _alias(program: str, flag: str) -> str:
    return _FLAG_ALIASES.get(program, {}).get(flag, flag)


def _split_flags(
    words: Iterable[str], program: str
) -> tuple[list[str], set[str], set[str], set[str]]:
    """Positionals, long options, single letters (``-rf`` -> ``-r``, ``-f``), raw flags."""
    pos: list[str] = []
    longs: set[str] = set()
    letters: set[str] = set()
    raw: set[str] = set()
    ended = False
    for w in words:
        if ended or w == "-" or not w.startswith("-"):
            pos.append(w)
        elif w == "--":
            ended = True
        elif w.startswith("--"):
            name = w.split("=", 1)[0]
            raw.add(name)
            longs.add(_alias(program, name))
            letters.add(_alias(program, name))
        else:
            raw.add(w)
            for ch in w[1:]:
                letters.add(_alias(program, f"-{ch}"))
    return pos, longs, letters, raw


@functools.lru_cache(maxsize=8192)
def compile_pattern(rule_command: str) -> CommandPattern | None:
    """The normalised pattern of a deny/ask rule's command (None: it names nothing)."""
    words = rule_words(rule_command)
    if not words:
        return None
    names = program_names(words[0])
    pos: list[str] = []
    flags: list[str] = []
    ended = False
    for w in words[1:]:
        if ended or not w.startswith("-") or w == "-":
            pos.append(w)
        elif w == "--":
            ended = True
        else:
            flags.append(w.split("=", 1)[0])
    return CommandPattern(frozenset({names[-1]}), tuple(pos), tuple(flags))


def any_part_matches(rule_prefix: str, parsed: ParsedCommand) -> bool:
    """For deny and ask rules: does any part of a (possibly compound) command match?"""
    pattern = compile_pattern(rule_prefix)
    if pattern is None:
        return False
    if parsed.argv and pattern.matches(parsed.argv):
        return True
    return any(pattern.matches(part) for part in parsed.parts)


def path_candidates(words: Iterable[str]) -> list[str]:
    """Every word (or part of one) that could name a file: arguments, ``--opt=VALUE`` and
    ``key=VALUE`` values, ``-oVALUE`` attached values, ``a:b`` lists and ``@file`` names."""
    out: list[str] = []
    ended = False
    for w in words:
        if not w or w == "-":
            continue
        if w == "--" and not ended:
            ended = True
            continue
        values: list[str] = []
        if w.startswith("-") and not ended:
            if "/" in w:
                values.append(w)
            if "=" in w:
                values.append(w.split("=", 1)[1])
            elif not w.startswith("--") and len(w) > 2 and ("/" in w[2:] or w[2] in "~."):
                values.append(w[2:])
        else:
            values.append(w)
            if "=" in w:
                values.append(w.split("=", 1)[1])
        for v in values:
            if not v:
                continue
            if is_url(v):
                out.append(v)  # the caller reads it as a URL (file: URLs as paths)
                continue
            out.append(v)
            if ":" in v:
                out.extend(x for x in v.split(":") if x)
            if v.startswith("@") and len(v) > 1:
                out.append(v[1:])
    return out


# --- destructive commands: semantic matchers behind the preset:destructive:* rules ---------

DESTRUCTIVE = (
    "rm-recursive-critical",
    "rm-no-preserve-root",
    "mkfs",
    "disk-tool",
    "dd",
    "raw-device",
    "power",
    "fork-bomb",
    "kill-all",
    "chmod-recursive-critical",
    "move-critical",
    "find-delete-critical",
    "rsync-delete-critical",
    "git-push-force",
)
"""Names of the built-in destructive matchers (each is one ``preset:destructive:`` rule)."""

_DISK_TOOLS = frozenset(
    {
        "mke2fs",
        "mkswap",
        "wipefs",
        "fdisk",
        "sfdisk",
        "cfdisk",
        "parted",
        "gdisk",
        "sgdisk",
        "blkdiscard",
    }
)
_DISKUTIL_VERBS = frozenset(
    {"erasedisk", "erasevolume", "partitiondisk", "zerodisk", "randomdisk", "secureerase"}
)
_POWER = frozenset({"shutdown", "reboot", "halt", "poweroff", "kexec"})
_POWER_VERBS = frozenset(
    {
        "poweroff",
        "reboot",
        "halt",
        "kexec",
        "soft-reboot",
        "rescue",
        "emergency",
        "suspend",
        "hibernate",
        "hybrid-sleep",
        "suspend-then-hibernate",
    }
)
_RAW_DEVICE = re.compile(
    r"^/dev/(sd|hd|vd|xvd|nvme|mmcblk|loop|dm-|md|nbd|sr|disk|rdisk|mapper/|root|mem$|kmem$|"
    r"port$)|^/proc/sysrq-trigger$"
)
_HOME_VAR = re.compile(r"^\$\{?HOME\}?(?=/|$)")


def destructive(
    parsed: ParsedCommand, cwd: str, home: str, resolved: dict[str, str] | None = None
) -> tuple[str, ...]:
    """Which destructive matchers the command hits (deny, even inside compound commands).

    ``resolved`` maps words to their real paths where the caller has resolved them already.
    """
    hits: list[str] = []
    if parsed.bombs:
        hits.append("fork-bomb")
    memo = _Resolver(cwd, home, resolved)
    targets = [*parsed.redirects]
    for part in parsed.parts:
        hits.extend(_destructive_part(part, memo))
        targets.extend(path_candidates(part))
    for t in targets:
        if _RAW_DEVICE.match(memo(t)):
            hits.append("raw-device")
            break
    return tuple(dict.fromkeys(hits))


class _Resolver:
    """Real paths of words (``~`` and ``$HOME`` expanded), each resolved at most once."""

    def __init__(self, cwd: str, home: str, known: dict[str, str] | None) -> None:
        self.cwd, self.home = cwd, home
        self.known = dict(known or {})

    def __call__(self, word: str) -> str:
        hit = self.known.get(word)
        if hit is None:
            w = expand_home(word, self.home)
            if w.startswith("~"):
                w = os.path.expanduser(w)
            joined = os.path.join(self.cwd, w)
            hit = realpath(joined) or os.path.abspath(joined)
            self.known[word] = hit
        return hit


def _destructive_part(argv: Sequence[str], memo: _Resolver) -> list[str]:
    names = set(program_names(argv[0]))
    name = program_names(argv[0])[-1]
    args = list(argv[1:])
    pos, longs, letters, _ = _split_flags(args, name)
    out: list[str] = []
    if names & {"rm", "srm", "grm"}:
        if any("--no-preserve-root".startswith(x) and len(x) > 4 for x in longs):
            out.append("rm-no-preserve-root")
        recursive = "-r" in letters or any(
            "--recursive".startswith(x) and len(x) > 2 for x in longs
        )
        if recursive and any(_critical(p, memo) for p in pos):
            out.append("rm-recursive-critical")
    if any(n.startswith(("mkfs", "newfs")) for n in names):
        out.append("mkfs")
    if names & _DISK_TOOLS or ("diskutil" in names and _DISKUTIL_VERBS & {p.lower() for p in pos}):
        out.append("disk-tool")
    if "dd" in names:
        out.append("dd")
    if names & _POWER or (
        names & {"systemctl", "loginctl"} and any(p in _POWER_VERBS for p in pos)
    ):
        out.append("power")
    if names & {"init", "telinit"} and any(p in ("0", "6") for p in pos):
        out.append("power")
    if "killall5" in names or ("kill" in names and _kills_everything(args)):
        out.append("kill-all")
    chmod_recursive = "-R" in letters or any(
        "--recursive".startswith(x) and len(x) > 2 for x in longs
    )
    if (
        names & {"chmod", "chown", "chgrp"}
        and chmod_recursive
        and any(_critical(p, memo) for p in pos)
    ):
        out.append("chmod-recursive-critical")
    if "mv" in names and any(_critical(p, memo) for p in pos[:-1]):
        out.append("move-critical")
    if "find" in names and _find_deletes_critical(args, memo):
        out.append("find-delete-critical")
    if (
        "rsync" in names
        and any(x.startswith("--del") for x in longs)
        and pos
        and _critical(pos[-1], memo)
    ):
        out.append("rsync-delete-critical")
    if "git" in names and _git_push_force(argv):
        out.append("git-push-force")
    return out


def _kills_everything(args: Sequence[str]) -> bool:
    """``kill -9 -1`` (or ``kill -s KILL -1``, ``kill -- -1``): every process the user owns."""
    return any(w == "-1" for w in args[1:])


def _find_deletes_critical(args: Sequence[str], memo: _Resolver) -> bool:
    starts: list[str] = []
    for w in args:
        if w.startswith("-") or w in ("(", "!", ","):
            if w in ("-H", "-L", "-P"):
                continue
            break
        starts.append(w)
    if not any(_critical(s, memo) for s in starts):
        return False
    for i, w in enumerate(args):
        if w == "-delete":
            return True
        if (
            w in ("-exec", "-execdir", "-ok", "-okdir")
            and i + 1 < len(args)
            and set(program_names(args[i + 1])) & {"rm", "srm", "shred", "unlink", "rmdir"}
        ):
            return True
    return False


def _git_push_force(argv: Sequence[str]) -> bool:
    sub, index = git_subcommand(argv)
    if sub != "push":
        return False
    ended = False
    for w in argv[index + 1 :]:
        if ended:
            if w.startswith("+"):
                return True
            continue
        if w == "--":
            ended = True
        elif w.startswith("--"):
            name = w[2:].split("=", 1)[0]
            if name.startswith("force") or name.startswith("mirror"):
                return True
            if len(name) >= 2 and ("force".startswith(name) or "mirror".startswith(name)):
                return True
        elif w.startswith("-") and len(w) > 1:
            if "f" in w[1:]:
                return True
        elif w.startswith("+"):
            return True
    for i, w in enumerate(argv[:index]):  # git -c remote.origin.push=+refs/...: a force refspec
        if w == "-c" and i + 1 < len(argv):
            key, _, value = argv[i + 1].partition("=")
            if key.lower().endswith(".push") and value.startswith("+"):
                return True
    return False


def expand_home(word: str, home: str) -> str:
    """``$HOME/x`` and ``${HOME}/x`` as the shell would expand them (``~`` is left alone)."""
    m = _HOME_VAR.match(word)
    return home + word[m.end() :] if m else word


def _critical(word: str, memo: _Resolver) -> bool:
    """Would deleting (or moving) what ``word`` names destroy the system or the home dir?"""
    if not word:
        return False
    if any(ch in word for ch in "*?["):  # a glob: judge the directory it expands in
        head: list[str] = []
        for comp in word.split("/"):
            if any(ch in comp for ch in "*?["):
                break
            head.append(comp)
        base = "/".join(head) or ("/" if word.startswith("/") else ".")
        return _critical_path(memo(base), memo.home)
    return _critical_path(memo(word), memo.home)


def _critical_path(p: str, home: str) -> bool:
    """``/``, a top-level directory, the home directory or one of its ancestors."""
    home_real = (realpath(home) or home) if home else ""
    if p in ("/", home_real) or (home_real and home_real.startswith(p.rstrip("/") + "/")):
        return True
    return os.path.dirname(p) == "/"
