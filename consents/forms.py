"""The plain sign-up form (PM-0-1, PM-II-2, PM-VIII-1). The portal issue restyles it; the rules stay here.

The form only validates: nothing is stored unless everything is valid (the age check refuses before any row
exists). The account, the policy acceptance and the marketing choice are written by
`consents.services.account_signup`, in one transaction.
"""

from __future__ import annotations

import datetime

from django import forms
from django.conf import settings
from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError
from django.utils import timezone

from accounts.models import User, country_code
from accounts.selectors import account_by_email, normalised_email
from policies.models import PolicyVersion

from .ledger import notice_current
from .models import ConsentNotice, ConsentPurpose

MARKETING_PURPOSE = "marketing-communications"

# ISO 3166-2 codes of the US states, DC and the territories: a US subject's state decides the law (US-CA).
US_REGIONS = [
    ("US-AL", "Alabama"), ("US-AK", "Alaska"), ("US-AZ", "Arizona"), ("US-AR", "Arkansas"), ("US-CA", "California"),
    ("US-CO", "Colorado"), ("US-CT", "Connecticut"), ("US-DE", "Delaware"), ("US-DC", "District of Columbia"),
    ("US-FL", "Florida"), ("US-GA", "Georgia"), ("US-HI", "Hawaii"), ("US-ID", "Idaho"), ("US-IL", "Illinois"),
    ("US-IN", "Indiana"), ("US-IA", "Iowa"), ("US-KS", "Kansas"), ("US-KY", "Kentucky"), ("US-LA", "Louisiana"),
    ("US-ME", "Maine"), ("US-MD", "Maryland"), ("US-MA", "Massachusetts"), ("US-MI", "Michigan"), ("US-MN", "Minnesota"),
    ("US-MS", "Mississippi"), ("US-MO", "Missouri"), ("US-MT", "Montana"), ("US-NE", "Nebraska"), ("US-NV", "Nevada"),
    ("US-NH", "New Hampshire"), ("US-NJ", "New Jersey"), ("US-NM", "New Mexico"), ("US-NY", "New York"),
    ("US-NC", "North Carolina"), ("US-ND", "North Dakota"), ("US-OH", "Ohio"), ("US-OK", "Oklahoma"), ("US-OR", "Oregon"),
    ("US-PA", "Pennsylvania"), ("US-RI", "Rhode Island"), ("US-SC", "South Carolina"), ("US-SD", "South Dakota"),
    ("US-TN", "Tennessee"), ("US-TX", "Texas"), ("US-UT", "Utah"), ("US-VT", "Vermont"), ("US-VA", "Virginia"),
    ("US-WA", "Washington"), ("US-WV", "West Virginia"), ("US-WI", "Wisconsin"), ("US-WY", "Wyoming"),
    ("US-AS", "American Samoa"), ("US-GU", "Guam"), ("US-MP", "Northern Mariana Islands"), ("US-PR", "Puerto Rico"),
    ("US-UM", "U.S. Minor Outlying Islands"), ("US-VI", "U.S. Virgin Islands"),
]  # fmt: skip


def age_on(born: datetime.date, day: datetime.date) -> int:
    """Completed years on `day` (someone born on 29 February turns a year older on 1 March)."""
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


class SignupForm(forms.Form):
    name = forms.CharField(max_length=200, widget=forms.TextInput(attrs={"autocomplete": "name"}))
    # As long as the column (issue 16): Django's EmailField alone allows 320 characters.
    email = forms.EmailField(
        max_length=User._meta.get_field("email").max_length, widget=forms.EmailInput(attrs={"autocomplete": "email"})
    )
    password1 = forms.CharField(
        label="Password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=password_validation.password_validators_help_text_html(),
    )
    password2 = forms.CharField(
        label="Password again", strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "new-password"})
    )
    date_of_birth = forms.DateField(widget=forms.DateInput(attrs={"type": "date", "autocomplete": "bday"}))
    country = forms.CharField(
        max_length=2,
        min_length=2,
        widget=forms.TextInput(attrs={"autocomplete": "country", "pattern": "[A-Za-z]{2}", "size": 3}),
        help_text="Two-letter country code, e.g. SG, DE, GB, US. It tells us which privacy law protects you.",
    )
    region = forms.ChoiceField(
        label="State (United States only)",
        choices=[("", "—"), *US_REGIONS],
        required=False,
        help_text="Only if you live in the United States.",
    )
    accept_policy = forms.BooleanField(required=True)
    marketing = forms.BooleanField(required=False)

    def __init__(self, *args, policy_version: PolicyVersion | None, language: str = "en", **kwargs):
        super().__init__(*args, **kwargs)
        self.policy_version = policy_version
        self.fields["date_of_birth"].help_text = f"The service is for people aged {settings.SIGNUP_MINIMUM_AGE} and over."
        self.marketing_purpose = ConsentPurpose.objects.filter(code=MARKETING_PURPOSE, is_active=True).first()
        self.marketing_notice: ConsentNotice | None = (
            notice_current(purpose=self.marketing_purpose, language=language) if self.marketing_purpose else None
        )
        label = f"version {policy_version.label}, last updated {policy_version.last_updated:%d %B %Y}" if policy_version else ""
        self.fields["accept_policy"].label = f"I have read and accept the privacy policy ({label})."
        self.fields["accept_policy"].error_messages["required"] = "You can only sign up if you accept the privacy policy."
        if self.marketing_notice is None:
            del self.fields["marketing"]  # never ask without a notice text to prove what was asked
        else:
            self.fields["marketing"].label = self.marketing_notice.text

    def clean_email(self):
        email = normalised_email(self.cleaned_data["email"])
        if account_by_email(email, active_only=False) is not None:
            raise ValidationError("An account with this email address already exists. Sign in instead.")
        return email

    def clean_date_of_birth(self):
        """PM-VIII-1: under the minimum age, refused; the date is not kept anywhere."""
        born = self.cleaned_data["date_of_birth"]
        today = timezone.localdate()
        if born > today:
            raise ValidationError("The date of birth is in the future.")
        if age_on(born, today) < settings.SIGNUP_MINIMUM_AGE:
            raise ValidationError(
                f"Sorry: the service is only for people aged {settings.SIGNUP_MINIMUM_AGE} and over, so we cannot "
                "create an account for you. Nothing you entered has been kept."
            )
        return born

    def clean_country(self):
        country = self.cleaned_data["country"].strip().upper()
        country_code(country)
        return country

    def clean(self):
        cleaned = super().clean()
        if self.policy_version is None:
            raise ValidationError("Sign-up is closed until a privacy policy version is in force. Please come back later.")
        country, region = cleaned.get("country"), cleaned.get("region") or ""
        if country == "US" and not region:
            self.add_error("region", "Choose your state: privacy law in the United States differs from state to state.")
        elif region and country and not region.startswith(f"{country}-"):
            self.add_error("region", "A state is only asked for the United States.")
        password1, password2 = cleaned.get("password1"), cleaned.get("password2")
        if password1 and password2 and password1 != password2:
            self.add_error("password2", "The two passwords differ.")
        elif password1:
            candidate = User(email=cleaned.get("email") or "", name=cleaned.get("name") or "")
            try:
                password_validation.validate_password(password1, candidate)
            except ValidationError as error:
                self.add_error("password1", error)
        return cleaned

    def signup_arguments(self) -> dict:
        """What `consents.services.account_signup` needs from the valid form (the form writes nothing)."""
        data = self.cleaned_data
        return {
            "email": data["email"],
            "password": data["password1"],
            "name": data["name"],
            "country": data["country"],
            "region": data.get("region") or "",
            "date_of_birth": data["date_of_birth"],
            "policy_version": self.policy_version,
            "marketing": bool(data.get("marketing")),
            "marketing_notice": self.marketing_notice,
        }
