"""The workbench helpers every app shares (privacyops.admin_utils): one badge, one admin URL helper, one way
to list a refusal's messages, one way for a custom screen to find its object (issue 16)."""

import pytest
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.http import Http404
from django.test import RequestFactory

from privacyops.admin_utils import admin_object_or_404, admin_url, admin_url_for, badge, validation_messages
from requests.models import RightsRequest
from tests.factories.accounts import StaffFactory
from tests.factories.requests import RightsRequestFactory


def test_a_badge_takes_a_known_severity_and_shows_anything_else_as_info():
    assert badge("Overdue", "red") == '<span class="po-badge po-badge-red">Overdue</span>'
    assert badge("<b>x</b>", "purple") == '<span class="po-badge po-badge-info">&lt;b&gt;x&lt;/b&gt;</span>'
    assert 'title="due soon"' in badge("1 Dec", "amber", title="due soon")


def test_admin_urls_by_name_and_per_app():
    assert admin_url("requests_rightsrequest_change", 7) == "/admin/requests/rightsrequest/7/change/"
    assert admin_url_for("requests")("rightsrequest_change", 7) == admin_url("requests_rightsrequest_change", 7)


def test_validation_messages_lists_field_and_form_errors():
    assert validation_messages(ValidationError("Nope.")) == ["Nope."]
    assert sorted(validation_messages(ValidationError({"a": ["One."], "b": ["Two."]}))) == ["One.", "Two."]


@pytest.mark.django_db
@pytest.mark.parametrize("object_id", ["1\x00", "abc", "9" * 10_000, "../../", "987654321", ""])
def test_a_custom_screen_finds_nothing_for_a_malformed_id(object_id):
    RightsRequestFactory()
    request = RequestFactory().get("/")
    request.user = StaffFactory(is_superuser=True)
    with pytest.raises(Http404):
        admin_object_or_404(admin.site._registry[RightsRequest], request, object_id)


@pytest.mark.django_db
def test_a_custom_screen_finds_its_object_by_the_quoted_id():
    rights_request = RightsRequestFactory()
    request = RequestFactory().get("/")
    request.user = StaffFactory(is_superuser=True)
    model_admin = admin.site._registry[RightsRequest]
    assert admin_object_or_404(model_admin, request, str(rights_request.pk)) == rights_request
    only = RightsRequest.objects.filter(pk=rights_request.pk).select_related("jurisdiction")
    assert admin_object_or_404(model_admin, request, str(rights_request.pk), queryset=only) == rights_request
