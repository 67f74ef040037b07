"""Admin forms for the email-login user. Emails are stored lower-case, so uniqueness is checked that way."""

from django.contrib.auth.forms import BaseUserCreationForm
from django.contrib.auth.forms import UserChangeForm as DjangoUserChangeForm
from django.core.exceptions import ValidationError

from .models import User
from .selectors import account_by_email, normalised_email


class UserCreationForm(BaseUserCreationForm):
    """Email and the password twice (checked against AUTH_PASSWORD_VALIDATORS)."""

    class Meta:
        model = User
        fields = ("email",)

    def clean_email(self):
        email = normalised_email(self.cleaned_data["email"])
        if account_by_email(email, active_only=False) is not None:
            raise ValidationError("An account with this email address already exists.", code="unique")
        return email


class UserChangeForm(DjangoUserChangeForm):
    class Meta:
        model = User
        fields = "__all__"

    def clean_email(self):
        email = normalised_email(self.cleaned_data["email"])
        holder = account_by_email(email, active_only=False)
        if holder is not None and holder.pk != self.instance.pk:
            raise ValidationError("An account with this email address already exists.", code="unique")
        return email
