"""The one gate every sense and every tool passes.

- ``open_sense`` returns a ``Lease`` that capture code must hold around every sample it takes
  (``with lease.hold(): grab()``). ``revoke`` takes the same lock, so once it returns no sample
  is being taken and none will be: a revoked lease stops capture *before* the next frame.
  Leases are revoked by mute, by focus moving to an app the rules exclude, by the panel, and by
  the kill switch.
- ``authorize`` decides a tool request: rules first; "ask" goes to the prompt broker; no
  answer before the timeout, or no UI, means deny. Dangerous requests are explicit-only: an
  answer of "always" for them counts once.
- ``explain_*`` say what would be decided right now, without prompting or recording.
- Everything decided is appended to the audit log.

Rules change only through ``add_rule``/``remove_rule`` and the user's own answers, i.e.
through calls the UI makes on the user's behalf: nothing in a request's arguments, a tool's
output or the screen is ever read as an instruction.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from permissions import presets, rules, settings
from permissions.audit import AuditLog
from permissions.broker import DEFAULT_TIMEOUT_S, Answer, PromptBroker
from permissions.errors import LeaseRevokedError
from permissions.model import AppContext, Decision, Risk, Rule, Scope, Sense, ToolRequest, Verdict


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
    ) -> None:
        self._lock = threading.RLock()
        self._builtin = presets.builtin_rules(protected_dirs)
        self._user = list(user_rules)
        self._session: list[Rule] = []
        self._leases: list[Lease] = []
        self._muted: set[Sense] = set()
        self._killed = False
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
        """Presets, then the user's saved rules, then this session's answers."""
        with self._lock:
            return [*self._builtin, *self._user, *self._session]

    def add_rule(self, rule: Rule) -> None:
        """Add a user rule (from the settings UI); session-scoped rules are not persisted."""
        if rule.id.startswith("preset:") or rule.builtin:
            raise ValueError("preset rules cannot be added or replaced")
        with self._lock:
            target = self._session if rule.scope is Scope.SESSION else self._user
            target.append(rule)
        self._record(
            "rule",
            rule.tool or (rule.sense.value if rule.sense else ""),
            rule.decision.value,
            "user added a rule",
            rule=rule.id,
        )
        self._recheck_leases()

    def remove_rule(self, rule_id: str) -> bool:
        """Remove a user or session rule by id (presets cannot be removed)."""
        with self._lock:
            before = len(self._user) + len(self._session)
            self._user = [r for r in self._user if r.id != rule_id]
            self._session = [r for r in self._session if r.id != rule_id]
            removed = before != len(self._user) + len(self._session)
        if removed:
            self._record("rule", rule_id, "removed", "user removed a rule", rule=rule_id)
            self._recheck_leases()
        return removed

    def user_rules(self) -> tuple[Rule, ...]:
        """The rules to persist (scope ``always``)."""
        with self._lock:
            return tuple(self._user)

    # --- senses --------------------------------------------------------------------------

    def explain_sense(self, sense: Sense, app: AppContext) -> Verdict:
        """What ``open_sense`` would decide now (no prompt, no record)."""
        with self._lock:
            if self._killed:
                return Verdict(Decision.DENY, None, "kill switch is on")
            if sense in self._muted:
                return Verdict(Decision.DENY, None, f"{sense.value} is muted")
            return rules.evaluate_sense(sense, app, self.rules())

    def open_sense(
        self, sense: Sense, app: AppContext, timeout_s: float | None = None
    ) -> Lease | None:
        """A lease to capture ``sense`` while ``app`` is focused, or None when denied."""
        verdict = self.explain_sense(sense, app)
        if verdict.decision is Decision.ASK:
            verdict = self._ask(
                sense.value,
                summary=f"turn on the {sense.value}",
                dangerous=False,
                req=None,
                asked=verdict,
                timeout_s=timeout_s,
            )
        if verdict.decision is not Decision.ALLOW:
            self._record("lease", sense.value, "deny", verdict.reason, rule=verdict.rule)
            return None
        lease = Lease(sense, app, secrets.token_hex(8))
        with self._lock:
            self._leases.append(lease)
        self._record("lease", sense.value, "allow", verdict.reason, rule=verdict.rule)
        return lease

    def revoke(self, lease: Lease, reason: str) -> None:
        """Revoke one lease now (returns once no sample is in progress)."""
        if lease._revoke(reason):
            with self._lock:
                if lease in self._leases:
                    self._leases.remove(lease)
            self._record("revoke", lease.sense.value, "deny", reason)

    def focus_changed(self, app: AppContext) -> list[Lease]:
        """Re-check every lease for the newly focused app; revoke those now denied."""
        revoked = []
        with self._lock:
            leases = list(self._leases)
        for lease in leases:
            verdict = rules.evaluate_sense(lease.sense, app, self.rules())
            if verdict.decision is Decision.DENY:
                self.revoke(lease, f"focus moved to an excluded app ({verdict.rule})")
                revoked.append(lease)
            else:
                lease.app = app
        return revoked

    def mute(self, sense: Sense, on: bool = True) -> None:
        """Push-to-mute: revoke the sense's leases and refuse new ones until unmuted."""
        with self._lock:
            if on:
                self._muted.add(sense)
            else:
                self._muted.discard(sense)
            leases = [lease for lease in self._leases if lease.sense is sense]
        if on:
            for lease in leases:
                self.revoke(lease, "muted")

    def kill_switch(self, on: bool = True) -> None:
        """Revoke everything and refuse every sense and tool until switched off."""
        with self._lock:
            self._killed = on
            leases = list(self._leases)
        self._record("kill_switch", "all", "deny" if on else "allow", "user kill switch")
        if on:
            for lease in leases:
                self.revoke(lease, "kill switch")

    def _recheck_leases(self) -> None:
        with self._lock:
            leases = list(self._leases)
        for lease in leases:
            if rules.evaluate_sense(lease.sense, lease.app, self.rules()).decision is Decision.DENY:
                self.revoke(lease, "a rule now denies it")

    # --- tools ---------------------------------------------------------------------------

    def explain_tool(self, req: ToolRequest) -> Verdict:
        """What ``authorize`` would decide now, before any prompt (no record)."""
        with self._lock:
            if self._killed:
                return Verdict(Decision.DENY, None, "kill switch is on", Risk.DANGEROUS)
            return rules.evaluate_tool(req, self.rules())

    def authorize(self, req: ToolRequest, timeout_s: float | None = None) -> Verdict:
        """Decide a tool request, asking the user when the rules say so; recorded."""
        verdict = self.explain_tool(req)
        if verdict.decision is Decision.ASK:
            dangerous = verdict.risk is Risk.DANGEROUS
            verdict = self._ask(
                req.tool,
                summary=verdict.reason,
                dangerous=dangerous,
                req=req,
                asked=verdict,
                timeout_s=timeout_s,
            )
        self._record(
            "decision",
            req.tool,
            verdict.decision.value,
            verdict.reason,
            rule=verdict.rule,
            args=req.args,
        )
        return verdict

    def _ask(
        self,
        subject: str,
        *,
        summary: str,
        dangerous: bool,
        req: ToolRequest | None,
        asked: Verdict,
        timeout_s: float | None,
    ) -> Verdict:
        broker = self.broker
        prompt = broker.file(subject, summary, dangerous, req) if broker else None
        if broker is None or prompt is None:
            return replace(asked, decision=Decision.DENY, reason=f"{asked.reason}; no one to ask")
        prompt.wait(self.timeout_s if timeout_s is None else timeout_s)
        answer = broker.settle(prompt)
        if answer is None:
            return replace(
                asked, decision=Decision.DENY, reason=f"{asked.reason}; no answer in time"
            )
        self._record(
            "answer", subject, answer.decision.value, f"user answered ({answer.scope.value})"
        )
        if answer.decision is Decision.ALLOW and answer.scope is not Scope.ONCE and not dangerous:
            self._remember(subject, req, answer)
        if answer.decision is Decision.ASK:  # not a valid answer
            return replace(asked, decision=Decision.DENY, reason="invalid answer")
        return replace(
            asked, decision=answer.decision, reason=f"user answered {answer.decision.value}"
        )

    def _remember(self, subject: str, req: ToolRequest | None, answer: Answer) -> None:
        """Turn an "allow for the session / always" answer into a rule as narrow as the request:
        this exact tool, in this workspace, and outside it only for the very paths asked for."""
        rid = f"user:{subject}:{secrets.token_hex(4)}"
        if req is not None:
            workspace = os.path.realpath(req.workspace)
            outside = [p for p in rules.facts(req).paths if not p.inside]
            path = str(outside[0].resolved) if len(outside) == 1 else ""
            if len(outside) > 1:
                return  # several outside paths: no single rule is that narrow; ask next time
            rule = Rule(
                rid,
                Decision.ALLOW,
                tool=req.tool,
                path=path,
                workspace=workspace,
                scope=answer.scope,
            )
        else:
            rule = Rule(rid, Decision.ALLOW, sense=Sense(subject), scope=answer.scope)
        with self._lock:
            (self._session if answer.scope is Scope.SESSION else self._user).append(rule)

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
