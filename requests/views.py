"""The subject's rights pages and the public intake (issue 5 sections 3 and 4; PM-IX-1 ... PM-IX-9, PM-VIII-2).

Plain pages in the style of the consents app's until the portal issue restyles them:

- Signed in (the session is the verification, PM-IX-8): "Exercise your rights" (`requests:new`), "My
  requests" (`requests:list`) and one request's page (`requests:detail`: status, due date, the timeline
  the subject is meant to see, withdraw, and the package of an access or portability request).
  Another subject's request is a 404, never a 403: a reference says nothing about whether it exists.
- Downloads (PM-IX-1): the subject re-authenticates (`accounts.reauth.reauth_required`), gets a single-use
  link (`requests.exports.download_link_issue`) and is redirected to it; the link streams the decrypted
  package (`download_open`), which uses the link up before the first byte.
- Without an account: a request form (`requests:public_new`) and a report of a child's account
  (`requests:child_report`), both rate-limited per client address; the verification link
  (`requests:verify`) and the signed status page (`requests:status`) the e-mails point at.
- Downloads without an account: there is no session to re-authenticate. The status page's button
  (`requests:status_download`, rate-limited per request) e-mails a single-use link valid
  EXPORT_LINK_MINUTES to the request's address (`exports.download_link_send`); the link
  (`requests:public_download`) asks to confirm (a GET uses nothing: mail scanners open links) and its POST
  streams the package. The status link alone never downloads: it does not expire, travels in every
  e-mail and may be forwarded or left in a browser's history, so each download needs fresh proof that the
  person reads the mailbox the request was verified by, as re-authentication is for an account.
  The public forms answer the same whether or not an account has the address given, so they cannot be
  used to find out who has an account.

Every page shows the DPO's contact (PM-XI-1), and where a jurisdiction is known its supervisory authority
(PM-IX-7), through `requests/portal/base.html`.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.reauth import reauth_required
from accounts.selectors import account_by_email
from inventory.models import Jurisdiction
from inventory.selectors import jurisdiction_for_subject
from privacyops.ratelimit import rate_limit_hit

from . import deadlines, exports, rectification, services, verification
from .forms import SUBJECT_RIGHTS, ChildReportForm, PublicRequestForm, RightsRequestForm
from .models import Channel, ExportPackage, RequestEvent, Right, RightsRequest, Status
from .selectors import requests_open_for

SIGNIN_URL = "web:signin"
INTAKE_WINDOW_SECONDS = 3600

# What each right means, with the policy-map clause it comes from; shown on "Exercise your rights".
RIGHT_INFO = {
    Right.ACCESS: (
        "PM-IX-1",
        "A copy of all the data we hold about you, from every system, with what we do with it: purposes, legal "
        "bases, who receives it, transfers abroad and how long we keep it. You download it here as one ZIP file.",
    ),
    Right.PORTABILITY: (
        "PM-IX-4",
        "Your data in structured, machine-readable files (JSON and CSV, with a documented schema) that you can "
        "take to another service. You download it here as one ZIP file.",
    ),
    Right.ERASURE: (
        "PM-IX-2",
        "We delete or anonymise your data in every system, except what a legal hold or a legal duty makes us "
        "keep, and tell you what was kept and why. Your account ends with it.",
    ),
    Right.RECTIFICATION: (
        "PM-IX-3",
        "Correct data about you that is wrong or incomplete. You propose the new values; our Data Protection "
        "Officer reviews each one and applies it.",
    ),
    Right.RESTRICTION: (
        "PM-IX-5",
        "We keep your data but stop using it for the purposes you name, for example while you contest its accuracy.",
    ),
    Right.OBJECTION: ("PM-IX-5", "You object to our using your data for the purposes you name."),
    Right.WITHDRAW_CONSENT: (
        "PM-IX-6",
        "Withdraw consent you gave. You can also do it yourself, at once, on My consents; a request is recorded "
        "and answered like the others.",
    ),
    Right.CHILD_REPORT: ("PM-VIII-2", "Tell us about an account you believe belongs to a child under 13."),
}
# The timeline entries meant for the requester: staff notes, assignments and reminders stay in the workbench.
SUBJECT_EVENT_KINDS = (RequestEvent.Kind.MOVE, RequestEvent.Kind.EMAIL, RequestEvent.Kind.VERIFY, RequestEvent.Kind.EXTEND)
PACKAGE_RIGHTS = frozenset({Right.ACCESS, Right.PORTABILITY})
# E-mailed download links per request and hour: a leaked status link must not flood the requester's mailbox.
DOWNLOAD_LINKS_PER_HOUR = 5


# --- Helpers ------------------------------------------------------------------------------------------------


def _unavailable(request, what: str):
    return _page(request, "requests/portal/unavailable.html", {"what": what}, status=503)


def _client_address(request) -> str:
    return request.META.get("REMOTE_ADDR") or "unknown"


def _intake_allowed(request, form_name: str) -> bool:
    """One more public submission from this address within the hour?"""
    return rate_limit_hit(
        key=f"requests:{form_name}:{_client_address(request)}",
        limit=settings.REQUEST_INTAKE_PER_HOUR,
        window_seconds=INTAKE_WINDOW_SECONDS,
    )


def _own_request(request, reference: str) -> RightsRequest:
    # 404 for another subject's request as for a missing one (module docstring).
    return get_object_or_404(
        RightsRequest.objects.select_related("jurisdiction", "duplicate_of"), reference=reference, subject=request.user
    )


def _timeline(rights_request: RightsRequest) -> list[RequestEvent]:
    return list(rights_request.events.filter(kind__in=SUBJECT_EVENT_KINDS).order_by("at", "id"))


def _page(request, template: str, context: dict, *, jurisdiction=None, status: int = 200):
    """Render a portal page; `jurisdiction` names the authority the page shows (PM-IX-7)."""
    context = {"zone": deadlines.deadline_zone().key, "authority": jurisdiction, **context}
    return render(request, template, context, status=status)


def _package_state(rights_request: RightsRequest) -> dict | None:
    """What the request's page says about its package, or None when the right has none."""
    if rights_request.right not in PACKAGE_RIGHTS:
        return None
    package = exports.latest_package(rights_request)
    now = timezone.now()
    lives = (
        package is not None
        and package.status == ExportPackage.Status.READY
        and package.expires_at > now
        and package.downloads < exports.MAX_DOWNLOADS
    )
    return {
        "package": package,
        # Nothing leaves before verification (PM-IX-9); `download_link_*` check it again.
        "downloadable": lives and rights_request.verified_at is not None,
        "downloads_left": exports.MAX_DOWNLOADS - package.downloads if package else 0,
        "expired": package is not None and (package.status == ExportPackage.Status.EXPIRED or package.expires_at <= now),
    }


# --- Signed-in pages ----------------------------------------------------------------------------------------


@login_required(login_url=SIGNIN_URL)
@require_GET
def request_list(request):
    """My requests: each with its status and due date, newest first (PM-IX-8, PM-IX-9)."""
    rows = RightsRequest.objects.filter(subject=request.user).select_related("jurisdiction").order_by("-received_at", "-id")
    return _page(request, "requests/portal/list.html", {"rows": rows}, jurisdiction=_subject_jurisdiction(request.user))


def _subject_jurisdiction(user):
    try:
        return jurisdiction_for_subject(subject=user)
    except Jurisdiction.DoesNotExist:
        return None


@login_required(login_url=SIGNIN_URL)
@require_http_methods(["GET", "POST"])
def request_new(request):
    """Exercise your rights: choose a right (each explained, with its PM ID), then its form. Submitted as a
    verified web request: the session proves who asks (PM-IX-8)."""
    user = request.user
    jurisdiction = _subject_jurisdiction(user)
    right = request.POST.get("right") or request.GET.get("right") or ""
    if right not in {r.value for r in SUBJECT_RIGHTS}:
        if request.method == "POST":
            messages.error(request, "Choose one of the rights below.")
        rights = [{"right": r, "policy_id": RIGHT_INFO[r][0], "text": RIGHT_INFO[r][1]} for r in SUBJECT_RIGHTS]
        return _page(request, "requests/portal/choose.html", {"rights": rights}, jurisdiction=jurisdiction)

    fields_to_fix = None
    if right == Right.RECTIFICATION:
        fields_to_fix = rectification.rectifiable_fields(subject=user)
    form = RightsRequestForm(request.POST or None, right=right, fields_to_fix=fields_to_fix)
    if request.method == "POST" and form.is_valid():
        try:
            with transaction.atomic():
                rights_request = services.rights_request_submit(
                    right=right,
                    contact_email=user.email,
                    subject=user,
                    details=form.request_details(),
                    channel=Channel.WEB,
                    verified=True,
                )
                if right == Right.RECTIFICATION and rights_request.status != Status.DUPLICATE:
                    rectification.rectification_propose(rights_request=rights_request, changes=form.changes())
        except ValidationError as error:
            _form_errors(form, error)
        else:
            return _submitted(request, rights_request)
    context = {"right": Right(right), "policy_id": RIGHT_INFO[right][0], "text": RIGHT_INFO[right][1], "form": form}
    return _page(request, "requests/portal/new.html", context, jurisdiction=jurisdiction)


def _form_errors(form: RightsRequestForm, error: ValidationError) -> None:
    """Put the service's errors on the form: a rectification's are keyed "model_label:object_pk:field"."""
    if not hasattr(error, "error_dict"):
        for message in error.messages:
            form.add_error(None, message)
        return
    by_key = {
        f"{item['model_label']}:{item['object_pk']}:{item['field']}": f"fix_{i}" for i, item in enumerate(form.fields_to_fix)
    }
    for key, messages_ in error.message_dict.items():
        for message in messages_:
            form.add_error(by_key.get(key), message)


def _submitted(request, rights_request: RightsRequest):
    zone = deadlines.deadline_zone()
    if rights_request.status == Status.DUPLICATE:
        original = rights_request.duplicate_of
        due = timezone.localtime(original.effective_due_at, zone)
        messages.warning(
            request,
            f"You already have an open request for this right, {original.reference}, which we will answer by "
            f"{due:%-d %B %Y}. So that you get one answer, we closed the new one ({rights_request.reference}) as its "
            f"duplicate. If it asked for something more, write to our Data Protection Officer quoting {original.reference}.",
        )
        return redirect("requests:detail", reference=original.reference)
    due = timezone.localtime(rights_request.effective_due_at, zone)
    messages.success(
        request,
        f"Your request is {rights_request.reference}. We will answer by {due:%-d %B %Y} at the latest; "
        "we have sent you an e-mail with the reference.",
    )
    return redirect("requests:detail", reference=rights_request.reference)


@login_required(login_url=SIGNIN_URL)
@require_GET
def request_detail(request, reference: str):
    """One of my requests: status, due date, the timeline meant for me, withdraw, and its package."""
    rights_request = _own_request(request, reference)
    context = {
        "rr": rights_request,
        "timeline": _timeline(rights_request),
        "package": _package_state(rights_request),
        "max_downloads": exports.MAX_DOWNLOADS,
    }
    return _page(request, "requests/portal/detail.html", context, jurisdiction=rights_request.jurisdiction)


@login_required(login_url=SIGNIN_URL)
@require_POST
def request_withdraw(request, reference: str):
    """The subject withdraws an open request (actor None: the requester themself, as the service has it)."""
    rights_request = _own_request(request, reference)
    try:
        services.rights_request_withdraw(rights_request=rights_request, actor=None)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, f"Request {rights_request.reference} is withdrawn. Nothing more will be done for it.")
    return redirect("requests:detail", reference=rights_request.reference)


@never_cache
@login_required(login_url=SIGNIN_URL)
@require_http_methods(["GET", "POST"])
@reauth_required
def package_download(request, reference: str):
    """After re-authentication: a new single-use link to the request's package, and straight to it. A GET
    (the way back from the re-authentication page) asks to confirm with a button first."""
    rights_request = _own_request(request, reference)
    state = _package_state(rights_request)
    if state is None:
        raise Http404("This request has no package.")
    if request.method == "GET":
        if not state["downloadable"]:
            return redirect("requests:detail", reference=rights_request.reference)
        return _page(
            request,
            "requests/portal/download.html",
            {"rr": rights_request, "package": state},
            jurisdiction=rights_request.jurisdiction,
        )
    if state["package"] is None:
        messages.error(request, "Your package is not ready yet: we e-mail you when it is.")
        return redirect("requests:detail", reference=rights_request.reference)
    try:
        token = exports.download_link_issue(package=state["package"], subject=request.user)
    except exports.DownloadError as error:  # expired, failed, downloads used up, not this subject's
        messages.error(request, str(error))
        return redirect("requests:detail", reference=rights_request.reference)
    return redirect("requests:download", token=token)


@never_cache
@login_required(login_url=SIGNIN_URL)
@require_GET
@reauth_required
def download(request, token: str):
    """Stream the package behind a single-use link; the link is used up before the first byte is sent."""
    try:
        package, chunks = exports.download_open(token=token, subject=request.user)
    except exports.DownloadError as error:
        return _page(request, "requests/portal/link_failed.html", {"error": str(error)}, status=410)
    return _package_response(package, chunks)


def _package_response(package: ExportPackage, chunks):
    response = StreamingHttpResponse(chunks, content_type="application/zip")
    filename = f"{package.request.reference}-data.zip"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    if package.size_bytes:
        response["Content-Length"] = str(package.size_bytes)
    response["X-Content-Type-Options"] = "nosniff"
    return response


# --- Links from the e-mails --------------------------------------------------------------------------------


@never_cache
@require_http_methods(["GET", "POST"])
def verify(request, token: str):
    """The verification link (section 3). A GET only asks to confirm: mail scanners open links, and the
    token is single use; the POST consumes it (`verification_link_consume`)."""
    if request.method == "GET":
        return _page(request, "requests/portal/verify.html", {"token": token})
    try:
        rights_request = verification.verification_link_consume(token=token)
    except verification.VerificationError as error:
        return _page(request, "requests/portal/verify_failed.html", {"error": str(error)}, status=410)
    status_url = reverse("requests:status", kwargs={"token": verification.status_token(rights_request)})
    context = {"rr": rights_request, "status_url": status_url}
    return _page(request, "requests/portal/verified.html", context, jurisdiction=rights_request.jurisdiction)


@never_cache
@require_GET
def status(request, token: str):
    """The signed status link: a read-only view of one request for a requester without a session."""
    try:
        rights_request = verification.request_for_status_token(token)
    except verification.VerificationError as error:
        return _page(request, "requests/portal/link_failed.html", {"error": str(error)}, status=404)
    context = {
        "rr": rights_request,
        "timeline": _timeline(rights_request),
        "token": token,
        "package": _package_state(rights_request),
        "max_downloads": exports.MAX_DOWNLOADS,
        "link_minutes": settings.EXPORT_LINK_MINUTES,
    }
    return _page(request, "requests/portal/status.html", context, jurisdiction=rights_request.jurisdiction)


@never_cache
@require_POST
def status_download(request, token: str):
    """A requester without an account asks for a download: the link goes by e-mail to the request's address,
    never to this page (module docstring). A request with an account downloads from its page after re-auth."""
    try:
        rights_request = verification.request_for_status_token(token)
    except verification.VerificationError as error:
        return _page(request, "requests/portal/link_failed.html", {"error": str(error)}, status=404)
    if rights_request.subject_id is not None:
        messages.info(request, "This request belongs to an account: sign in and download the package from My requests.")
        return redirect("requests:status", token=token)
    state = _package_state(rights_request)
    if state is None or state["package"] is None:
        messages.error(request, "This request has no package to download (yet).")
        return redirect("requests:status", token=token)
    allowed = rate_limit_hit(
        key=f"requests:download-link:{rights_request.pk}", limit=DOWNLOAD_LINKS_PER_HOUR, window_seconds=INTAKE_WINDOW_SECONDS
    )
    if not allowed:
        return _page(request, "requests/portal/rate_limited.html", {}, status=429)
    try:
        exports.download_link_send(package=state["package"])
    except exports.DownloadError as error:  # not verified, expired, downloads used up
        messages.error(request, str(error))
    else:
        messages.success(
            request,
            "We sent a download link to the e-mail address of this request. It works once, for "
            f"{settings.EXPORT_LINK_MINUTES} minutes, and replaces any link we sent before.",
        )
    return redirect("requests:status", token=token)


@never_cache
@require_http_methods(["GET", "POST"])
def public_download(request, token: str):
    """The e-mailed download link of a request without an account. A GET only asks to confirm (mail scanners
    open links, and the link works once); the POST uses it up and streams the package."""
    if request.method == "GET":
        try:
            package = exports.download_link_package(token=token)
        except exports.DownloadError as error:
            return _page(request, "requests/portal/link_failed.html", {"error": str(error)}, status=410)
        context = {"token": token, "rr": package.request, "downloads_left": exports.MAX_DOWNLOADS - package.downloads}
        return _page(request, "requests/portal/public_download.html", context, jurisdiction=package.request.jurisdiction)
    try:
        package, chunks = exports.download_open(token=token, subject=None)
    except exports.DownloadError as error:
        return _page(request, "requests/portal/link_failed.html", {"error": str(error)}, status=410)
    return _package_response(package, chunks)


# --- Public intake -----------------------------------------------------------------------------------------


def _jurisdictions():
    return Jurisdiction.objects.order_by("name")


@require_http_methods(["GET", "POST"])
def public_new(request):
    """A request without signing in (section 3): verified by a link to the address given before anything
    is done. The same answer whether or not an account has that address."""
    form = PublicRequestForm(request.POST or None)
    context = {"form": form, "jurisdictions": _jurisdictions()}
    if request.method == "POST":
        if not _intake_allowed(request, "public"):
            return _page(request, "requests/portal/rate_limited.html", {}, status=429)
        if form.is_valid():
            data = form.cleaned_data
            account = account_by_email(data["contact_email"])
            with transaction.atomic():
                # An account with this address: the request is its holder's, under the account's jurisdiction;
                # the link goes to that address, so only its holder can confirm it.
                rights_request = services.rights_request_submit(
                    right=data["right"],
                    contact_email=data["contact_email"],
                    jurisdiction=None if account else data["jurisdiction"],
                    subject=account,
                    details=data["details"].strip(),
                    channel=Channel.WEB,
                )
                if rights_request.is_open:
                    verification.verification_link_send(rights_request=rights_request)
            context = {"email": data["contact_email"], "verification_days": settings.REQUEST_VERIFICATION_DAYS}
            return _page(request, "requests/portal/public_received.html", context)
    return _page(request, "requests/portal/public_new.html", context)


@require_http_methods(["GET", "POST"])
def child_report(request):
    """PM-VIII-2: anyone reports an account they believe is a child's; the DPO investigates it as a request
    with a deadline. Linked to the account only when an account has exactly the address given, and the
    answer, the acknowledgement and its deadline are the same either way (the reporter's jurisdiction, not
    the account's), so the form never tells whether an account exists."""
    form = ChildReportForm(request.POST or None)
    if request.method == "POST":
        if not _intake_allowed(request, "child-report"):
            return _page(request, "requests/portal/rate_limited.html", {}, status=429)
        if form.is_valid():
            data = form.cleaned_data
            jurisdiction = data["jurisdiction"] or Jurisdiction.objects.filter(code=Jurisdiction.DEFAULT).first()
            if jurisdiction is None:
                return _unavailable(request, "Reports of a child's account (the register has no DEFAULT jurisdiction)")
            account = account_by_email(data["account_email"]) if data["account_email"] else None
            if account is not None and requests_open_for(account.subject_ref, Right.CHILD_REPORT).exists():
                # A second report of the same account is not closed as a duplicate: that tells the reporter, by
                # the duplicate e-mail, that the account exists. It is recorded unlinked; staff join them.
                account = None
            lines = []
            if data["account_email"]:
                lines.append(f"Reported account e-mail: {data['account_email']}")
            if data["account_description"].strip():
                lines.append(f"What the reporter knows about the account: {data['account_description'].strip()}")
            details = "\n".join(lines) + "\n\n" + data["details"].strip()
            services.rights_request_submit(
                right=Right.CHILD_REPORT,
                contact_email=data["contact_email"],
                jurisdiction=jurisdiction,
                subject=account,
                details=details,
                channel=Channel.WEB,
            )
            return _page(request, "requests/portal/child_report_received.html", {})
    return _page(request, "requests/portal/child_report.html", {"form": form})
