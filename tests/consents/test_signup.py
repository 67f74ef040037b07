"""Sign-up (PM-0-1, PM-II-2, PM-VIII-1) and the browser-to-account link on sign-in and sign-up."""

import datetime

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.utils import timezone

from consents import cookies
from consents.models import ConsentEvent, ConsentState, VisitorLink
from policies.models import PolicyAcceptance, PolicyVersion
from privacyops.models import AuditEvent
from tests.factories.accounts import UserFactory

pytestmark = pytest.mark.django_db


User = get_user_model()
CHOICE = settings.CONSENT_COOKIE_NAME
SAME_ORIGIN = {"HTTP_ORIGIN": "http://testserver"}
PASSWORD = "correct horse battery staple"


def born_years_ago(years: int, *, days: int = 0) -> str:
    today = timezone.localdate()
    try:
        born = today.replace(year=today.year - years)
    except ValueError:  # 29 February
        born = today.replace(year=today.year - years, day=28)
    return (born + datetime.timedelta(days=days)).isoformat()


def form(**changes):
    data = {
        "name": "Ada Example",
        "email": "ada@example.org",
        "password1": "a long and unusual passphrase",
        "password2": "a long and unusual passphrase",
        "date_of_birth": born_years_ago(30),
        "country": "sg",
        "region": "",
        "accept_policy": "on",
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


def counts():
    return (
        User.objects.count(),
        PolicyAcceptance.objects.count(),
        ConsentEvent.objects.count(),
        AuditEvent.objects.count(),
        VisitorLink.objects.count(),
    )


def in_force() -> PolicyVersion:
    return PolicyVersion.objects.filter(published_at__isnull=False).order_by("-effective_at").first()


def test_pm_0_1_the_form_asks_without_pre_ticked_boxes(client, seeded):
    body = client.get("/signup").content.decode()
    for name in ("accept_policy", "marketing"):
        tag = body[body.index(f'name="{name}"') - 200 : body.index(f'name="{name}"') + 200]
        assert "checked" not in tag
    assert in_force().label in body
    assert 'type="date"' in body and 'name="region"' in body


def test_pm_viii_1_under_the_minimum_age_is_refused_and_nothing_is_stored(client, seeded):
    before = counts()
    response = client.post("/signup", form(date_of_birth=born_years_ago(settings.SIGNUP_MINIMUM_AGE, days=1)))
    assert response.status_code == 200
    body = response.content.decode()
    assert f"only for people aged {settings.SIGNUP_MINIMUM_AGE} and over" in body
    assert "Nothing you entered has been kept" in body
    assert counts() == before
    assert not response.cookies.get(settings.SESSION_COOKIE_NAME)


def test_pm_viii_1_the_threshold_is_a_setting(client, seeded, settings):
    settings.SIGNUP_MINIMUM_AGE = 21
    before = counts()
    client.post("/signup", form(date_of_birth=born_years_ago(20)))
    assert counts() == before


def test_pm_viii_1_on_the_birthday_the_minimum_age_is_enough(client, seeded):
    response = client.post("/signup", form(date_of_birth=born_years_ago(settings.SIGNUP_MINIMUM_AGE)))
    assert response.status_code == 302
    assert User.objects.filter(email="ada@example.org").exists()


def test_pm_0_1_sign_up_records_the_policy_acceptance_and_the_marketing_refusal(client, seeded):
    response = client.post("/signup", form())
    assert response.status_code == 302 and response["Location"] == "/my/consents"
    user = User.objects.get(email="ada@example.org")
    assert (user.name, user.country, user.region) == ("Ada Example", "SG", "")
    assert user.check_password("a long and unusual passphrase")
    acceptance = PolicyAcceptance.objects.get(subject_ref=user.subject_ref)
    assert (acceptance.version, acceptance.method, acceptance.client) == (in_force(), "signup", "web")
    event = ConsentEvent.objects.get(subject_ref=user.subject_ref)
    assert (event.purpose.code, event.action, event.method) == ("marketing-communications", "refused", "signup")
    assert event.notice is not None and event.policy_version == in_force()
    assert AuditEvent.objects.filter(action="account.signed_up", subject_ref=user.subject_ref).exists()
    assert client.get("/my/consents").status_code == 200  # signed in


def test_pm_ii_2_a_ticked_marketing_box_records_a_consent(client, seeded):
    client.post("/signup", form(marketing="on"))
    user = User.objects.get(email="ada@example.org")
    event = ConsentEvent.objects.get(subject_ref=user.subject_ref)
    assert (event.action, event.method) == ("given", "signup")


def test_pm_0_1_without_accepting_the_policy_nothing_is_stored(client, seeded):
    before = counts()
    response = client.post("/signup", form(accept_policy=None))
    assert "only sign up if you accept the privacy policy" in response.content.decode()
    assert counts() == before


def test_pm_0_1_without_a_policy_in_force_sign_up_is_closed(client, seeded):
    PolicyVersion.objects.update(published_at=None)
    before = counts()
    response = client.post("/signup", form())
    assert "Sign-up is closed" in response.content.decode()
    assert counts() == before


def test_pm_xi_a_us_subject_gives_a_state_and_gets_its_law(client, seeded):
    before = counts()
    response = client.post("/signup", form(country="US"))
    assert "Choose your state" in response.content.decode()
    assert counts() == before
    client.post("/signup", form(country="US", region="US-CA"))
    user = User.objects.get(email="ada@example.org")
    assert user.region == "US-CA"
    assert ConsentEvent.objects.get(subject_ref=user.subject_ref).jurisdiction == "US-CA"


def test_sign_up_refuses_a_region_outside_the_country_and_a_bad_country(client, seeded):
    before = counts()
    assert "only asked for the United States" in client.post("/signup", form(region="US-CA")).content.decode()
    assert "ISO 3166-1" in client.post("/signup", form(country="1x")).content.decode()
    assert counts() == before


def test_sign_up_applies_the_password_validators(client, seeded):
    before = counts()
    body = client.post("/signup", form(password1="short", password2="short")).content.decode()
    assert "too short" in body
    body = client.post("/signup", form(password2="something else entirely")).content.decode()
    assert "The two passwords differ" in body
    assert counts() == before


def test_sign_up_refuses_a_known_email(client, seeded):
    UserFactory(email="ada@example.org")
    before = counts()
    assert "already exists" in client.post("/signup", form(email="ADA@example.org")).content.decode()
    assert counts() == before


# --- The browser's choices follow the person into the account ---------------------------------------


def test_pm_iii_6_sign_in_carries_the_banner_choice_into_the_account(client, seeded):
    client.post("/cookies/choice", {"choice": "save", "categories": ["analytics"]}, **SAME_ORIGIN)
    visitor_id = cookies.Choice.decode(client.cookies[CHOICE].value).visitor_id
    user = UserFactory()
    client.post("/signin", {"username": user.email, "password": PASSWORD})
    link = VisitorLink.objects.get(visitor_id=visitor_id)
    assert (link.subject_ref, link.method) == (user.subject_ref, "signin")
    states = dict(ConsentState.objects.filter(subject_ref=user.subject_ref).values_list("purpose__code", "action"))
    assert states == {"cookies-analytics": "given", "cookies-functionality": "refused"}
    body = client.get("/").content.decode()
    assert '<img class="beacon"' in body and 'class="cookie-banner"' not in body


def test_pm_iii_6_sign_up_links_the_browser_with_method_signup(client, seeded):
    client.post("/cookies/choice", {"choice": "accept-all"}, **SAME_ORIGIN)
    visitor_id = cookies.Choice.decode(client.cookies[CHOICE].value).visitor_id
    client.post("/signup", form())
    user = User.objects.get(email="ada@example.org")
    assert VisitorLink.objects.get(visitor_id=visitor_id).method == "signup"
    assert ConsentState.objects.filter(subject_ref=user.subject_ref, action="given").count() == 2


def test_pm_iii_6_signing_out_forgets_the_choice_so_the_next_person_cannot_change_the_account(client, seeded):
    client.post("/cookies/choice", {"choice": "refuse-all"}, **SAME_ORIGIN)
    visitor_id = cookies.Choice.decode(client.cookies[CHOICE].value).visitor_id
    user = UserFactory()
    client.post("/signin", {"username": user.email, "password": PASSWORD})
    response = client.post("/signout")
    assert CHOICE in {name for name, morsel in response.cookies.items() if str(morsel["max-age"]) == "0"}
    assert 'class="cookie-banner"' in client.get("/").content.decode()
    # Whoever uses the browser next accepts everything: their own visitor id, not the account's.
    client.post("/cookies/choice", {"choice": "accept-all"}, **SAME_ORIGIN)
    assert cookies.Choice.decode(client.cookies[CHOICE].value).visitor_id != visitor_id
    states = dict(ConsentState.objects.filter(subject_ref=user.subject_ref).values_list("purpose__code", "action"))
    assert states == {"cookies-analytics": "refused", "cookies-functionality": "refused"}


def test_pm_iii_6_a_browser_linked_to_someone_else_gets_a_fresh_visitor_id(client, seeded):
    client.post("/cookies/choice", {"choice": "accept-all"}, **SAME_ORIGIN)
    first_id = cookies.Choice.decode(client.cookies[CHOICE].value).visitor_id
    first, second = UserFactory(), UserFactory()
    client.post("/signin", {"username": first.email, "password": PASSWORD})
    del client.cookies[settings.SESSION_COOKIE_NAME]  # the browser closed without signing out
    response = client.post("/signin", {"username": second.email, "password": PASSWORD})
    fresh = cookies.Choice.decode(response.cookies[CHOICE].value)
    assert fresh.visitor_id != first_id and not fresh.categories
    assert VisitorLink.objects.get(visitor_id=first_id).subject_ref == first.subject_ref
    assert VisitorLink.objects.get(visitor_id=fresh.visitor_id).subject_ref == second.subject_ref
    assert not ConsentState.objects.filter(subject_ref=second.subject_ref).exists()  # first's clicks stay first's


def test_pm_iii_6_a_signed_in_banner_choice_is_the_accounts(client, seeded):
    user = UserFactory()
    client.post("/signin", {"username": user.email, "password": PASSWORD})
    response = client.post("/cookies/choice", {"choice": "refuse-all"}, **SAME_ORIGIN)
    assert CHOICE in response.cookies
    assert set(response.cookies) <= {CHOICE, settings.SESSION_COOKIE_NAME}  # the session may be saved too: necessary
    methods = set(ConsentEvent.objects.filter(subject_ref=user.subject_ref).values_list("method", "action"))
    assert methods == {("banner", "refused")}
    choice = cookies.Choice.decode(client.cookies[CHOICE].value)
    assert VisitorLink.objects.get(visitor_id=choice.visitor_id).subject_ref == user.subject_ref


def _signup_arguments(**changes):
    from consents.forms import SignupForm

    bound = SignupForm(form(marketing="on"), policy_version=in_force())
    assert bound.is_valid(), bound.errors
    return {**bound.signup_arguments(), **changes}


def test_pm_0_1_the_form_only_validates_it_writes_nothing(seeded):
    before = counts()
    _signup_arguments()
    assert counts() == before


def test_pm_0_1_account_signup_writes_everything_or_nothing(seeded):
    from consents.services import account_signup

    draft = PolicyVersion.objects.create(
        label="draft-x", last_updated=datetime.date(2026, 1, 1), effective_at=timezone.now(), summary="A draft"
    )
    before = counts()
    with pytest.raises(ValidationError):
        account_signup(**_signup_arguments(policy_version=draft))  # refused after the account row was written
    assert counts() == before

    user = account_signup(**_signup_arguments(), ip="198.51.100.7", user_agent="Firefox")
    assert PolicyAcceptance.objects.get(subject_ref=user.subject_ref).method == "signup"
    assert ConsentEvent.objects.get(subject_ref=user.subject_ref).action == "given"
    assert AuditEvent.objects.filter(action="account.signed_up", subject_ref=user.subject_ref).count() == 1


def test_pm_0_1_an_address_taken_by_a_concurrent_sign_up_is_refused_cleanly(seeded):
    from consents.services import account_signup

    arguments = _signup_arguments()  # validated while the address was still free
    UserFactory(email="ada@example.org")
    before = counts()
    with pytest.raises(ValidationError) as refused:
        account_signup(**arguments)
    assert "already exists" in str(refused.value.message_dict["email"])
    assert counts() == before
