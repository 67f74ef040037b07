"""Signal receivers of the consents app: a sign-in or sign-up joins this browser's visitor id to the account.

The account's state then takes the choices made on that browser into account (`ledger.visitor_link`).
A visitor id already joined to another account (a shared browser) is never joined again: the browser gets
a fresh visitor id, so one person's banner clicks never decide another's consents.

Signing out forgets the browser's choice: its visitor id stays joined to the account, so a banner click by
whoever uses the browser next would otherwise change the account's consents. The next visitor starts
anonymous (no cookie, the banner asks) under a new visitor id once they choose.
"""

import uuid

from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.dispatch import receiver

from . import cookies
from .cookies import middleware as _middleware  # noqa: F401 (registers the middleware-order system check)
from .ledger import visitor_link
from .models import VisitorLink


@receiver(user_logged_in, dispatch_uid="consents.visitor_link_on_login")
def visitor_link_on_login(sender, request, user, **kwargs):
    if request is None or not hasattr(request, "COOKIES"):
        return
    choice = cookies.choice_from_request(request)
    if choice is None:
        return
    method = VisitorLink.Method.SIGNUP if getattr(request, "consents_signup", False) else VisitorLink.Method.SIGNIN
    if visitor_link(visitor_id=choice.visitor_id, subject=user, method=method) is None:
        fresh = cookies.Choice(visitor_id=uuid.uuid4())
        visitor_link(visitor_id=fresh.visitor_id, subject=user, method=method)
        cookies.choice_remember(request, fresh)


@receiver(user_logged_out, dispatch_uid="consents.choice_forget_on_logout")
def choice_forget_on_logout(sender, request, user, **kwargs):
    if request is not None and hasattr(request, "COOKIES"):
        cookies.choice_forget(request)
