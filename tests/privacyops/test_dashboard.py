"""The staff dashboard: the core's tile registry, and the register's tiles and flags on the admin index."""

import pytest
from django.test import RequestFactory
from django.urls import reverse

from inventory import models
from privacyops import dashboard
from privacyops.dashboard import Flag, Tile, register_tile, tiles_for, unregister_tile
from tests.factories import inventory as f

pytestmark = pytest.mark.django_db

INDEX = "admin:index"


@pytest.fixture
def temporary_tiles():
    keys = []

    def add(key, **kwargs):
        keys.append(key)
        register_tile(key, **kwargs)

    yield add
    for key in keys:
        unregister_tile(key)


def _request(user):
    request = RequestFactory().get("/admin/")
    request.user = user
    return request


def _tile(tiles, key):
    return next((t for t in tiles if t.key == key), None)


# --- The registry ---------------------------------------------------------------------------------


def test_apps_tiles_are_discovered_at_start_up():
    keys = {spec.key for spec in dashboard.registered_tiles()}
    assert "inventory.record_of_processing" in keys
    assert "inventory.transfer" in keys


def test_tiles_come_in_order_and_hide_when_render_returns_none(temporary_tiles):
    temporary_tiles("test.b", title="B", order=2, render=lambda r: Tile(title="B", value=2))
    temporary_tiles("test.a", title="A", order=1, render=lambda r: Tile(title="", value=1))
    temporary_tiles("test.hidden", title="Hidden", order=0, render=lambda r: None)
    keys = [t.key for t in tiles_for(_request(f.staff_with_permissions()))]
    assert "test.hidden" not in keys
    assert keys.index("test.a") < keys.index("test.b")
    # A tile without its own title takes the registered one.
    assert _tile(tiles_for(_request(f.staff_with_permissions())), "test.a").title == "A"


def test_a_failing_tile_is_shown_as_unavailable_instead_of_breaking_the_index(temporary_tiles, caplog):
    def broken(request):
        raise RuntimeError("boom")

    temporary_tiles("test.broken", title="Broken", order=0, render=broken)
    tile = _tile(tiles_for(_request(f.staff_with_permissions())), "test.broken")
    assert tile.value == "unavailable" and tile.worst_severity == "red"
    assert "test.broken" in caplog.text


def test_worst_severity_takes_the_worst_flag():
    tile = Tile(title="T", flags=[Flag("a", 1, severity="amber"), Flag("r", 1, severity="red")])
    assert tile.worst_severity == "red"
    assert Tile(title="T").worst_severity == "ok"


# --- The register's tiles on the admin index ------------------------------------------------------


def test_pm_v_3_dashboard_shows_the_seeded_flags(client, seeded):
    client.force_login(f.staff_in_role("DPO"))
    response = client.get(reverse(INDEX))
    assert response.status_code == 200
    page = response.content.decode()
    transfers = reverse("admin:inventory_transfer_changelist")
    # Both seeded transfers (to Indonesia and China) have an unspecified mechanism: amber, linked to the filter.
    transfer_tile = _tile(tiles_for(response.wsgi_request), "inventory.transfer")
    assert transfer_tile.value == 2
    assert Flag("with the mechanism unspecified", 2, f"{transfers}?flag=amber", "amber") in transfer_tile.flags
    assert not [fl for fl in transfer_tile.flags if fl.severity == "red"]
    assert f'href="{transfers}?flag=amber"' in page
    assert f'href="{transfers}?needs_review__exact=1"' in page
    assert reverse("admin:inventory_record_of_processing") in page
    # The usual app list is still there below the tiles.
    assert reverse("admin:app_list", args=["inventory"]) in page


def test_pm_v_3_a_transfer_with_no_mechanism_shows_a_red_flag(client, seeded):
    client.force_login(f.staff_in_role("DPO"))
    transfers = reverse("admin:inventory_transfer_changelist")
    assert f"{transfers}?flag=red" not in client.get(reverse(INDEX)).content.decode()

    f.TransferFactory(code="sg-to-us", to_country="US", mechanism=models.Transfer.Mechanism.NONE)
    response = client.get(reverse(INDEX))
    page = response.content.decode()
    assert f'href="{transfers}?flag=red"' in page
    tile = _tile(tiles_for(response.wsgi_request), "inventory.transfer")
    assert tile.worst_severity == "red"
    assert 'class="po-tile po-tile-red" data-tile="inventory.transfer"' in page


def test_flags_for_purposes_without_basis_and_unused_categories(client, seeded):
    f.PurposeFactory(code="orphan-purpose")
    f.DataCategoryFactory(code="unused-category")
    client.force_login(f.staff_in_role("DPO"))
    tiles = tiles_for(client.get(reverse(INDEX)).wsgi_request)
    purposes = reverse("admin:inventory_purpose_changelist")
    categories = reverse("admin:inventory_datacategory_changelist")
    assert Flag("without any lawful basis", 1, f"{purposes}?basis=none", "red") in _tile(tiles, "inventory.purpose").flags
    assert Flag("used by no purpose", 1, f"{categories}?in_use=no", "amber") in _tile(tiles, "inventory.datacategory").flags


def test_flag_links_open_changelists_filtered_to_the_flagged_rows(client, seeded):
    f.TransferFactory(code="sg-to-us", to_country="US", mechanism=models.Transfer.Mechanism.NONE)
    f.PurposeFactory(code="orphan-purpose")
    f.DataCategoryFactory(code="unused-category")
    client.force_login(f.staff_in_role("DPO"))
    for tile in tiles_for(client.get(reverse(INDEX)).wsgi_request):
        for flag in tile.flags:
            response = client.get(flag.url)
            assert response.status_code == 200, flag.url
            assert response.context["cl"].result_count == flag.count, flag


def test_tiles_respect_view_permissions(client, seeded):
    client.force_login(f.staff_with_permissions("inventory.view_transfer"))
    response = client.get(reverse(INDEX))
    keys = {t.key for t in tiles_for(response.wsgi_request)}
    assert "inventory.transfer" in keys
    assert not keys & {"inventory.purpose", "inventory.datacategory", "inventory.record_of_processing"}
    assert 'data-tile="inventory.purpose"' not in response.content.decode()


def test_staff_without_any_register_permission_sees_no_register_tile(client, seeded):
    client.force_login(f.staff_with_permissions())
    response = client.get(reverse(INDEX))
    assert response.status_code == 200
    assert not [t for t in tiles_for(response.wsgi_request) if t.key.startswith("inventory.")]
