"""Template context for the cookie banner. Skeleton: the cookies work fills it in."""


def cookie_consent(request):
    return {}
