"""The one gate every sense and every tool passes.

- ``open_sense`` returns a ``Lease`` that capture code must hold around every sample it takes
  (``with lease.hold(): grab()``). ``revoke`` takes the same lock, so once it returns no sample
  is being taken and none will be: a revoked lease stops capture *before* the next frame.
  Leases are revoked by mute, by focus moving to an app the rules exclude, by the panel, and by
  the kill switch.
- ``authorize`` decides a tool request: rules first; "ask" goes to the prompt broker; no
  answer before the timeout, or no UI, means deny. Dangerous requests are explicit-only: an
  answer of "session" or "always" for them counts once.
- Prompts re-check the world. While one waits, the kill switch cancels every pending prompt,
  mute cancels the prompts for that sense, and focus moving to an app the rules exclude
  cancels the prompts it would deny (a screen prompt over a password manager). An answer
  that does come is re-evaluated against the state *at the time of the answer* (kill switch,
  mute, rules, the app focused now) before it allows anything or grants a lease, under the
  same lock as those state changes; a cancelled prompt or a late answer stays refused.
- ``explain_*`` say what would be decided right now, without prompting or recording.
- Everything decided is appended to the audit log.

Scopes: a ``once`` rule is used up by the first request it allows (atomically, under the
gate's lock: two concurrent requests cannot both use it); a ``session`` rule lasts until the
gate goes away; only ``always`` rules are persisted. ``user_rules()`` is what the settings
file should hold: the rules loaded from it and the ``always`` rules added since, never a
``once`` or ``session`` rule added at run time. A ``once`` rule written in the settings
file by hand allows one request per run.

Remembered answers ("allow for the session / always") become rules exactly as narrow as the
request: this tool, this workspace, this one path, each stored as an escaped literal (``*``,
``?``, ``[`` and a leading ``~`` cannot act as patterns), and matched only against that exact
path (ids ``answer:...``; a directory's answer does not cover what is inside it). A sense
answer is bound to the focused app's id. Requests a rule cannot describe exactly are not
remembered and ask again: several paths, MCP tools (opaque arguments), dangerous requests.

Rules change only through ``add_rule``/``remove_rule`` and the user's own answers, i.e.
through calls the UI makes on the user's behalf: nothing in a request's arguments, a tool's
output or the screen is ever read as an instruction.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from permissions import catalog, presets, rules, settings
from permissions.audit import AuditLog
from permissions.broker import DEFAULT_TIMEOUT_S, Answer, Prompt, PromptBroker
from permissions.errors import LeaseRevokedError
from permissions.model import (
    AppContext,
    Capability,
    Decision,
    Risk,
    Rule,
    Scope,
    Sense,
    ToolRequest,
    Verdict,
)

REMEMBERED = "answer:"
"""Id prefix of the rules made from the user's answers (matched against exact paths only)."""
MAX_ARG_DEPTH = 64
"""Requests whose JSON arguments nest deeper than this are denied as malformed."""


def literal_glob(text: str) -> str:
    """``text`` as a glob that matches only itself (``[*]``, ``[?]``, ``[[]``, leading ``[~]``).

    Args:
        text: a path, tool name or app id.

    Returns:
        A pattern for ``fnmatch`` that matches exactly ``text``.
    """
    out = "".join(f"[{ch}]" if ch in "*?[" else ch for ch in text)
    return "[~]" + out[1:] if out.startswith("~") else out


@dataclass(slots=True)
class Lease:
    """Permission to capture one sense, until revoked."""

    sense: Sense
    app: AppContext
    id: str
    revoked_reason: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def active(self) -> bool:
        """True until the gate revokes the lease."""
        return self.revoked_reason is None

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Take one sample under the lease; raises ``LeaseRevokedError`` once it is revoked."""
        with self._lock:
            if self.revoked_reason is not None:
                raise LeaseRevokedError(f"{self.sense.value} lease revoked: {self.revoked_reason}")
            yield

    def _revoke(self, reason: str) -> bool:
        with self._lock:  # waits for a sample in progress, then blocks every later one
            if self.revoked_reason is not None:
                return False
            self.revoked_reason = reason
            return True


@dataclass(frozen=True, slots=True)
class _Pending:
    """A prompt this gate is waiting on, and what it is about."""

    prompt: Prompt
    sense: Sense | None
    app: AppContext
    request: ToolRequest | None
    focus_seq: int


class Gate:
    """Decides senses and tools; holds leases; records everything."""

    def __init__(
        self,
        user_rules: tuple[Rule, ...] = (),
        *,
        audit: AuditLog | None = None,
        broker: PromptBroker | None = None,
        protected_dirs: tuple[Path, ...] = (),
        timeout_s: float = DEFAULT_TIMEOUT_S,
        workspace: Path | None = None,
    ) -> None:
        self._lock = threading.RLock()
        self._workspace = os.path.realpath(workspace) if workspace is not None else ""
        self._builtin = presets.builtin_rules(protected_dirs)
        self._user = list(user_rules)
        self._session: list[Rule] = []
        self._spent: dict[int, Rule] = {}  # once rules from the settings file, used up
        self._cache: tuple[tuple[Rule, ...], tuple[Rule, ...]] | None = None
        self._leases: list[Lease] = []
        self._muted: set[Sense] = set()
        self._killed = False
        self._focus: AppContext | None = None
        self._focus_seq = 0
        self._pending: dict[str, _Pending] = {}
        self.audit = audit
        self.broker = broker
        self.timeout_s = timeout_s

    @classmethod
    def from_settings(cls, loaded: settings.Loaded, **kw: object) -> Gate:
        """A gate on the user's saved rules, with Tandem's own dirs protected."""
        dirs = (settings.config_dir(), settings.data_dir())
        return cls(loaded.settings.rules, protected_dirs=dirs, **kw)  # type: ignore[arg-type]

    # --- rules: changed only by the user's own actions -----------------------------------

    def rules(self) -> list[Rule]:
        """The rules in force: presets, the user's saved rules, then this session's rules
        and answers (``once`` rules already used are left out)."""
        with self._lock:
            return [
                r for r in (*self._builtin, *self._user, *self._session) if id(r) not in self._spent
            ]

    def add_rule(self, rule: Rule) -> None:
        """Add a user rule (from the settings UI); only ``always`` rules are persisted."""
        if rule.id.startswith("preset:") or rule.builtin:
            raise ValueError("preset rules cannot be added or replaced")
        with self._lock:
            (self._user if rule.scope is Scope.ALWAYS else self._session).append(rule)
            self._invalidate()
        self._record(
            "rule",
            rule.tool or (rule.sense.value if rule.sense else ""),
            rule.decision.value,
            "user added a rule",
            rule=rule.id,
        )
        self._recheck()

    def remove_rule(self, rule_id: str) -> bool:
        """Remove a user or session rule by id (presets cannot be removed)."""
        with self._lock:
            before = len(self._user) + len(self._session)
            self._user = [r for r in self._user if r.id != rule_id]
            self._session = [r for r in self._session if r.id != rule_id]
            self._spent = {k: r for k, r in self._spent.items() if r.id != rule_id}
            removed = before != len(self._user) + len(self._session)
            self._invalidate()
        if removed:
            self._record("rule", rule_id, "removed", "user removed a rule", rule=rule_id)
            self._recheck()
        return removed

    def user_rules(self) -> tuple[Rule, ...]:
        """The rules to persist: those loaded from the settings file and the ``always``
        rules added since (never a run-time ``once`` or ``session`` rule)."""
        with self._lock:
            return tuple(self._user)

    def _split(self) -> tuple[tuple[Rule, ...], tuple[Rule, ...]]:
        """Rules in force (caller holds the lock): (ordinary rules, remembered answers)."""
        if self._cache is None:
            plain: list[Rule] = []
            remembered: list[Rule] = []
            for r in (*self._builtin, *self._user, *self._session):
                if id(r) in self._spent:
                    continue
                exact = r.id.startswith(REMEMBERED) and r.tool and r.decision is Decision.ALLOW
                (remembered if exact else plain).append(r)
            self._cache = (tuple(plain), tuple(remembered))
        return self._cache

    def _consume_once(self, rule_id: str | None) -> None:
        """Use up the ``once`` rule that just allowed a request (caller holds the lock)."""
        if rule_id is None or rule_id.startswith("preset:"):
            return
        plain, remembered = self._split()
        for r in (*plain, *remembered):
            if r.id == rule_id and r.scope is Scope.ONCE and r.decision is Decision.ALLOW:
                if any(r is s for s in self._session):
                    self._session = [s for s in self._session if s is not r]
                else:
                    self._spent[id(r)] = r  # keeps `r` alive, so its id is never reused
                self._invalidate()

    def _invalidate(self) -> None:
        self._cache = None

    # --- senses --------------------------------------------------------------------------

    def explain_sense(self, sense: Sense, app: AppContext) -> Verdict:
        """What ``open_sense`` would decide now (no prompt, no record)."""
        with self._lock:
            return self._sense_verdict(sense, app)

    def _sense_verdict(self, sense: Sense, app: AppContext) -> Verdict:
        if self._killed:
            return Verdict(Decision.DENY, None, "kill switch is on")
        if sense in self._muted:
            return Verdict(Decision.DENY, None, f"{sense.value} is muted")
        return rules.evaluate_sense(sense, app, self._split()[0], self._workspace)

    def set_workspace(self, workspace: Path | None) -> None:
        """The workspace sense rules with a ``workspace`` key are matched against (None:
        unknown; then a workspace-scoped deny holds everywhere and a scoped allow nowhere)."""
        with self._lock:
            self._workspace = os.path.realpath(workspace) if workspace is not None else ""
        self._recheck()

    def open_sense(
        self, sense: Sense, app: AppContext, timeout_s: float | None = None
    ) -> Lease | None:
        """A lease to capture ``sense`` while ``app`` is focused, or None when denied."""
        lease = None
        with self._lock:
            verdict = self._sense_verdict(sense, app)
            if verdict.decision is Decision.ALLOW:
                self._consume_once(verdict.rule)
                lease = self._grant(sense, app)
            seq = self._focus_seq
        if verdict.decision is Decision.ASK:
            answer, why = self._prompt(
                sense.value,
                f"turn on the {sense.value}",
                dangerous=False,
                req=None,
                sense=sense,
                app=app,
                seq=seq,
                timeout_s=timeout_s,
            )
            if answer is None or answer.decision is not Decision.ALLOW:
                verdict = _refused(verdict, answer, why)
            else:
                with self._lock:  # the world as it is now, atomically with the grant
                    now_app = self._focus if self._focus_seq != seq and self._focus else app
                    now = self._sense_verdict(sense, now_app)
                    if now.decision is Decision.DENY:
                        verdict = replace(now, reason=f"{now.reason} (re-checked after the answer)")
                    else:
                        verdict = replace(
                            verdict, decision=Decision.ALLOW, reason="user answered allow"
                        )
                        if answer.scope is not Scope.ONCE:
                            self._remember_sense(sense, app, answer.scope)
                        lease = self._grant(sense, now_app)
        if lease is None:
            self._record("lease", sense.value, "deny", verdict.reason, rule=verdict.rule)
            return None
        self._record("lease", sense.value, "allow", verdict.reason, rule=verdict.rule)
        return lease

    def _grant(self, sense: Sense, app: AppContext) -> Lease:
        lease = Lease(sense, app, secrets.token_hex(8))
        self._leases.append(lease)
        return lease

    def revoke(self, lease: Lease, reason: str) -> None:
        """Revoke one lease now (returns once no sample is in progress)."""
        if lease._revoke(reason):
            with self._lock:
                if lease in self._leases:
                    self._leases.remove(lease)
            self._record("revoke", lease.sense.value, "deny", reason)

    def focus_changed(self, app: AppContext) -> list[Lease]:
        """Re-check every lease and pending prompt for the newly focused app; revoke the
        leases and cancel the prompts it now denies."""
        revoked = []
        with self._lock:
            self._focus, self._focus_seq = app, self._focus_seq + 1
            leases = list(self._leases)
            rules_now = self._split()[0]
        for lease in leases:
            verdict = rules.evaluate_sense(lease.sense, app, rules_now, self._workspace)
            if verdict.decision is Decision.DENY:
                self.revoke(lease, f"focus moved to an excluded app ({verdict.rule})")
                revoked.append(lease)
            else:
                lease.app = app
        self._cancel_pending(lambda p: self._moot(p, app), "focus moved to an excluded app")
        return revoked

    def mute(self, sense: Sense, on: bool = True) -> None:
        """Push-to-mute: revoke the sense's leases, cancel its pending prompts and refuse new
        ones until unmuted."""
        with self._lock:
            if on:
                self._muted.add(sense)
            else:
                self._muted.discard(sense)
            leases = [lease for lease in self._leases if lease.sense is sense]
        if on:
            self._cancel_pending(lambda p: p.sense is sense, f"{sense.value} muted")
            for lease in leases:
                self.revoke(lease, "muted")

    def kill_switch(self, on: bool = True) -> None:
        """Revoke everything, cancel every pending prompt and refuse every sense and tool
        until switched off."""
        with self._lock:
            self._killed = on
            leases = list(self._leases)
        self._record("kill_switch", "all", "deny" if on else "allow", "user kill switch")
        if on:
            self._cancel_pending(lambda p: True, "kill switch")
            for lease in leases:
                self.revoke(lease, "kill switch")

    def _recheck(self) -> None:
        """After a rule change: revoke leases and cancel prompts the rules now deny."""
        with self._lock:
            leases = list(self._leases)
            rules_now = self._split()[0]
        for lease in leases:
            verdict = rules.evaluate_sense(lease.sense, lease.app, rules_now, self._workspace)
            if verdict.decision is Decision.DENY:
                self.revoke(lease, "a rule now denies it")
        self._cancel_pending(lambda p: self._moot(p, None), "a rule now denies it")

    # --- tools ---------------------------------------------------------------------------

    def explain_tool(self, req: ToolRequest) -> Verdict:
        """What ``authorize`` would decide now, before any prompt (no record)."""
        with self._lock:
            return self._tool_verdict(req)

    def _tool_verdict(self, req: ToolRequest) -> Verdict:
        if self._killed:
            return Verdict(Decision.DENY, None, "kill switch is on", Risk.DANGEROUS)
        if _nested_deeper(req.args, MAX_ARG_DEPTH):  # before any code that might recurse
            reason = f"malformed request: arguments nested more than {MAX_ARG_DEPTH} levels deep"
            return Verdict(Decision.DENY, None, reason, Risk.DANGEROUS)
        # The same tuple object for every decision until the rules change: rules.py caches
        # its compiled index by the identity of the rules it is given.
        plain, remembered = self._split()
        exact = [r for r in remembered if r.tool == literal_glob(req.tool)]
        if exact:
            key = _exact_path(req)
            exact = [r for r in exact if key is not None and r.path == key]
            return rules.evaluate_tool(req, (*plain, *exact))
        return rules.evaluate_tool(req, plain)

    def authorize(self, req: ToolRequest, timeout_s: float | None = None) -> Verdict:
        """Decide a tool request, asking the user when the rules say so; recorded."""
        with self._lock:
            verdict = self._tool_verdict(req)
            if verdict.decision is Decision.ALLOW:
                self._consume_once(verdict.rule)  # atomically with the decision
            seq = self._focus_seq
        if verdict.decision is Decision.ASK:
            verdict = self._ask_tool(req, verdict, seq, timeout_s)
        self._record(
            "decision",
            req.tool,
            verdict.decision.value,
            verdict.reason,
            rule=verdict.rule,
            args=req.args,
        )
        return verdict

    def _ask_tool(
        self, req: ToolRequest, asked: Verdict, seq: int, timeout_s: float | None
    ) -> Verdict:
        dangerous = asked.risk is Risk.DANGEROUS
        answer, why = self._prompt(
            req.tool,
            asked.reason,
            dangerous=dangerous,
            req=req,
            sense=None,
            app=req.app,
            seq=seq,
            timeout_s=timeout_s,
        )
        if answer is None or answer.decision is not Decision.ALLOW:
            return _refused(asked, answer, why)
        with self._lock:  # the world as it is now, atomically with remembering the answer
            now = self._tool_verdict(req)
            if (
                self._focus_seq != seq
                and self._focus is not None
                and now.decision is not Decision.DENY
            ):
                now = self._tool_verdict(replace(req, app=self._focus))
            if now.decision is Decision.DENY:
                return replace(now, reason=f"{now.reason} (re-checked after the answer)")
            if answer.scope is not Scope.ONCE and not dangerous and now.decision is Decision.ASK:
                self._remember_tool(req, answer.scope)
        return replace(asked, decision=Decision.ALLOW, reason="user answered allow")

    # --- prompts -------------------------------------------------------------------------

    def _prompt(
        self,
        subject: str,
        summary: str,
        *,
        dangerous: bool,
        req: ToolRequest | None,
        sense: Sense | None,
        app: AppContext,
        seq: int,
        timeout_s: float | None,
    ) -> tuple[Answer | None, str]:
        """File a prompt and wait: (the answer, "") or (None, why there is none)."""
        broker = self.broker
        moot: list[str] = []

        def admit(prompt: Prompt) -> str | None:
            """Registered before anyone sees it; moot if the state changed since the decision."""
            with self._lock:
                self._pending[prompt.id] = _Pending(prompt, sense, app, req, seq)
                if sense is not None and sense in self._muted:
                    moot.append(f"{sense.value} muted")
                elif self._killed:
                    moot.append("kill switch")
            return moot[0] if moot else None

        if broker is None:
            return None, "no one to ask"
        prompt = broker.file(subject, summary, dangerous, req, sense, admit=admit)
        if prompt is None:
            return None, "no one to ask"
        if moot:  # cancelled before anyone saw it
            self._record("cancel", subject, "deny", f"prompt cancelled: {moot[0]}")
        try:
            prompt.wait(self.timeout_s if timeout_s is None else timeout_s)
            answer = broker.settle(prompt)
        finally:
            with self._lock:
                self._pending.pop(prompt.id, None)
        if prompt.cancelled is not None:
            return None, f"prompt cancelled ({prompt.cancelled})"
        if answer is None:
            return None, "no answer in time"
        self._record(
            "answer", subject, answer.decision.value, f"user answered ({answer.scope.value})"
        )
        if answer.decision is Decision.ASK:
            return None, "invalid answer"
        return answer, ""

    def _moot(self, p: _Pending, app: AppContext | None) -> bool:
        """Would the gate deny this pending prompt's request now, with ``app`` focused (None:
        the app focused since the prompt was filed, else the one it was filed for)?"""
        with self._lock:
            if app is None:
                moved = self._focus_seq != p.focus_seq and self._focus is not None
                app = self._focus if moved and self._focus is not None else p.app
            if p.sense is not None:
                return self._sense_verdict(p.sense, app).decision is Decision.DENY
            if p.request is None:
                return False
            if self._tool_verdict(p.request).decision is Decision.DENY:
                return True
            return self._tool_verdict(replace(p.request, app=app)).decision is Decision.DENY

    def _cancel_pending(self, which: Callable[[_Pending], bool], reason: str) -> None:
        with self._lock:
            pending = list(self._pending.values())
        for p in pending:
            if which(p):
                self._cancel_one(p, reason)

    def _cancel_one(self, p: _Pending, reason: str) -> None:
        if self.broker is not None and self.broker.cancel(p.prompt.id, reason):
            self._record("cancel", p.prompt.subject, "deny", f"prompt cancelled: {reason}")

    # --- remembered answers ------------------------------------------------------------

    def _remember_tool(self, req: ToolRequest, scope: Scope) -> None:
        """An "allow for the session / always" answer as a rule exactly as narrow as the
        request (caller holds the lock); requests no rule describes exactly ask again."""
        spec = catalog.lookup(req.tool)
        if spec is None or spec.capability is Capability.MCP:
            return  # unknown tool or opaque MCP arguments: no rule is that narrow
        key = _exact_path(req)
        if key is None:
            return  # several paths: no single rule is that narrow
        rule = Rule(
            f"{REMEMBERED}{req.tool}:{secrets.token_hex(4)}",
            Decision.ALLOW,
            tool=literal_glob(req.tool),
            path=key,
            workspace=literal_glob(os.path.realpath(req.workspace)),
            scope=scope,
        )
        (self._session if scope is Scope.SESSION else self._user).append(rule)
        self._invalidate()

    def _remember_sense(self, sense: Sense, app: AppContext, scope: Scope) -> None:
        if not app.app_id:
            return  # no app id to bind the answer to: ask again next time
        rule = Rule(
            f"{REMEMBERED}{sense.value}:{secrets.token_hex(4)}",
            Decision.ALLOW,
            sense=sense,
            app=literal_glob(app.app_id.lower()),
            scope=scope,
        )
        (self._session if scope is Scope.SESSION else self._user).append(rule)
        self._invalidate()

    def _record(
        self,
        kind: str,
        subject: str,
        decision: str,
        reason: str,
        *,
        rule: str | None = None,
        args: object = None,
    ) -> None:
        if self.audit is not None:
            self.audit.append(kind, subject, decision, reason, rule=rule, args=args)


def _nested_deeper(value: object, limit: int) -> bool:
    """True when ``value`` nests containers more than ``limit`` deep (iterative: a
    5,000-deep argument costs a loop, never the Python stack)."""
    stack: list[tuple[object, int]] = [(value, 0)]
    seen: set[int] = set()
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping | list | tuple):
            if depth >= limit:
                return True
            if id(item) in seen:  # a container met twice: shared, or a cycle
                continue
            seen.add(id(item))
            children = item.values() if isinstance(item, Mapping) else item
            stack.extend((child, depth + 1) for child in children)
    return False


def _exact_path(req: ToolRequest) -> str | None:
    """The request's one path as an escaped literal ("" for none; None for several or a
    malformed request): workspace-relative inside it, absolute and resolved outside."""
    f = rules.facts(req)
    if f.problem or len(f.paths) > 1:
        return None
    if not f.paths:
        return ""
    p = f.paths[0]
    return literal_glob(p.relative if p.inside else str(p.resolved))


def _refused(asked: Verdict, answer: Answer | None, why: str) -> Verdict:
    if answer is not None and answer.decision is Decision.DENY:
        return replace(asked, decision=Decision.DENY, reason="user answered deny")
    return replace(asked, decision=Decision.DENY, reason=f"{asked.reason}; {why}")
