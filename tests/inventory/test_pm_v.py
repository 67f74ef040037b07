"""PM-V-1: data may leave the subject's country, and the transfer register says for each transfer where from,
where to, to whom, which categories and on which mechanism: in the record of processing (Art. 30(1)(e)),
in the DPO's workbench, and in what the subject is told about their own data. (PM-V-2, the seeded
destinations, and PM-V-3, the flags, have their tests in test_register_matches_policy.py and test_ropa.py.)"""

import csv
import io

import pytest
from django.urls import reverse

from inventory.models import DataCategory, Recipient, Transfer
from inventory.ropa import record_of_processing, render_csv
from tests.factories.accounts import UserFactory
from tests.factories.chat import AccessLogFactory, SupportMessageFactory
from tests.inventory.pm import package_of

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("seeded")]

SEVEN = {
    "account-information",
    "user-content",
    "feedback",
    "communication-information",
    "log-data",
    "usage-data",
    "cookies",
}


def _transfer_form(**changes) -> dict:
    data = {
        "code": "sg-to-de-support",
        "name": "Singapore to Germany (support desk)",
        "description": "Support messages answered from our desk in Germany.",
        "from_country": "SG",
        "to_country": "DE",
        "recipient": Recipient.objects.get(code="alibaba-group-affiliates-sg").pk,
        "data_categories": [DataCategory.objects.get(code="communication-information").pk],
        "mechanism": Transfer.Mechanism.SCC,
    }
    data.update(changes)
    return data


def test_pm_v_1_every_transfer_in_the_record_names_route_recipient_categories_and_mechanism():
    transfers = {t["code"]: t for t in record_of_processing()["transfers"]}
    assert set(transfers) == {"sg-to-id", "sg-to-cn"}
    for code, to_country in (("sg-to-id", "ID"), ("sg-to-cn", "CN")):
        transfer = transfers[code]
        assert (transfer["from_country"], transfer["to_country"]) == ("SG", to_country)
        assert transfer["recipient"] == f"alibaba-group-affiliates-{to_country.lower()}"
        assert transfer["recipient_category"] == "group-affiliates"
        assert set(transfer["data_categories"]) == SEVEN
        assert transfer["mechanism"] == "unspecified" and transfer["mechanism_label"]


def test_pm_v_1_the_csv_record_shows_each_categorys_transfers_with_route_and_mechanism():
    rows = list(csv.DictReader(io.StringIO(render_csv(record_of_processing()))))
    log_rows = [r for r in rows if r["purpose_code"] == "provide-service" and r["category_code"] == "log-data"]
    assert len(log_rows) == 1
    assert set(log_rows[0]["transfers"].split("; ")) == {
        "sg-to-id SG->ID (unspecified, amber)",
        "sg-to-cn SG->CN (unspecified, amber)",
    }


def test_pm_v_1_the_subject_is_told_to_which_countries_and_whom_their_data_goes_and_on_what_mechanism():
    user = UserFactory(country="DE")
    AccessLogFactory(user=user)
    package = package_of(user)
    told = {t["code"]: t for t in package.processing["transfers"]}
    assert set(told) == {"sg-to-id", "sg-to-cn"}
    assert told["sg-to-cn"]["to_country"] == "CN"
    assert told["sg-to-cn"]["recipient_name"] == "Alibaba Group affiliates in China"
    assert "log-data" in told["sg-to-cn"]["data_categories"]
    assert "Transfers to other countries" in package.index
    assert "<td>SG</td><td>CN</td><td>Alibaba Group affiliates in China</td>" in package.index


def test_pm_v_1_a_transfer_the_dpo_records_joins_the_record_and_reaches_only_subjects_whose_data_it_carries(client, dpo):
    response = client.post(reverse("admin:inventory_transfer_add"), _transfer_form())
    assert response.status_code == 302, response.context["adminform"].form.errors
    recorded = next(t for t in record_of_processing()["transfers"] if t["code"] == "sg-to-de-support")
    assert (recorded["from_country"], recorded["to_country"], recorded["mechanism"], recorded["flag"]) == ("SG", "DE", "scc", "")
    assert recorded["data_categories"] == ["communication-information"]

    writer = UserFactory(country="DE")
    SupportMessageFactory(user=writer)
    assert "sg-to-de-support" in {t["code"] for t in package_of(writer).processing["transfers"]}
    silent = UserFactory(country="DE")
    AccessLogFactory(user=silent)  # no support messages: nothing of theirs goes to the desk
    assert "sg-to-de-support" not in {t["code"] for t in package_of(silent).processing["transfers"]}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"to_country": "SG"}, None),  # not a transfer: it does not leave the country
        ({"to_country": "Germany"}, "to_country"),
        ({"from_country": ""}, "from_country"),
        ({"mechanism": "handshake"}, "mechanism"),
    ],
)
def test_pm_v_1_a_transfer_without_a_route_between_two_countries_or_a_known_mechanism_is_refused(client, dpo, changes, field):
    response = client.post(reverse("admin:inventory_transfer_add"), _transfer_form(**changes))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert (field in errors) if field else errors
    assert not Transfer.objects.filter(code="sg-to-de-support").exists()
