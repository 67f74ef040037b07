from django import template

from privacyops.dashboard import tiles_for

register = template.Library()


@register.simple_tag(takes_context=True)
def dashboard_tiles(context):
    """The dashboard tiles the signed-in user may see (see privacyops.dashboard)."""
    request = context.get("request")
    if request is None:
        return []
    return tiles_for(request)
