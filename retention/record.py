"""Retention in the record of processing, Art. 30(1)(f) (PM-VI-1, PM-VI-2).

The record lives in `inventory.ropa`, which may not import this app; RetentionConfig.ready() registers
`retention_by_category` with `ropa.register_retention_source`. One query, whatever the number of rules.

What a category's line says: its enabled category-wide rule ("P180D delete from created"); otherwise a
rule still awaiting the DPO's confirmation ("rule awaiting confirmation: ..."), otherwise "not set"; then
each store-specific rule ("in django-chat: ..."), since a store's rule wins over the category's there.
A rule the DPO confirmed and later disabled says nothing: it does not run.
"""

from __future__ import annotations

from .models import RetentionRule

NOT_SET = "not set"
AWAITING = "rule awaiting confirmation"


def rule_summary(rule: RetentionRule) -> str:
    """`P180D delete from created`: the period, the action, and what the period counts from."""
    start = rule.timestamp_field if rule.counts_from == RetentionRule.CountsFrom.TIMESTAMP else rule.counts_from.replace("_", " ")
    return f"{rule.period} {rule.action} from {start}"


def _state(rule: RetentionRule) -> str:
    if rule.enabled:
        return "enabled"
    return "awaiting confirmation" if rule.confirmed_at is None else "disabled"


def _scope_text(rules: list[RetentionRule]) -> str | None:
    """The line for one scope (the category, or one store of it): the enabled rule, else one awaiting."""
    enabled = [r for r in rules if r.enabled]
    if enabled:
        return rule_summary(enabled[0])
    awaiting = [r for r in rules if not r.enabled and r.confirmed_at is None]
    if awaiting:
        return f"{AWAITING}: " + " or ".join(rule_summary(r) for r in awaiting)
    return None


def retention_by_category() -> dict[str, dict]:
    """category code -> {"text": the (f) line, "rules": [each rule of the category as plain data]}."""
    by_category: dict[str, dict[str | None, list[RetentionRule]]] = {}
    rows: dict[str, list[dict]] = {}
    for rule in RetentionRule.objects.select_related("category", "store").order_by("category__code", "store__code", "code"):
        store = rule.store.code if rule.store_id else None
        by_category.setdefault(rule.category.code, {}).setdefault(store, []).append(rule)
        rows.setdefault(rule.category.code, []).append(
            {
                "code": rule.code,
                "name": rule.name,
                "store": store,
                "period": rule.period,
                "counts_from": rule.counts_from,
                "timestamp_field": rule.timestamp_field,
                "action": rule.action,
                "state": _state(rule),
                "summary": rule_summary(rule),
            }
        )
    result = {}
    for code, scopes in by_category.items():
        parts = [_scope_text(scopes.get(None, [])) or NOT_SET]
        for store, rules in scopes.items():
            text = _scope_text(rules) if store is not None else None
            if text:
                parts.append(f"in {store}: {text}")
        result[code] = {"text": "; ".join(parts), "rules": rows[code]}
    return result
