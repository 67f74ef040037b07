"""Cookie-consent enforcement (PM-III-6). Skeleton: the cookies work fills it in."""


class CookieConsentMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)
