"""One answer to "may we process this subject's data for this purpose?" (PM-II-2, PM-II-5, PM-III-6, PM-IX-5, PM-IX-6).

`is_processing_allowed(subject, purpose)` is the only place the rules live; the consent API, the cookie
check, the rights requests and the de-identified dataset job all ask it.

The rules, in the order they are applied (the table test in tests/consents/test_decisions.py covers them):

1. The purpose is a consent-purpose code (what a person is asked: `marketing-communications`,
   `cookies-analytics` ...) or a register purpose code (`marketing`, `model-improvement` ...), or the
   instance. A code is looked up as a consent purpose first. A consent purpose takes its lawful basis from
   the register purpose it serves; for a register purpose, the consent purposes that serve it and are no
   cookie category (cookie choices answer for the cookies only) carry the consent. Unknown codes and unknown
   subjects raise `UnknownPurpose` / `UnknownSubject`: a typo must never read as "no".
2. The jurisdiction is the subject's (`inventory.selectors.jurisdiction_for_subject`: region, then country,
   else DEFAULT, which is opt-in), and the bases are the register's for it (`purpose_bases_for`: rows for
   the jurisdiction replace the general ones).
3. Strictly necessary consent purposes (the necessary cookie category, anything flagged necessary) are
   always allowed: they cannot be refused, and keeping a session alive is storage, which a restriction
   permits (Art. 18(2)). `restricted` still says whether a restriction covers them.
4. An active restriction or objection that covers the register purpose (purpose empty = every purpose)
   means no, whatever the basis and even over a given consent; an objection to direct marketing always
   wins (Art. 21(3)) and says so.
5. Functionality and analytics cookies need consent in every jurisdiction (the strictest rule wins).
6. No basis at all for the jurisdiction: no (fail closed).
7. The bases include `consent` (strict reading: one consent row is enough to make the purpose consent-based
   there): allowed only with a current `given` for every consent purpose that carries it. A `given` whose
   purpose has a lifetime counts as expired once `effective_at + lifetime` has passed, even before the
   expiry job writes its `expired` event. A register purpose nothing collects consent for: no.
8. Every basis is a choice the subject can undo without asking us (`notice-opt-out`, the deemed-consent
   bases of Singapore): allowed unless a current `refused` or `withdrawn` says they opted out (an
   expired consent is no opt-out).
9. Any other basis (contract, legal obligation, legitimate interests ...): allowed. When the question named
   a consent purpose and the subject's current answer to exactly that is `refused` or `withdrawn`, no:
   we asked and they said no.

The cache. Answers live in Django's cache (Redis when REDIS_URL is set, else a per-process memory) under a
key made of the subject_ref, the subject's `ConsentChain.version`, the subject's country and region, and
the purpose as asked. The version is read from the DATABASE on every check, in one query with the account
(`selectors.subject_snapshots`), and that query runs before any read of consents or restrictions. Every
change to a subject's consents, restrictions or visitor links bumps the version inside the changing
transaction. So:
- an answer is stored under a version no newer than the data it was computed from (the version was read
  first; later statements see the same or newer committed data), and
- a check that starts after a change has committed reads the new version, so it either computes afresh or
  finds an answer computed after the change. A check that starts after a withdrawal's commit therefore
  answers "not allowed"; old answers are never deleted, only never read again (they expire by TTL).
Answers that would change by the clock alone (a consent reaching the end of its lifetime, a restriction
starting or ending) are cached no longer than that moment. Register edits (bases, jurisdictions, consent
purposes' flags and lifetimes) do not bump versions: they reach cached answers within
`CONSENT_CACHE_SECONDS` (0 turns the cache off; `decision_cache_clear()` makes an edit count at once). A
check with an explicit `at` is never cached. A cache that fails is skipped: the database alone gives the
same answer, more slowly. With Redis, each process also keeps recent answers in memory under the same
versioned keys (`_LocalCopies`): as fresh as Redis by the same argument, one round trip fewer.
"""

from __future__ import annotations

import datetime
import logging
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache
from django.utils import timezone

from inventory.models import Jurisdiction, Purpose
from inventory.selectors import jurisdiction_for, purpose_bases_for

from . import selectors
from .lapse import consent_lapses_at
from .models import ConsentEvent, ConsentPurpose, CookieCategory, ProcessingRestriction

logger = logging.getLogger(__name__)

Action = ConsentEvent.Action

CONSENT = "consent"
# Bases under which the subject's own "no" in the ledger stops the processing without any request to us.
CHOICE_BASES = frozenset({"notice-opt-out", "deemed-consent-conduct", "deemed-consent-contract"})
# Cookie categories that need consent wherever the subject lives (ePrivacy Art. 5(3) is the strictest rule).
OPT_IN_COOKIES = frozenset({CookieCategory.FUNCTIONALITY, CookieCategory.ANALYTICS})
# Which basis `Decision.basis` names when several apply and none of the rules above picked one.
BASIS_ORDER = ("contract", "legal-obligation", "vital-interests", "public-task", "legitimate-interests")
DIRECT_MARKETING_DPV = "dpv:DirectMarketing"

CACHE_PREFIX = "consents:decision:2"
_CODE = re.compile(r"^[-a-zA-Z0-9_]{1,64}$")


class DecisionError(LookupError):
    """The question cannot be answered: it names something that does not exist."""


class UnknownSubject(DecisionError):
    """No account has this subject_ref (or the value is no subject_ref at all)."""


class UnknownPurpose(DecisionError):
    """Neither a consent purpose nor a register purpose has this code."""


@dataclass(frozen=True)
class Decision:
    """The answer. `bool(decision)` is `allowed`. `basis` is the LawfulBasis code that decided (None when the
    register has none); `since` when the deciding event, expiry or restriction took effect (None when the
    answer follows from the register alone); `restricted` whether a restriction or objection covers it."""

    allowed: bool
    basis: str | None
    since: datetime.datetime | None
    restricted: bool
    reason: str
    jurisdiction: str = ""

    def __bool__(self) -> bool:
        return self.allowed

    def as_dict(self) -> dict:
        """JSON-ready: `since` as ISO 8601 in UTC. (Spelled out: `dataclasses.asdict` deep-copies, and every
        API answer goes through here.)"""
        return {
            "allowed": self.allowed,
            "basis": self.basis,
            "since": self.since.astimezone(datetime.UTC).isoformat() if self.since else None,
            "restricted": self.restricted,
            "reason": self.reason,
            "jurisdiction": self.jurisdiction,
        }


def is_processing_allowed(subject, purpose, *, at: datetime.datetime | None = None) -> Decision:
    """May `subject` (a User, or a subject_ref as UUID or str) be processed for `purpose` (a consent-purpose
    or register purpose code, or the instance) now, or at `at`? See the module docstring for the rules.

    Raises UnknownSubject or UnknownPurpose.
    """
    result = is_processing_allowed_many([(subject, purpose)], at=at)[0]
    if isinstance(result, DecisionError):
        raise result
    return result


def is_processing_allowed_many(checks: Iterable[tuple], *, at: datetime.datetime | None = None) -> list[Decision | DecisionError]:
    """The answers to many (subject, purpose) questions, in order; an unanswerable one gives its error
    instead of raising. One query reads every subject and chain version, one cache round trip reads the
    cached answers; only the misses touch the register and the ledger."""
    checks = list(checks)
    results: list[Decision | DecisionError | None] = [None] * len(checks)
    refs: list[uuid.UUID | None] = []
    for index, (subject, _purpose) in enumerate(checks):
        try:
            refs.append(_subject_ref(subject))
        except UnknownSubject as error:
            refs.append(None)
            results[index] = error
    snapshots = selectors.subject_snapshots(subject_refs=[ref for ref in refs if ref is not None])

    keys: dict[int, str] = {}
    for index, ((_subject, purpose), ref) in enumerate(zip(checks, refs, strict=True)):
        if ref is None:
            continue
        if ref not in snapshots:
            results[index] = UnknownSubject(f"No account has subject_ref {ref}.")
            continue
        try:
            purpose_key = _purpose_key(purpose)
        except UnknownPurpose as error:
            results[index] = error
            continue
        if at is None and settings.CONSENT_CACHE_SECONDS > 0:
            keys[index] = _cache_key(snapshots[ref], purpose_key)

    now = timezone.now()
    cached = _cache_get_many(set(keys.values())) if keys else {}
    context = _Context()
    for index, (_subject, purpose) in enumerate(checks):
        if results[index] is not None:
            continue
        key = keys.get(index)
        entry = cached.get(key) if key else None
        if entry is not None and entry.get("valid_until", 0) > now.timestamp():
            results[index] = _decision_from_cache(entry)
            continue
        try:
            decision, valid_until = _evaluate(context, snapshots[refs[index]], purpose, at=at or now, current=at is None)
        except UnknownPurpose as error:
            results[index] = error
            continue
        results[index] = decision
        if key is not None:
            cached[key] = _cache_store(key, decision, valid_until=valid_until, now=now)  # repeats in a batch hit it
    return results  # type: ignore[return-value]


# --- Inputs ---------------------------------------------------------------------------------------------


def _subject_ref(subject) -> uuid.UUID:
    if isinstance(subject, uuid.UUID):
        return subject
    ref = getattr(subject, "subject_ref", None)
    if isinstance(ref, uuid.UUID):
        return ref
    try:
        return uuid.UUID(str(subject))
    except (TypeError, ValueError, AttributeError):
        raise UnknownSubject(f"{subject!r} is not a subject_ref.") from None


def _purpose_key(purpose) -> str:
    """How the question names the purpose, as a cache-key part; raises UnknownPurpose for what is no code."""
    if isinstance(purpose, ConsentPurpose):
        return f"c={purpose.code}"
    if isinstance(purpose, Purpose):
        return f"p={purpose.code}"
    if isinstance(purpose, str) and _CODE.match(purpose):
        return f"s={purpose}"
    raise UnknownPurpose(f"{purpose!r} is not a purpose code.")


@dataclass
class _Target:
    """The purpose asked about, resolved: the register purpose, and the consent purpose if one was named."""

    purpose: Purpose
    consent_purpose: ConsentPurpose | None


@dataclass
class _Context:
    """Register reads memoised for one call (a batch asks about the same purposes for many subjects)."""

    targets: dict = field(default_factory=dict)
    jurisdictions: dict = field(default_factory=dict)
    bases: dict = field(default_factory=dict)
    carriers: dict = field(default_factory=dict)

    def target(self, purpose) -> _Target:
        key = _purpose_key(purpose)
        if key not in self.targets:
            self.targets[key] = _resolve(purpose)
        return self.targets[key]

    def jurisdiction(self, country: str, region: str) -> Jurisdiction | None:
        if (country, region) not in self.jurisdictions:
            try:
                found = jurisdiction_for(country=country, region=region)
            except Jurisdiction.DoesNotExist:
                found = None  # no DEFAULT in the register: no bases, so nothing but necessary is allowed
            self.jurisdictions[(country, region)] = found
        return self.jurisdictions[(country, region)]

    def basis_codes(self, purpose: Purpose, jurisdiction: Jurisdiction | None) -> list[str]:
        key = (purpose.pk, jurisdiction.pk if jurisdiction else None)
        if key not in self.bases:
            rows = purpose_bases_for(purpose=purpose, jurisdiction=jurisdiction) if jurisdiction else []
            self.bases[key] = sorted({row.basis.code for row in rows})
        return self.bases[key]

    def carriers_of(self, target: _Target) -> list[ConsentPurpose]:
        """The consent purposes whose consent counts for the question."""
        if target.consent_purpose is not None:
            return [target.consent_purpose]
        if target.purpose.pk not in self.carriers:
            self.carriers[target.purpose.pk] = list(
                ConsentPurpose.objects.filter(purpose=target.purpose, is_active=True, cookie_category="").order_by("pk")
            )
        return self.carriers[target.purpose.pk]


def _resolve(purpose) -> _Target:
    if isinstance(purpose, ConsentPurpose):
        return _Target(purpose=purpose.purpose, consent_purpose=purpose)
    if isinstance(purpose, Purpose):
        return _Target(purpose=purpose, consent_purpose=None)
    consent_purpose = ConsentPurpose.objects.select_related("purpose").filter(code=purpose).first()
    if consent_purpose is not None:
        return _Target(purpose=consent_purpose.purpose, consent_purpose=consent_purpose)
    register_purpose = Purpose.objects.filter(code=purpose).first()
    if register_purpose is None:
        raise UnknownPurpose(f"No consent purpose or register purpose has the code {purpose!r}.")
    return _Target(purpose=register_purpose, consent_purpose=None)


# --- The rules ----------------------------------------------------------------------------------------


def _primary(codes: list[str]) -> str | None:
    for code in BASIS_ORDER:
        if code in codes:
            return code
    return codes[0] if codes else None


def _is_direct_marketing(purpose: Purpose) -> bool:
    return purpose.dpv == DIRECT_MARKETING_DPV or purpose.code == "marketing"


def _evaluate(
    context: _Context, snapshot: selectors.SubjectSnapshot, purpose, *, at: datetime.datetime, current: bool
) -> tuple[Decision, datetime.datetime]:
    """The decision at `at`, and the moment until which it cannot change by the clock alone. `current`: `at`
    is now, so the state cache is read; otherwise the ledger as of `at`."""
    target = context.target(purpose)
    jurisdiction = context.jurisdiction(snapshot.country, snapshot.region)
    where = jurisdiction.code if jurisdiction else ""
    codes = context.basis_codes(target.purpose, jurisdiction)
    consent_purpose = target.consent_purpose
    cookie_opt_in = consent_purpose is not None and consent_purpose.cookie_category in OPT_IN_COOKIES
    if cookie_opt_in or CONSENT in codes:
        mode, basis = "consent", CONSENT
    elif codes and all(code in CHOICE_BASES for code in codes):
        mode, basis = "opt-out", _primary(codes)
    else:
        mode, basis = "basis", _primary(codes)

    restrictions = selectors.restrictions_covering(subject_id=snapshot.user_id, purpose_id=target.purpose.pk, at=at)
    active = [r for r in restrictions if r.starts_at <= at]
    # The clock changes the answer when a restriction starts or ends, or a consent reaches its lifetime's end.
    moments = [r.starts_at for r in restrictions if r.starts_at > at] + [r.ends_at for r in active if r.ends_at]
    far = at + datetime.timedelta(days=3650)

    def decide(allowed: bool, reason: str, *, since=None, decided_basis=basis) -> tuple[Decision, datetime.datetime]:
        decision = Decision(
            allowed=allowed,
            basis=decided_basis,
            since=since,
            restricted=bool(active),
            reason=reason,
            jurisdiction=where,
        )
        return decision, min(moments, default=far)

    necessary = consent_purpose is not None and (
        consent_purpose.is_necessary or consent_purpose.cookie_category == CookieCategory.NECESSARY
    )
    if necessary:
        note = " (a restriction is recorded; necessary processing and storage continue)" if active else ""
        return decide(True, f"Strictly necessary: always allowed{note}.", decided_basis=_primary(codes))

    if active:
        objection = next((r for r in active if r.kind == ProcessingRestriction.Kind.OBJECTION), None)
        since = min(r.starts_at for r in active)
        if objection is not None and _is_direct_marketing(target.purpose):
            reason = "The subject objected to direct marketing (Art. 21(3)); this wins over any consent."
            return decide(False, reason, since=since)
        kinds = " and ".join(sorted({r.get_kind_display().lower() for r in active}))
        return decide(False, f"An active {kinds} covers {target.purpose.code}.", since=since)

    if mode != "consent" and not codes:
        return decide(False, f"The register gives {target.purpose.code} no lawful basis in {where or 'any jurisdiction'}.")

    carriers = context.carriers_of(target)
    states = selectors.consent_states(
        subject_ref=snapshot.subject_ref,
        purpose_ids=[cp.pk for cp in carriers],
        at=None if current else at,
    )
    asked = f"{consent_purpose.code}" if consent_purpose else target.purpose.code

    if mode == "consent":
        prefix = "Cookie category needs consent in every jurisdiction" if cookie_opt_in else f"Consent-based in {where}"
        if not carriers:
            return decide(False, f"{prefix}, and no consent purpose collects consent for {asked}.")
        given_at: list[datetime.datetime] = []
        for carrier in carriers:
            if carrier.is_necessary:
                continue
            state = states.get(carrier.pk)
            if state is None:
                return decide(False, f"{prefix}; no consent to {carrier.code} is recorded.")
            if state.action != Action.GIVEN:
                return decide(False, f"{prefix}; consent to {carrier.code} is {state.action}.", since=state.effective_at)
            ends = consent_lapses_at(given_at=state.effective_at, lifetime=carrier.lifetime)
            if ends is not None and ends <= at:
                return decide(False, f"{prefix}; consent to {carrier.code} expired (lifetime {carrier.lifetime}).", since=ends)
            if ends is not None:
                moments.append(ends)
            given_at.append(state.effective_at)
        return decide(True, f"{prefix}; consent is given.", since=max(given_at, default=None))

    opted_out = [
        (carrier, states[carrier.pk])
        for carrier in carriers
        if carrier.pk in states and states[carrier.pk].action in (Action.REFUSED, Action.WITHDRAWN)
    ]
    if mode == "opt-out":
        if opted_out:
            carrier, state = opted_out[0]
            reason = f"{basis} in {where}: the subject opted out ({carrier.code} {state.action})."
            return decide(False, reason, since=state.effective_at)
        given = [s.effective_at for s in states.values() if s.action == Action.GIVEN]
        return decide(True, f"{basis} in {where}: no opt-out is recorded.", since=max(given, default=None))

    if consent_purpose is not None and opted_out:
        _carrier, state = opted_out[0]
        return decide(False, f"The subject {state.action} {consent_purpose.code} when asked.", since=state.effective_at)
    return decide(True, f"{basis} in {where}; no restriction or objection.")


# --- The cache ----------------------------------------------------------------------------------------


def _cache_key(snapshot: selectors.SubjectSnapshot, purpose_key: str) -> str:
    version = "none" if snapshot.chain_version is None else snapshot.chain_version
    return f"{CACHE_PREFIX}:{snapshot.subject_ref.hex}:{version}:{snapshot.country}:{snapshot.region}:{purpose_key}"


class _LocalCopies:
    """Answers this process read or computed recently, in front of the shared cache (Redis).

    Safe for the same reason the shared cache is: a key carries the chain version this very check read
    from the database, so a copy here is exactly as fresh as the one in Redis, and it saves a round trip.
    Each copy expires when its Redis entry does (`stored_at` + CONSENT_CACHE_SECONDS, or `valid_until` if
    sooner). Bounded: the least recently used copies go first. Not used when the shared cache is itself a
    per-process memory (no REDIS_URL)."""

    def __init__(self, size: int):
        self.size = size
        self.entries: OrderedDict[str, tuple[dict, float]] = OrderedDict()
        self.lock = threading.Lock()

    def get_many(self, keys: set[str], now: float) -> dict:
        found = {}
        with self.lock:
            for key in keys:
                copy = self.entries.get(key)
                if copy is None:
                    continue
                if copy[1] <= now:
                    del self.entries[key]
                    continue
                self.entries.move_to_end(key)
                found[key] = copy[0]
        return found

    def put(self, key: str, entry: dict) -> None:
        expires = min(entry["valid_until"], entry["stored_at"] + settings.CONSENT_CACHE_SECONDS)
        with self.lock:
            self.entries[key] = (entry, expires)
            self.entries.move_to_end(key)
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()


LOCAL_COPIES = _LocalCopies(size=10_000)


def _local_copies() -> _LocalCopies | None:
    return None if isinstance(caches["default"], LocMemCache) else LOCAL_COPIES


def decision_cache_clear() -> None:
    """Forget every cached answer, shared and this process's (after a register edit that must count at once;
    tests). Only the answers: on Redis their keys are deleted by prefix, never the whole database, which
    may hold the task queue too. Other processes drop their local copies within CONSENT_CACHE_SECONDS."""
    LOCAL_COPIES.clear()
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        client = backend._cache.get_client(write=True)
        keys = list(client.scan_iter(match=backend.make_key(CACHE_PREFIX) + ":*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    else:
        cache.clear()  # locmem, the only other backend the settings configure: this process's memory alone


def _cache_get_many(keys: set[str]) -> dict:
    local = _local_copies()
    found = local.get_many(keys, timezone.now().timestamp()) if local else {}
    missing = keys - set(found)
    if not missing:
        return found
    try:
        shared = cache.get_many(missing)
    except Exception:  # the cache is an optimisation: the database alone gives the same answer
        logger.warning("consent decision cache unavailable; answering from the database", exc_info=True)
        return found
    if local:
        for key, entry in shared.items():
            local.put(key, entry)
    return found | shared


def _cache_store(key: str, decision: Decision, *, valid_until: datetime.datetime, now: datetime.datetime) -> dict | None:
    """Cache an answer until `valid_until`, at most CONSENT_CACHE_SECONDS; returns the entry (None: not cached)."""
    timeout = min(settings.CONSENT_CACHE_SECONDS, int((valid_until - now).total_seconds()))
    if timeout < 1:
        return None
    entry = decision.as_dict() | {"valid_until": valid_until.timestamp(), "stored_at": now.timestamp()}
    local = _local_copies()
    if local:
        local.put(key, entry)
    try:
        cache.set(key, entry, timeout=timeout)
    except Exception:
        logger.warning("consent decision cache unavailable; answer not cached", exc_info=True)
    return entry


def _decision_from_cache(entry: dict) -> Decision:
    since = entry["since"]
    return Decision(
        allowed=entry["allowed"],
        basis=entry["basis"],
        since=datetime.datetime.fromisoformat(since) if since else None,
        restricted=entry["restricted"],
        reason=entry["reason"],
        jurisdiction=entry["jurisdiction"],
    )
