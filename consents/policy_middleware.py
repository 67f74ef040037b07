"""Policy acceptance by continued use (PM-X-3) and the update banner's context. Skeleton: the policy work fills it in."""


class PolicyAcceptanceMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)


def policy_notice(request):
    return {}
