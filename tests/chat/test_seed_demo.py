"""seed_demo: deterministic, realistic, bounded in memory, and refusing what it should refuse."""

import hashlib
import ipaddress
import tracemalloc
from itertools import groupby

import pytest
from django.contrib.auth.hashers import is_password_usable
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command

from accounts.models import User
from chat import demo, models
from tests.chat.digest import delete_demo, rows_digest

pytestmark = pytest.mark.django_db(transaction=True)

ARGS = ["--subjects", "6", "--messages-per-subject", "9", "--logs-per-subject", "5", "--days", "30", "--end", "2025-03-31"]


@pytest.fixture(autouse=True)
def debug_on(settings):
    settings.DEBUG = True  # pytest-django turns it off; seed_demo refuses without it (tested below)


def seed(*args, **kwargs):
    call_command("seed_demo", *ARGS, *args, verbosity=0, **kwargs)


def test_counts_match_the_arguments():
    seed("--seed", "5", "--events-per-subject", "3")
    assert User.objects.count() == 6
    assert models.Message.objects.count() == 6 * 9
    assert models.AccessLog.objects.count() == 6 * 5
    assert models.UsageEvent.objects.count() == 6 * 3
    assert models.Conversation.objects.filter(user__isnull=True).count() == 0


def test_usage_events_default_to_the_number_of_log_rows():
    seed("--seed", "5")
    assert models.UsageEvent.objects.count() == models.AccessLog.objects.count() == 30


def test_same_seed_gives_identical_rows_after_a_flush():
    seed("--seed", "11")
    first = rows_digest()
    delete_demo()
    seed("--seed", "11")
    assert rows_digest() == first


def test_another_seed_gives_other_rows_and_other_emails_beside_the_first():
    seed("--seed", "11")
    first = rows_digest()
    seed("--seed", "12")
    assert User.objects.count() == 12  # no email collides between seeds
    delete_demo()
    seed("--seed", "12")
    assert rows_digest() != first


def test_a_subjects_rows_do_not_depend_on_how_many_subjects_are_generated():
    seed("--seed", "3")
    email = demo.subject_email(seed=3, number=2)
    mine = sorted(
        repr(r) for r in models.Message.objects.filter(conversation__user__email=email).values_list("content", "created")
    )
    delete_demo()
    call_command("seed_demo", *ARGS[2:], "--subjects", "3", "--seed", "3", verbosity=0)
    again = models.Message.objects.filter(conversation__user__email=email).values_list("content", "created")
    assert sorted(repr(r) for r in again) == mine


def test_running_the_same_seed_twice_is_refused_clearly():
    seed("--seed", "7")
    with pytest.raises(CommandError, match="seed 7 exist already"):
        seed("--seed", "7")


def test_if_empty_does_nothing_when_chat_data_exists():
    seed("--seed", "7")
    before = rows_digest()
    seed("--seed", "8", "--if-empty")
    assert rows_digest() == before


def test_if_empty_seeds_an_empty_database():
    seed("--seed", "8", "--if-empty")
    assert User.objects.count() == 6


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--subjects", "-1"], "too small"),
        (["--subjects", "0"], "too small"),
        (["--messages-per-subject", "-5"], "too small"),
        (["--logs-per-subject", "many"], "not a whole number"),
        (["--days", "0"], "too small"),
        (["--feedback-ratio", "1.5"], "not between 0 and 1"),
        (["--end", "31/03/2025"], "not a date"),
        (["--messages-per-subject", "100001"], "at most 100,000"),
    ],
)
def test_bad_arguments_are_refused_with_a_clear_message(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("seed_demo", *args, verbosity=0)
    assert not User.objects.exists()


def test_refuses_with_debug_off_unless_forced(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG is off"):
        seed("--seed", "1")
    assert not User.objects.exists()
    seed("--seed", "1", "--force")
    assert User.objects.count() == 6


def test_demo_accounts_are_fake_and_cannot_sign_in():
    call_command("seed_demo", *ARGS[2:], "--subjects", "60", "--seed", "2", verbosity=0)
    users = list(User.objects.all())
    assert all(not is_password_usable(u.password) for u in users)
    assert all(u.email.endswith("@example.com") for u in users)
    assert all(not u.is_staff and not u.is_superuser for u in users)
    senders = models.SupportMessage.objects.filter(user__isnull=True).values_list("email", flat=True)
    assert all(e.endswith("@example.net") for e in senders)
    for user in users:
        user.full_clean()  # country, region in its country, closure after joining


def test_demo_data_looks_like_real_use():
    call_command(
        "seed_demo", *ARGS[2:], "--subjects", "120", "--seed", "2", "--support-ratio", "0.3", "--closed-ratio", "0.1", verbosity=0
    )
    users = User.objects.all()
    assert users.filter(closed_at__isnull=False, is_active=False).exists()
    assert users.filter(region="US-CA", country="US").exists()
    assert users.filter(last_activity_at__isnull=True).count() == 0
    for user in users.filter(closed_at__isnull=False):
        assert user.last_activity_at <= user.closed_at
    ips = [ipaddress.ip_address(ip) for ip in models.AccessLog.objects.values_list("ip_address", flat=True)]
    assert any(ip.version == 6 for ip in ips) and any(ip.version == 4 for ip in ips)
    assert not any(ip.is_private for ip in ips)
    assert models.SupportMessage.objects.filter(user__isnull=True).exists()
    assert models.SupportMessage.objects.filter(user__isnull=False).exists()
    assert models.UsageEvent.objects.exclude(time_zone="").count() == models.UsageEvent.objects.count()
    # user and assistant alternate in every conversation, the user first
    messages = models.Message.objects.order_by("conversation_id", "created").values_list("conversation_id", "role")
    for _, rows in groupby(messages, key=lambda r: r[0]):
        roles = [role for _, role in rows]
        assert roles == ["user", "assistant"] * (len(roles) // 2) + ["user"] * (len(roles) % 2)


def test_user_last_activity_is_their_latest_row():
    seed("--seed", "4")
    for user in User.objects.all():
        latest = max(
            [m.created for m in models.Message.objects.filter(conversation__user=user)]
            + [a.created for a in models.AccessLog.objects.filter(user=user)]
            + [e.created for e in models.UsageEvent.objects.filter(user=user)]
        )
        assert user.last_activity_at == latest


def test_feedback_snapshots_the_conversation_up_to_the_rated_answer():
    seed("--seed", "4", "--feedback-ratio", "1")
    feedback = list(models.Feedback.objects.select_related("message__conversation"))
    assert feedback
    for fb in feedback:
        assert fb.message.role == "assistant"
        assert fb.user_id == fb.message.conversation.user_id
        assert fb.conversation_snapshot[-1]["content"] == fb.message.content
        earlier = models.Message.objects.filter(conversation=fb.message.conversation, created__lte=fb.message.created)
        assert [m["content"] for m in fb.conversation_snapshot] == list(
            earlier.order_by("created").values_list("content", flat=True)
        )


def test_attachment_files_exist_with_their_size_and_hash():
    seed("--seed", "4", "--attachments-ratio", "1")
    attachments = list(models.Attachment.objects.select_related("message"))
    assert attachments and {a.kind for a in attachments} >= {"text", "image"}
    for attachment in attachments:
        assert attachment.message.role == "user"
        with default_storage.open(attachment.file.name, "rb") as f:
            data = f.read()
        assert attachment.size == len(data)
        assert attachment.sha256 == hashlib.sha256(data).hexdigest()


def test_no_files_writes_the_rows_only():
    seed("--seed", "4", "--attachments-ratio", "1", "--no-files")
    names = list(models.Attachment.objects.values_list("file", flat=True))
    assert names
    assert not any(default_storage.exists(name) for name in names)


@pytest.mark.slow
def test_generation_memory_stays_bounded_whatever_the_row_count():
    """Chunks of whole subjects: the peak for 200k rows is about that for 90k rows (nothing holds all rows)."""

    def peak(subjects):
        spec = demo.DemoSpec(subjects=subjects, messages_per_subject=100, logs_per_subject=50, seed=1, files=False)
        tracemalloc.start()
        rows = 0
        for chunk in demo.chunks(spec):
            rows += chunk.size
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return rows, top

    small_rows, small_peak = peak(400)
    big_rows, big_peak = peak(1000)
    assert big_rows >= 200_000 and small_rows <= 100_000
    assert big_peak < 1.3 * small_peak
    assert big_peak < 64 * 1024 * 1024


@pytest.mark.postgres
def test_copy_writes_exactly_the_rows_of_the_portable_path():
    spec = demo.DemoSpec(
        subjects=8,
        messages_per_subject=12,
        logs_per_subject=6,
        seed=21,
        end=demo.dt.date(2025, 1, 31),
        attachments_ratio=0.5,
        feedback_ratio=0.5,
        support_ratio=0.5,
    )
    assert demo.seed_demo(spec, method="copy").method == "copy"
    copied = rows_digest()
    delete_demo()
    demo.seed_demo(spec, method="bulk")
    assert rows_digest() == copied


@pytest.mark.postgres
def test_copy_advances_the_sequences_so_later_inserts_do_not_collide():
    spec = demo.DemoSpec(subjects=3, messages_per_subject=4, logs_per_subject=2, seed=22, files=False)
    demo.seed_demo(spec, method="copy")
    conversation = models.Conversation.objects.first()
    message = models.Message.objects.create(conversation=conversation, role="user", content="after the seed")
    assert message.pk > max(models.Message.objects.exclude(pk=message.pk).values_list("pk", flat=True))
