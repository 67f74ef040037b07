"""Template context for the cookie banner, the GPC notice and the language picker (PM-III-6, PM-III-7).

Everything is computed lazily: a template that shows no banner (the admin's) costs no query.
"""

from django.utils.functional import SimpleLazyObject, cached_property

from consents import cookies


class CookieConsentContext:
    def __init__(self, request):
        self.request = request

    @cached_property
    def banner(self) -> bool:
        return cookies.banner_needed(self.request)

    @cached_property
    def gpc(self) -> bool:
        return cookies.gpc_signal(self.request)

    @cached_property
    def language(self) -> str:
        return cookies.consent_language(self.request)

    @cached_property
    def languages(self) -> list[tuple[str, str]]:
        return cookies.notice_languages(self.request)

    @cached_property
    def categories(self) -> list[dict]:
        """The optional categories with the notice text shown for each (the text the ledger will point at)."""
        rows = []
        for purpose in cookies.optional_purposes(self.request):
            notice = cookies.notice_current(purpose=purpose, language=self.language)
            rows.append(
                {
                    "purpose": purpose,
                    "notice": notice,
                    "choice": cookies.current_choice(self.request, purpose.cookie_category),
                    "allowed": cookies.cookies_allowed(self.request, purpose.cookie_category),
                    "refused_by_gpc": self.gpc and cookies.gpc_refuses(purpose),
                }
            )
        return rows


def cookie_consent(request):
    return {"cookie_consent": SimpleLazyObject(lambda: CookieConsentContext(request))}
