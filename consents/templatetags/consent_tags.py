"""Template tags that ask the one cookie check (PM-III-6): nothing non-essential is emitted without consent.

{% load consent_tags %}
{% cookies_allowed "analytics" as ok %}{% if ok %}...{% endif %}
{% analytics_beacon %}
"""

from django import template
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode

from consents import cookies

register = template.Library()


@register.simple_tag(takes_context=True)
def cookies_allowed(context, category: str) -> bool:
    request = context.get("request")
    return request is not None and cookies.cookies_allowed(request, category)


@register.simple_tag(takes_context=True)
def analytics_beacon(context) -> str:
    """The 1×1 page-view beacon (PM-III-5), only when analytics is allowed for this request."""
    request = context.get("request")
    if request is None or not cookies.cookies_allowed(request, cookies.ANALYTICS):
        return ""
    src = f"{reverse('web:beacon')}?{urlencode({'p': request.path})}"
    return format_html('<img class="beacon" src="{}" alt="" width="1" height="1">', src)
