"""PM-IX-9: the statutory clock (`requests.deadlines`) against a table of cases per jurisdiction.

The rules are built here with the seed's shapes (not loaded from the seed file, which
test_deadline_seed.py checks), so these cases pin the counting, not the file.
"""

import datetime
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError

from inventory.models import Jurisdiction
from requests import deadlines
from requests.models import ClockStart, DeadlineRule, HoldReason, PeriodUnit, RequestPause, Right, Roll
from tests.factories.inventory import JurisdictionFactory
from tests.factories.requests import DeadlineRuleFactory, RightsRequestFactory

pytestmark = pytest.mark.django_db

SGT = ZoneInfo("Asia/Singapore")
LONDON = ZoneInfo("Europe/London")
M, D, B, H = PeriodUnit.CALENDAR_MONTHS, PeriodUnit.CALENDAR_DAYS, PeriodUnit.BUSINESS_DAYS, PeriodUnit.HOURS


def at(y, mo, d, h=12, mi=0, tz=SGT):
    return datetime.datetime(y, mo, d, h, mi, tzinfo=tz)


def eod(y, mo, d, tz=SGT):
    return datetime.datetime(y, mo, d, 23, 59, 59, 999999, tzinfo=tz)


@pytest.fixture(autouse=True)
def zone(settings):
    settings.DEADLINE_TIME_ZONE = "Asia/Singapore"


@pytest.fixture
def rules(db):
    """The seed's shapes for the jurisdictions the cases use."""

    def rule(code, right="", countries=None, **values):
        jurisdiction = JurisdictionFactory(code=code, countries=countries if countries is not None else [code])
        return DeadlineRuleFactory(jurisdiction=jurisdiction, right=right, **values)

    gdpr = {"period_value": 1, "period_unit": M, "extension_value": 2, "extension_unit": M, "extensions_allowed": 1}
    gdpr["roll"] = Roll.BUSINESS_DAY
    rule("EU", countries=["FR", "DE", "IE"], **gdpr)
    rule("UK", countries=["GB"], clock_starts=ClockStart.VERIFICATION, pauses_for_verification=True, **gdpr)
    # The shape the UK row had before DUAA 2025's art. 12A reading: pauses push by their exact length.
    rule("XP", countries=[], pauses_for_verification=True, **gdpr)
    rule("SG", period_value=30, period_unit=D, roll=Roll.SUNDAY_OR_HOLIDAY)
    for right in (Right.ACCESS, Right.RECTIFICATION, Right.RESTRICTION, Right.WITHDRAW_CONSENT):
        rule("ID", right, period_value=72, period_unit=H)
    rule("CN", period_value=30, period_unit=D)
    rule(
        "US-CA",
        period_value=45,
        period_unit=D,
        extension_value=45,
        extension_unit=D,
        extensions_allowed=1,
        acknowledge_value=10,
        acknowledge_unit=B,
        roll=Roll.BUSINESS_DAY,
    )
    rule(Jurisdiction.DEFAULT, countries=[], period_value=30, period_unit=D)
    # A business-day rule (no holidays) and an hour rule that (wrongly) asks to roll: hours never roll.
    rule("XB", countries=[], period_value=10, period_unit=B, roll=Roll.BUSINESS_DAY)
    rule("XH", countries=[], period_value=24, period_unit=H, roll=Roll.BUSINESS_DAY)
    rule("XM", countries=[], period_value=1, period_unit=M)


CASES = [
    # The examples.
    ("issue: EU Tue 14 Apr 2026 -> Thu 14 May 2026", "EU", Right.ACCESS, at(2026, 4, 14), eod(2026, 5, 14)),
    ("issue: US-CA 2 Mar 2026 -> 16 Apr 2026", "US-CA", Right.ERASURE, at(2026, 3, 2), eod(2026, 4, 16)),
    ("issue: ID Mon 2 Mar 09:00 -> Thu 5 Mar 09:00", "ID", Right.ACCESS, at(2026, 3, 2, 9), at(2026, 3, 5, 9)),
    # Month ends and leap years: the later month's last day when it has no such day.
    ("31 Jan + 1 month -> 28 Feb (2026, no roll)", "XM", Right.ACCESS, at(2026, 1, 31), eod(2026, 2, 28)),
    ("31 Jan + 1 month -> Sat 28 Feb 2026 -> EU rolls to Mon 2 Mar", "EU", Right.ACCESS, at(2026, 1, 31), eod(2026, 3, 2)),
    ("31 Jan + 1 month -> 29 Feb (2028, leap)", "EU", Right.ACCESS, at(2028, 1, 31), eod(2028, 2, 29)),
    ("29 Feb 2028 + 1 month -> 29 Mar", "EU", Right.ACCESS, at(2028, 2, 29), eod(2028, 3, 29)),
    ("31 Mar + 1 month -> 30 Apr", "EU", Right.ACCESS, at(2026, 3, 31), eod(2026, 4, 30)),
    ("15 Dec + 1 month -> 15 Jan next year", "EU", Right.ACCESS, at(2026, 12, 15), eod(2027, 1, 15)),
    ("SG 30 days across Feb of a leap year", "SG", Right.ACCESS, at(2028, 2, 10), eod(2028, 3, 11)),
    ("SG 30 days across Feb of a common year", "SG", Right.ACCESS, at(2026, 2, 10), eod(2026, 3, 12)),
    # Weekends and the roll (EU/UK/US-CA roll Saturdays and Sundays, SG only Sundays).
    ("EU ends Sat 14 Mar -> Mon 16 Mar", "EU", Right.ACCESS, at(2026, 2, 14), eod(2026, 3, 16)),
    ("EU ends Sun 15 Mar -> Mon 16 Mar", "EU", Right.ERASURE, at(2026, 2, 15), eod(2026, 3, 16)),
    ("UK ends Sat 28 Feb 2026 -> Mon 2 Mar", "UK", Right.ACCESS, at(2026, 1, 31), eod(2026, 3, 2)),
    ("SG ends Sat 2 May: Saturdays do not roll in Singapore", "SG", Right.ACCESS, at(2026, 4, 2), eod(2026, 5, 2)),
    ("US-CA ends Sun 26 Apr -> Mon 27 Apr", "US-CA", Right.ACCESS, at(2026, 3, 12), eod(2026, 4, 27)),
    # Business days skip Saturdays and Sundays; the day of receipt never counts.
    ("10 business days from Mon 2 Mar -> Mon 16 Mar", "XB", Right.ACCESS, at(2026, 3, 2), eod(2026, 3, 16)),
    ("10 business days from Fri 6 Mar -> Fri 20 Mar", "XB", Right.ACCESS, at(2026, 3, 6), eod(2026, 3, 20)),
    ("10 business days from Sat 7 Mar -> Fri 20 Mar", "XB", Right.ACCESS, at(2026, 3, 7), eod(2026, 3, 20)),
    # Hours are exact and never roll, across weekends too.
    ("ID 72 h from Thu 09:00 -> Sun 09:00 (no roll)", "ID", Right.RECTIFICATION, at(2026, 3, 5, 9), at(2026, 3, 8, 9)),
    ("ID 72 h from Fri 23:30 -> Mon 23:30", "ID", Right.RESTRICTION, at(2026, 3, 6, 23, 30), at(2026, 3, 9, 23, 30)),
    ("24 h rule asking to roll still ends Sat", "XH", Right.ACCESS, at(2026, 3, 6, 10), at(2026, 3, 7, 10)),
    # Fall-back: the right's row -> the jurisdiction's general row -> DEFAULT.
    ("ID erasure has no row -> DEFAULT 30 days", "ID", Right.ERASURE, at(2026, 3, 2, 9), eod(2026, 4, 1)),
    ("unknown jurisdiction -> DEFAULT", "XQ", Right.ACCESS, at(2026, 3, 2), eod(2026, 4, 1)),
    ("CN general row for every right", "CN", Right.OBJECTION, at(2026, 3, 2), eod(2026, 4, 1)),
    # Receipt late in the evening elsewhere counts by the date in the deadline zone.
    ("received 20:00 UTC 13 Apr = 14 Apr in SG", "EU", Right.ACCESS, at(2026, 4, 13, 20, tz=datetime.UTC), eod(2026, 5, 14)),
]


@pytest.mark.parametrize(("case", "code", "right", "received", "expected"), CASES, ids=[c[0] for c in CASES])
def test_compute_due_table_pm_ix_9(rules, case, code, right, received, expected):
    due = deadlines.compute_due(code, right, received)
    assert due == expected, case
    assert due.tzinfo is not None


def test_compute_due_accepts_a_jurisdiction_row_pm_ix_9(rules):
    eu = Jurisdiction.objects.get(code="EU")
    assert deadlines.compute_due(eu, Right.ACCESS, at(2026, 4, 14)) == eod(2026, 5, 14)


def test_end_of_day_is_local_pm_ix_9(rules):
    due = deadlines.compute_due("EU", Right.ACCESS, at(2026, 4, 14))
    assert due.astimezone(SGT).time() == datetime.time(23, 59, 59, 999999)
    assert due.astimezone(datetime.UTC) == datetime.datetime(2026, 5, 14, 15, 59, 59, 999999, tzinfo=datetime.UTC)


def test_rule_for_order_pm_ix_9(rules):
    id_access = deadlines.rule_for("ID", Right.ACCESS)
    assert (id_access.jurisdiction.code, id_access.right) == ("ID", Right.ACCESS)
    assert deadlines.rule_for("CN", Right.ACCESS).jurisdiction.code == "CN"
    assert deadlines.rule_for("ID", Right.ERASURE).jurisdiction.code == Jurisdiction.DEFAULT
    # DEFAULT's own row for a right beats DEFAULT's general row.
    DeadlineRuleFactory(
        jurisdiction=Jurisdiction.objects.get(code=Jurisdiction.DEFAULT), right=Right.ERASURE, period_value=5, period_unit=D
    )
    assert deadlines.rule_for("XQ", Right.ERASURE).period_value == 5
    assert deadlines.rule_for("XQ", Right.ACCESS).period_value == 30


def test_rule_for_without_default_raises_pm_ix_9(db):
    with pytest.raises(DeadlineRule.DoesNotExist):
        deadlines.rule_for("EU", Right.ACCESS)


# --- Pauses ------------------------------------------------------------------------------------------

UK_RECEIVED = at(2026, 4, 14)  # due Thu 14 May 2026 without pauses (XP: a rule whose clock starts at receipt)


def test_pause_pushes_due_by_its_exact_length_where_the_rule_pauses_pm_ix_9(rules):
    pause = (at(2026, 4, 20, 10), at(2026, 4, 24, 16, 30))  # 4 days 6.5 hours: Thu 14 May -> Tue 19 May 06:29
    due = deadlines.compute_due("XP", Right.ACCESS, UK_RECEIVED, [pause])
    assert due == eod(2026, 5, 14) + datetime.timedelta(days=4, hours=6, minutes=30)


def test_pause_is_ignored_where_the_rule_does_not_pause_pm_ix_9(rules):
    pause = (at(2026, 4, 20, 10), at(2026, 4, 22, 16, 30))
    assert deadlines.compute_due("EU", Right.ACCESS, UK_RECEIVED, [pause]) == eod(2026, 5, 14)
    assert deadlines.compute_due("SG", Right.ACCESS, UK_RECEIVED, [pause]) == eod(2026, 5, 14)


def test_pause_comes_before_the_roll_pm_ix_9(rules):
    # Due Thu 14 May end of day; a 2-day pause pushes it into Sat 16 May: rolls to the end of Mon 18 May.
    pause = (at(2026, 4, 20), at(2026, 4, 22))
    assert deadlines.compute_due("XP", Right.ACCESS, UK_RECEIVED, [pause]) == eod(2026, 5, 18)


def test_overlapping_pauses_count_once_and_time_before_receipt_not_at_all_pm_ix_9(rules):
    pauses = [(at(2026, 4, 20, 0), at(2026, 4, 22, 0)), (at(2026, 4, 21, 0), at(2026, 4, 24, 12)), (at(2026, 4, 1), UK_RECEIVED)]
    due = deadlines.compute_due("XP", Right.ACCESS, UK_RECEIVED, pauses)
    assert due == eod(2026, 5, 14) + datetime.timedelta(days=4, hours=12)  # 20 Apr 00:00 to 24 Apr 12:00


# --- Daylight saving in the deadline zone ---------------------------------------------------------------


def test_dst_day_periods_keep_their_last_date_and_end_at_local_midnight_pm_ix_9(rules, settings):
    settings.DEADLINE_TIME_ZONE = "Europe/London"
    # Received in winter time (GMT), due in summer time (BST, clocks went forward on 29 Mar 2026).
    due = deadlines.compute_due("EU", Right.ACCESS, at(2026, 3, 10, 9, tz=LONDON))
    assert due == eod(2026, 4, 10, tz=LONDON)
    assert due.utcoffset() == datetime.timedelta(hours=1)
    assert due.astimezone(datetime.UTC) == datetime.datetime(2026, 4, 10, 22, 59, 59, 999999, tzinfo=datetime.UTC)
    # And back: received in BST, due in GMT (clocks went back on 25 Oct 2026).
    # (CN, which does not roll: in SG, Mon 9 Nov 2026 is Deepavali observed.)
    due = deadlines.compute_due("CN", Right.ACCESS, at(2026, 10, 10, 9, tz=LONDON))
    assert due == eod(2026, 11, 9, tz=LONDON)
    assert due.utcoffset() == datetime.timedelta(0)


def test_dst_hours_are_exact_across_the_change_pm_ix_9(rules, settings):
    settings.DEADLINE_TIME_ZONE = "Europe/London"
    received = at(2026, 3, 27, 9, tz=LONDON)  # Fri 09:00 GMT; clocks go forward Sun 29 Mar 01:00
    due = deadlines.compute_due("ID", Right.ACCESS, received)
    assert due.astimezone(datetime.UTC) - received.astimezone(datetime.UTC) == datetime.timedelta(hours=72)
    assert due.astimezone(LONDON).replace(tzinfo=None) == datetime.datetime(2026, 3, 30, 10, 0)  # 10:00 BST


def test_dst_date_of_receipt_is_the_date_in_the_deadline_zone_pm_ix_9(rules, settings):
    settings.DEADLINE_TIME_ZONE = "Europe/London"
    # 23:30 UTC on 14 Apr is 00:30 BST on 15 Apr in London: the period runs from 15 Apr.
    received = datetime.datetime(2026, 4, 14, 23, 30, tzinfo=datetime.UTC)
    assert deadlines.compute_due("EU", Right.ACCESS, received) == eod(2026, 5, 15, tz=LONDON)


# --- A request's own clock ---------------------------------------------------------------------------


def _request(code, right=Right.ACCESS, received=UK_RECEIVED, **values):
    return RightsRequestFactory(jurisdiction=Jurisdiction.objects.get(code=code), right=right, received_at=received, **values)


def test_due_for_counts_closed_and_open_clock_stopping_pauses_pm_ix_9(rules):
    request = _request("XP")
    RequestPause.objects.create(
        request=request,
        reason=HoldReason.AWAITING_VERIFICATION,
        stops_clock=True,
        started_at=at(2026, 4, 15, 12),
        ended_at=at(2026, 4, 15, 18),
    )
    RequestPause.objects.create(
        request=request, reason=HoldReason.INTERNAL, stops_clock=False, started_at=at(2026, 4, 17), ended_at=at(2026, 4, 27)
    )
    RequestPause.objects.create(
        request=request, reason=HoldReason.AWAITING_CLARIFICATION, stops_clock=True, started_at=at(2026, 4, 28)
    )
    now = at(2026, 4, 28, 18)
    # Six closed hours and six open hours up to now; the internal hold does not stop the clock.
    assert deadlines.due_for(request, now=now) == eod(2026, 5, 14) + datetime.timedelta(hours=12)


def test_extension_due_adds_one_extension_and_refuses_more_pm_ix_9(rules):
    eu = _request("EU")
    assert deadlines.extension_due(eu) == eod(2026, 7, 14)  # 14 Jul 2026 is a Tuesday
    eu.extensions_used = 1
    assert deadlines.extended_due_for(eu) == eod(2026, 7, 14)
    with pytest.raises(ValueError, match="already extended"):
        deadlines.extension_due(eu)
    ca = _request("US-CA", received=at(2026, 3, 2))
    assert deadlines.extension_due(ca) == eod(2026, 6, 1)  # 90 days from receipt: Sun 31 May rolls to Mon 1 Jun
    with pytest.raises(ValueError, match="allows no extension"):
        deadlines.extension_due(_request("SG"))
    assert deadlines.extended_due_for(_request("CN")) is None


def test_extension_due_rolls_and_keeps_pauses_pm_ix_9(rules):
    uk = _request("XP", received=at(2026, 3, 16))  # +3 months -> Tue 16 Jun 2026
    RequestPause.objects.create(
        request=uk,
        reason=HoldReason.AWAITING_VERIFICATION,
        stops_clock=True,
        started_at=at(2026, 3, 17),
        ended_at=at(2026, 3, 21),
    )
    assert deadlines.extension_due(uk) == eod(2026, 6, 22)  # +4 days -> Sat 20 Jun -> Mon 22 Jun


def test_acknowledge_by_pm_ix_9(rules):
    assert deadlines.acknowledge_by(_request("US-CA", received=at(2026, 3, 2))) == eod(2026, 3, 16)
    assert deadlines.acknowledge_by(_request("EU")) is None


# --- Conformance per jurisdiction: where the clock starts, public holidays, the roll, per-right periods --------
#
# Holidays come from the `holidays` package's calendars (SG, US-CA, GB); the dates below are those years'
# published holidays: SG National Day Sun 9 Aug 2026 (observed Mon 10 Aug) and Mon 9 Aug 2027, Deepavali
# Sun 8 Nov 2026 (observed Mon 9 Nov) and Thu 28 Oct 2027; US-CA Cesar Chavez Day Tue 31 Mar 2026, Thanksgiving
# Thu 26 Nov 2026 and the day after; GB Spring Bank Holiday Mon 25 May 2026, Christmas Fri 25 Dec 2026 and
# Boxing Day (observed Mon 28 Dec).

CONFORMANCE = [
    # Singapore: Interpretation Act 1965 s50(b), a last day on a Sunday or public holiday runs to the next day.
    ("SG ends Sun 3 May 2026 -> Mon 4 May", "SG", Right.ACCESS, at(2026, 4, 3), eod(2026, 5, 4)),
    (
        "SG ends Sun 9 Aug 2026, National Day; Mon 10 Aug observed -> Tue 11 Aug",
        "SG",
        Right.ACCESS,
        at(2026, 7, 10),
        eod(2026, 8, 11),
    ),
    ("SG ends Mon 9 Aug 2027, National Day -> Tue 10 Aug", "SG", Right.RECTIFICATION, at(2027, 7, 10), eod(2027, 8, 10)),
    (
        "SG ends Sun 8 Nov 2026, Deepavali; Mon 9 Nov observed -> Tue 10 Nov",
        "SG",
        Right.ACCESS,
        at(2026, 10, 9),
        eod(2026, 11, 10),
    ),
    ("SG ends Thu 28 Oct 2027, Deepavali -> Fri 29 Oct", "SG", Right.ERASURE, at(2027, 9, 28), eod(2027, 10, 29)),
    ("SG ends Sat 2 May 2026: a Saturday is a working day there", "SG", Right.ACCESS, at(2026, 4, 2), eod(2026, 5, 2)),
    # California: Code Civ. Proc. §12a, a last day on a Saturday, Sunday or holiday runs to the next day that is none.
    ("US-CA ends Sat 25 Apr 2026 -> Mon 27 Apr", "US-CA", Right.ACCESS, at(2026, 3, 11), eod(2026, 4, 27)),
    ("US-CA ends Sun 26 Apr 2026 -> Mon 27 Apr", "US-CA", Right.ERASURE, at(2026, 3, 12), eod(2026, 4, 27)),
    ("US-CA ends Tue 31 Mar 2026, Cesar Chavez Day -> Wed 1 Apr", "US-CA", Right.ACCESS, at(2026, 2, 14), eod(2026, 4, 1)),
    (
        "US-CA ends Thanksgiving 26 Nov 2026 -> past Fri, Sat, Sun -> Mon 30 Nov",
        "US-CA",
        Right.ACCESS,
        at(2026, 10, 12),
        eod(2026, 11, 30),
    ),
    # UK: a weekend or bank holiday runs to the next working day (UK-wide calendar GB).
    (
        "UK ends Sun 24 May 2026; Mon 25 May Spring Bank Holiday -> Tue 26 May",
        "UK",
        Right.ACCESS,
        at(2026, 4, 24),
        eod(2026, 5, 26),
    ),
    (
        "UK ends Fri 25 Dec 2026 -> past Boxing Day observed Mon 28 Dec -> Tue 29 Dec",
        "UK",
        Right.ACCESS,
        at(2026, 11, 25),
        eod(2026, 12, 29),
    ),
    # EU: several countries, no single holiday calendar: only weekends roll.
    ("EU ends Tue 17 Mar 2026 (an Irish holiday): no calendar, no roll", "EU", Right.ACCESS, at(2026, 2, 17), eod(2026, 3, 17)),
    # Indonesia UU 27/2022: 3 x 24 hours for access (32(2)), rectification (30), restriction (41(1)) and
    # withdrawal of consent (40); the other rights have no statutory period.
    ("ID access 72 h (Art. 32(2))", "ID", Right.ACCESS, at(2026, 8, 7, 15), at(2026, 8, 10, 15)),
    ("ID rectification 72 h (Art. 30)", "ID", Right.RECTIFICATION, at(2026, 8, 7, 15), at(2026, 8, 10, 15)),
    ("ID restriction 72 h (Art. 41(1))", "ID", Right.RESTRICTION, at(2026, 8, 7, 15), at(2026, 8, 10, 15)),
    ("ID withdrawal of consent 72 h (Art. 40)", "ID", Right.WITHDRAW_CONSENT, at(2026, 8, 7, 15), at(2026, 8, 10, 15)),
    (
        "ID 72 h ends on Independence Day 17 Aug 2026: hours never roll",
        "ID",
        Right.ACCESS,
        at(2026, 8, 14, 8),
        at(2026, 8, 17, 8),
    ),
    ("ID erasure: no statutory period -> 30 days", "ID", Right.ERASURE, at(2026, 8, 7, 15), eod(2026, 9, 6)),
    ("ID objection: no statutory period -> 30 days", "ID", Right.OBJECTION, at(2026, 8, 7, 15), eod(2026, 9, 6)),
    ("ID portability: no statutory period -> 30 days", "ID", Right.PORTABILITY, at(2026, 8, 7, 15), eod(2026, 9, 6)),
]


@pytest.mark.parametrize(("case", "code", "right", "received", "expected"), CONFORMANCE, ids=[c[0] for c in CONFORMANCE])
def test_pm_ix_9_conformance_table(rules, case, code, right, received, expected):
    assert deadlines.compute_due(code, right, received) == expected, case


def test_pm_ix_9_us_ca_business_days_skip_the_state_holidays(rules):
    # Received Fri 13 Feb 2026; Mon 16 Feb is Presidents' Day: 10 business days end Mon 2 Mar, not Fri 27 Feb.
    assert deadlines.acknowledge_by(_request("US-CA", received=at(2026, 2, 13))) == eod(2026, 3, 2)
    # The same count for a rule without a holiday calendar skips weekends only.
    assert deadlines.compute_due("XB", Right.ACCESS, at(2026, 2, 13)) == eod(2026, 2, 27)


def test_pm_ix_9_a_rule_may_name_its_own_holiday_calendar(rules):
    DeadlineRule.objects.filter(jurisdiction__code="EU").update(holiday_calendar="IE")
    # Tue 17 Mar 2026 is St Patrick's Day in Ireland: the EU row now rolls it to Wed 18 Mar.
    assert deadlines.compute_due("EU", Right.ACCESS, at(2026, 2, 17)) == eod(2026, 3, 18)
    assert deadlines.holiday_calendar_code(deadlines.rule_for("EU", Right.ACCESS)) == "IE"
    assert deadlines.holiday_calendar_code(deadlines.rule_for("US-CA", Right.ACCESS)) == "US-CA"
    assert deadlines.holiday_calendar_code(deadlines.rule_for("XM", Right.ACCESS)) == ""


@pytest.mark.parametrize(
    ("code", "error"),
    [("XX", "no calendar for the country 'XX'"), ("US-ZZ", "knows no region 'ZZ' of US"), ("GB-ENG", None), ("SG", None)],
)
def test_pm_ix_9_an_unknown_holiday_calendar_is_refused(rules, code, error):
    rule = DeadlineRule.objects.get(jurisdiction__code="SG")
    rule.holiday_calendar = code
    if error is None:
        rule.clean()
        return
    with pytest.raises(ValidationError) as caught:
        rule.clean()
    assert error in str(caught.value.message_dict["holiday_calendar"])


# UK GDPR art. 12A: the month runs from the latest of receipt and the arrival of the identity proof asked for;
# days awaiting clarification do not count.


def _verification_hold(request, start, end=None):
    return RequestPause.objects.create(
        request=request, reason=HoldReason.AWAITING_VERIFICATION, stops_clock=True, started_at=start, ended_at=end
    )


def test_pm_ix_9_uk_month_runs_from_the_identity_proof_not_receipt_plus_the_pause(rules):
    request = _request("UK", received=UK_RECEIVED)  # Tue 14 Apr 2026
    _verification_hold(request, at(2026, 4, 20, 10), at(2026, 4, 24, 16, 30))
    # From Fri 24 Apr: Sun 24 May -> Mon 25 May is a bank holiday -> Tue 26 May. ("Receipt + the pause" would
    # have given Tue 19 May.)
    assert deadlines.due_for(request) == eod(2026, 5, 26)
    # The receipt-based reading of the same hold, for comparison (a rule whose clock starts at receipt).
    assert deadlines.compute_due("XP", Right.ACCESS, UK_RECEIVED, [(at(2026, 4, 20, 10), at(2026, 4, 24, 16, 30))]) == (
        eod(2026, 5, 14) + datetime.timedelta(days=4, hours=6, minutes=30)
    )


def test_pm_ix_9_uk_month_runs_from_verification_without_a_hold(rules):
    request = _request("UK", received=UK_RECEIVED, verified_at=at(2026, 5, 1, 9))
    assert deadlines.due_for(request) == eod(2026, 6, 1)  # Fri 1 May -> Mon 1 Jun
    # Verified on submission (signed in): the month runs from receipt.
    assert deadlines.due_for(_request("UK", received=UK_RECEIVED, verified_at=UK_RECEIVED)) == eod(2026, 5, 14)


def test_pm_ix_9_uk_an_open_verification_hold_means_the_month_has_not_started(rules):
    request = _request("UK", received=UK_RECEIVED)
    _verification_hold(request, at(2026, 4, 15))
    assert deadlines.due_for(request, now=at(2026, 5, 20)) == eod(2026, 6, 22)  # Sat 20 Jun -> Mon 22 Jun


def test_pm_ix_9_uk_clarification_days_do_not_count(rules):
    request = _request("UK", received=UK_RECEIVED, verified_at=UK_RECEIVED)
    RequestPause.objects.create(
        request=request,
        reason=HoldReason.AWAITING_CLARIFICATION,
        stops_clock=True,
        started_at=at(2026, 4, 20, 10),
        ended_at=at(2026, 4, 22, 9),
    )
    # 20, 21 and 22 Apr do not count: Thu 14 May + 3 days -> Sun 17 May -> Mon 18 May.
    assert deadlines.due_for(request) == eod(2026, 5, 18)
    # With the extension the same three days move the end: 14 Jul + 3 days -> Fri 17 Jul.
    request.extensions_used = 1
    assert deadlines.extended_due_for(request) == eod(2026, 7, 17)


def test_pm_ix_9_uk_clarification_days_inside_the_added_stretch_count_too(rules):
    request = _request("UK", received=at(2026, 3, 2), verified_at=at(2026, 3, 2))  # due Thu 2 Apr without holds
    for start, end in [(at(2026, 3, 10), at(2026, 3, 10)), (at(2026, 4, 3), at(2026, 4, 6))]:
        RequestPause.objects.create(
            request=request, reason=HoldReason.AWAITING_CLARIFICATION, stops_clock=True, started_at=start, ended_at=end
        )
    # 10 Mar moves the end to Fri 3 Apr, inside the second hold (3-6 Apr, 4 days): Tue 7 Apr.
    assert deadlines.due_for(request) == eod(2026, 4, 7)


def test_pm_ix_9_uk_a_verification_hold_resumed_through_the_workflow_restarts_the_month(rules):
    from django.utils import timezone

    from requests import services

    uk = Jurisdiction.objects.get(code="UK")
    received = timezone.now() - datetime.timedelta(days=20)
    request = services.rights_request_submit(
        right=Right.ACCESS, contact_email="someone@example.org", jurisdiction=uk, received_at=received
    )
    assert request.due_at == deadlines.roll_to_working_day(
        deadlines.add_period(received, 1, M), SGT, Roll.BUSINESS_DAY, deadlines.WorkingDays("GB")
    )
    services.rights_request_hold(rights_request=request, actor=None, reason=HoldReason.AWAITING_VERIFICATION)
    services.rights_request_resume(rights_request=request, actor=None)
    proof_arrived = RequestPause.objects.get(request=request).ended_at
    request.refresh_from_db()
    assert request.due_at == deadlines.roll_to_working_day(
        deadlines.add_period(proof_arrived, 1, M), SGT, Roll.BUSINESS_DAY, deadlines.WorkingDays("GB")
    )


def test_pm_ix_9_uk_a_verification_without_a_hold_restarts_the_month_on_the_request(rules):
    """The stored deadline follows the proof of identity even when staff verify without holding first."""
    from django.utils import timezone

    from requests import services
    from requests.models import RequestEvent

    uk = Jurisdiction.objects.get(code="UK")
    received = timezone.now() - datetime.timedelta(days=20)
    request = services.rights_request_submit(
        right=Right.ACCESS, contact_email="someone@example.org", jurisdiction=uk, received_at=received
    )
    due_from_receipt = request.due_at
    services.rights_request_verify(rights_request=request, actor=None, method="document")
    request.refresh_from_db()
    expected = deadlines.roll_to_working_day(
        deadlines.add_period(request.verified_at, 1, M), SGT, Roll.BUSINESS_DAY, deadlines.WorkingDays("GB")
    )
    assert request.due_at == expected > due_from_receipt
    event = RequestEvent.objects.get(request=request, kind=RequestEvent.Kind.VERIFY)
    assert datetime.datetime.fromisoformat(event.details["due_at"]) == request.due_at


def test_pm_ix_9_a_clock_from_receipt_keeps_its_deadline_when_verified(rules):
    from django.utils import timezone

    from requests import services

    eu = Jurisdiction.objects.get(code="EU")
    request = services.rights_request_submit(
        right=Right.ACCESS,
        contact_email="someone@example.org",
        jurisdiction=eu,
        received_at=timezone.now() - datetime.timedelta(days=20),
    )
    due = request.due_at
    services.rights_request_verify(rights_request=request, actor=None, method="document")
    request.refresh_from_db()
    assert request.due_at == due
