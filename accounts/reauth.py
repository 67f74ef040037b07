"""Re-authentication before a sensitive step: a download of one's data, an erasure (issue 5 §3, PM-IX-9).

A session proves who signed in, not that the person at the keyboard now is the same one: before data
leaves or is erased we ask again. Accounts with a usable password type it; accounts that sign in with
Google or GitHub have none, so they get a one-time code by e-mail (django-otp's EmailDevice: a 6-digit
code valid OTP_EMAIL_TOKEN_VALIDITY seconds, one code at a time, a cooldown between sends, and its own
exponential throttle on wrong guesses).

Invariants:
- Freshness lives in the session: the time of the last re-authentication and the account it was for.
  `reauth_fresh` is true for REAUTH_SECONDS after it, in this session only, for this account only.
  The session key is cycled on success (a privilege step, like a sign-in).
- Failures (wrong password, wrong code) are counted per account and per client address
  (`privacyops.ratelimit`); over either limit the page refuses before checking anything, so a locked-out
  guesser learns nothing more. The per-address limit is higher: many people can share one address.
- Success and lockout are audit events (subject_ref, method, which limit); never the address or the code.
- `next` is followed only when it points at this site (`url_has_allowed_host_and_scheme`).
"""

from __future__ import annotations

import functools
import time
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render, resolve_url
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django_otp.plugins.otp_email.models import EmailDevice

from privacyops.audit import audit_record
from privacyops.ratelimit import rate_limit_exceeded, rate_limit_hit, rate_limit_reset

REAUTH_SECONDS = 600
SESSION_KEY = "accounts_reauth"
FAILURE_WINDOW_SECONDS = 15 * 60
FAILURES_PER_ACCOUNT = 5
FAILURES_PER_ADDRESS = 20
EMAIL_DEVICE_NAME = "Re-authentication code"
LOCKED_MESSAGE = (
    "Too many failed attempts. For your safety, re-authentication is paused for up to 15 minutes; "
    "try again later, or contact our Data Protection Officer if this was not you."
)


# --- Freshness --------------------------------------------------------------------------------------------


def reauth_fresh(request: HttpRequest) -> bool:
    """True when the signed-in account re-authenticated in this session within REAUTH_SECONDS."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return False
    mark = request.session.get(SESSION_KEY)
    if not isinstance(mark, dict) or mark.get("user") != str(user.pk):
        return False
    age = time.time() - float(mark.get("at", 0))
    return 0 <= age <= REAUTH_SECONDS


def reauth_mark(request: HttpRequest) -> None:
    """Record that the signed-in account re-authenticated now (a new session key, like a sign-in)."""
    request.session.cycle_key()
    request.session[SESSION_KEY] = {"user": str(request.user.pk), "at": time.time()}


def reauth_required(view):
    """Decorator: the view runs only for a signed-in account that re-authenticated recently; anyone else is
    sent to sign in, or to the re-auth page, with ?next= back here."""

    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not reauth_fresh(request):
            return redirect(f"{reverse('accounts:reauth')}?{urlencode({'next': request.get_full_path()})}")
        return view(request, *args, **kwargs)

    return wrapped


# --- Failure counting -------------------------------------------------------------------------------------


def _limits(request) -> list[tuple[str, str, int]]:
    address = request.META.get("REMOTE_ADDR") or "unknown"
    return [
        ("account", f"reauth:account:{request.user.pk}", FAILURES_PER_ACCOUNT),
        ("address", f"reauth:address:{address}", FAILURES_PER_ADDRESS),
    ]


def _locked(request) -> bool:
    return any(
        rate_limit_exceeded(key=key, limit=limit, window_seconds=FAILURE_WINDOW_SECONDS) for _, key, limit in _limits(request)
    )


def _failed(request, method: str) -> bool:
    """Count one failure on every limit; True when this failure locked the page (audited once, here)."""
    scopes = []
    for scope, key, limit in _limits(request):
        allowed = rate_limit_hit(key=key, limit=limit, window_seconds=FAILURE_WINDOW_SECONDS)
        if not allowed or rate_limit_exceeded(key=key, limit=limit, window_seconds=FAILURE_WINDOW_SECONDS):
            scopes.append(scope)
    if scopes:
        audit_record(
            actor=None,
            action="account.reauth_locked",
            target=request.user,
            subject=request.user,
            details={"method": method, "limits": scopes, "window_seconds": FAILURE_WINDOW_SECONDS},
        )
    return bool(scopes)


def _succeeded(request, method: str) -> None:
    audit_record(
        actor=None, action="account.reauthenticated", target=request.user, subject=request.user, details={"method": method}
    )
    # The account's own failures are forgiven; the address's are not (one good account must not reset a
    # guesser's count for the others).
    rate_limit_reset(key=f"reauth:account:{request.user.pk}", window_seconds=FAILURE_WINDOW_SECONDS)
    reauth_mark(request)


# --- The e-mail code --------------------------------------------------------------------------------------


def email_device_for(user) -> EmailDevice:
    """The account's re-auth EmailDevice for its current address (created the first time)."""
    device = EmailDevice.objects.filter(user=user, name=EMAIL_DEVICE_NAME, email=user.email).first()
    if device is None:
        device = EmailDevice.objects.create(user=user, name=EMAIL_DEVICE_NAME, email=user.email, confirmed=True)
    return device


# --- The page ---------------------------------------------------------------------------------------------


class PasswordForm(forms.Form):
    password = forms.CharField(label="Your password", strip=False, widget=forms.PasswordInput(attrs={"autofocus": True}))


class CodeForm(forms.Form):
    code = forms.CharField(
        label="The code we e-mailed you",
        max_length=16,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}),
    )


def _safe_next(request) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return resolve_url(settings.LOGIN_REDIRECT_URL)


@sensitive_post_parameters("password", "code")
@never_cache
@login_required
def reauth(request: HttpRequest) -> HttpResponse:
    """GET: the form (password, or an e-mailed code for accounts without one). POST: check it."""
    user = request.user
    method = "password" if user.has_usable_password() else "email_code"
    next_url = _safe_next(request)
    context = {"method": method, "next": next_url, "email": user.email, "error": "", "notice": "", "code_sent": False}
    status = 200
    form = PasswordForm() if method == "password" else CodeForm()

    if request.method == "POST":
        action = request.POST.get("action", "check")
        if _locked(request):
            context["error"], status = LOCKED_MESSAGE, 429
        elif method == "email_code" and action == "send":
            device = email_device_for(user)
            allowed, _ = device.generate_is_allowed()
            device.generate_challenge({"controller": _controller(), "minutes": _code_minutes()})
            context["code_sent"] = True
            context["notice"] = (
                f"We e-mailed a code to {user.email}."
                if allowed
                else "We sent you a code a moment ago; wait a minute before asking for another."
            )
        elif method == "password":
            form = PasswordForm(request.POST)
            if form.is_valid() and user.check_password(form.cleaned_data["password"]):
                _succeeded(request, method)
                return redirect(next_url)
            context["error"], status = _failure_message(request, method, "That password is not right.")
        else:
            form = CodeForm(request.POST)
            context["code_sent"] = True
            device = email_device_for(user)
            if not device.verify_is_allowed()[0]:
                # django-otp's own throttle (seconds, doubling): not a failure of ours to count again.
                context["error"], status = "Too many wrong codes in a row: wait a few seconds, then try again.", 429
            elif form.is_valid() and device.verify_token(form.cleaned_data["code"].strip()):
                _succeeded(request, method)
                return redirect(next_url)
            else:
                context["error"], status = _failure_message(
                    request, method, "That code is not right, or it has expired: ask for a new one."
                )
    context["form"] = form
    return render(request, "accounts/reauth.html", context, status=status)


def _failure_message(request, method: str, message: str) -> tuple[str, int]:
    if _failed(request, method):
        return LOCKED_MESSAGE, 429
    return message, 200


def _controller() -> dict:
    return {"name": settings.CONTROLLER_NAME, "dpo_name": settings.DPO_NAME, "dpo_email": settings.DPO_EMAIL}


def _code_minutes() -> int:
    from django_otp.plugins.otp_email.conf import settings as otp_settings

    return max(1, otp_settings.OTP_EMAIL_TOKEN_VALIDITY // 60)
