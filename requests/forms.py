"""The forms of the subject's rights pages and of the public intake (issue 5 sections 3 and 4).

They only collect and check what the requester typed; the request itself is made by
`requests.services.rights_request_submit` in the views, so the workflow's rules (duplicates, the clock,
verification) are applied in one place whatever the channel.
"""

from __future__ import annotations

from django import forms

from consents.models import ConsentPurpose
from inventory.models import Jurisdiction, Purpose

from .models import Right, RightsRequest

DETAILS_MAX = 5000
# Every field is as long as its column at most (issue 16): a longer value is the form's error, not the
# database's. An e-mail address fits RFC 5321's 254 characters, the column's length.
EMAIL_MAX = RightsRequest._meta.get_field("contact_email").max_length
ALL_PURPOSES = "*"  # restriction or objection of every purpose (consents.services.restriction_place(purpose=None))

# The rights a signed-in subject asks for on "Exercise your rights"; a report of a child's account has a
# page of its own, open to anyone.
SUBJECT_RIGHTS = [r for r in Right if r != Right.CHILD_REPORT]
PURPOSE_RIGHTS = frozenset({Right.WITHDRAW_CONSENT, Right.RESTRICTION, Right.OBJECTION})


def purpose_choices(right: str) -> list[tuple[str, str]]:
    """What a subject can name for withdrawal, restriction or objection, as the consents app offers it:
    consent purposes (not the strictly necessary ones) for a withdrawal, register purposes (or all of
    them) for a restriction or objection (`consents.services.restriction_place`)."""
    if right == Right.WITHDRAW_CONSENT:
        purposes = ConsentPurpose.objects.filter(is_active=True, is_necessary=False).order_by("position", "code")
        return [(p.code, p.name + (f" (without it: {p.consequences})" if p.consequences else "")) for p in purposes]
    if right in (Right.RESTRICTION, Right.OBJECTION):
        return [(ALL_PURPOSES, "All processing of my data")] + [(p.code, p.name) for p in Purpose.objects.all()]
    return []


class RightsRequestForm(forms.Form):
    """A signed-in subject's request for one right. Rectification adds one field per rectifiable value
    (`fields_to_fix`, from `requests.rectification.rectifiable_fields`); the purpose rights a choice of purposes."""

    details = forms.CharField(
        label="Anything we should know",
        required=False,
        max_length=DETAILS_MAX,
        widget=forms.Textarea(attrs={"rows": 5}),
        help_text="Optional. For example which data, which period, or why.",
    )

    def __init__(self, *args, right: str, fields_to_fix: list[dict] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.right = right
        self.fields_to_fix = fields_to_fix or []
        if right in PURPOSE_RIGHTS:
            self.fields["purposes"] = forms.MultipleChoiceField(
                label="Which purposes", choices=purpose_choices(right), widget=forms.CheckboxSelectMultiple
            )
        for index, item in enumerate(self.fields_to_fix):
            self.fields[f"fix_{index}"] = forms.CharField(
                label=item.get("meaning") or item["field"], required=False, max_length=DETAILS_MAX, initial=""
            )

    def fix_rows(self):
        """Each rectifiable value with its bound field, for the template."""
        return [(item, self[f"fix_{index}"]) for index, item in enumerate(self.fields_to_fix)]

    def clean(self):
        cleaned = super().clean()
        if self.right == Right.RECTIFICATION:
            if not self.fields_to_fix:
                raise forms.ValidationError("We hold no value you can correct here: write to our Data Protection Officer.")
            if not self.changes():
                raise forms.ValidationError("Give at least one corrected value.")
        purposes = cleaned.get("purposes") or []
        if ALL_PURPOSES in purposes and len(purposes) > 1:
            self.add_error("purposes", "Choose either all processing or some purposes, not both.")
        return cleaned

    def changes(self) -> list[dict]:
        """The corrections asked for, as `rectification_propose` takes them: only values that differ."""
        changes = []
        for index, item in enumerate(self.fields_to_fix):
            new_value = (self.cleaned_data.get(f"fix_{index}") or "").strip()
            if new_value and new_value != str(item.get("value") if item.get("value") is not None else ""):
                changes.append(
                    {
                        "model_label": item["model_label"],
                        "object_pk": item["object_pk"],
                        "field": item["field"],
                        "new_value": new_value,
                    }
                )
        return changes

    def request_details(self) -> str:
        """The details the request is recorded with: the chosen purposes first, by name and code, so the
        staff who fulfil it through the consents app see exactly what was asked."""
        details = self.cleaned_data.get("details", "").strip()
        purposes = self.cleaned_data.get("purposes") or []
        if not purposes:
            return details
        labels = dict(self.fields["purposes"].choices)
        if purposes == [ALL_PURPOSES]:
            line = "Purposes: all processing"
        else:
            line = "Purposes: " + "; ".join(f"{labels[code].split(' (without it')[0]} [{code}]" for code in purposes)
        return f"{line}\n\n{details}".strip()


class PublicRequestForm(forms.Form):
    """A request by someone without an account (or not signed in): verified later by an e-mailed link."""

    contact_email = forms.EmailField(
        label="Your e-mail address", max_length=EMAIL_MAX, help_text="We send a link to it to confirm the request."
    )
    jurisdiction = forms.ModelChoiceField(
        label="Where you live",
        queryset=Jurisdiction.objects.order_by("name"),
        empty_label=None,
        help_text="Its law sets how long we have to answer. Choose “Other” if none fits.",
    )
    right = forms.ChoiceField(label="What you ask for", choices=[(r.value, r.label) for r in SUBJECT_RIGHTS])
    details = forms.CharField(label="Details", required=False, max_length=DETAILS_MAX, widget=forms.Textarea(attrs={"rows": 5}))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["jurisdiction"].label_from_instance = lambda j: "Other" if j.code == Jurisdiction.DEFAULT else j.name


class ChildReportForm(forms.Form):
    """PM-VIII-2: anyone reports an account they believe belongs to a child under 13."""

    account_email = forms.EmailField(label="The account's e-mail address, if you know it", max_length=EMAIL_MAX, required=False)
    account_description = forms.CharField(
        label="Or what you know about the account",
        required=False,
        max_length=DETAILS_MAX,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="A name it uses, when it was created, anything that helps us find it.",
    )
    contact_email = forms.EmailField(
        label="Your e-mail address", max_length=EMAIL_MAX, help_text="So that we can ask you questions and tell you the outcome."
    )
    jurisdiction = forms.ModelChoiceField(
        label="Where the child lives, if you know",
        queryset=Jurisdiction.objects.order_by("name"),
        required=False,
        empty_label="I don't know",
    )
    details = forms.CharField(
        label="Why you think the account belongs to a child", max_length=DETAILS_MAX, widget=forms.Textarea(attrs={"rows": 5})
    )

    def clean(self):
        cleaned = super().clean()
        if not cleaned.get("account_email") and not (cleaned.get("account_description") or "").strip():
            raise forms.ValidationError("Give the account's e-mail address or what you know about it.")
        return cleaned
