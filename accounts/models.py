"""Account holders of the chat service and the staff who work the register.

`subject_ref` is the only identifier that ledgers, logs and the API carry for a data subject: once an
account is erased, what must be kept no longer points at a person.
"""

import uuid

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.core.validators import RegexValidator
from django.db import models
from django.db.models.functions import Concat
from django.utils import timezone

country_code = RegexValidator(r"^[A-Z]{2}$", "Use an ISO 3166-1 alpha-2 code such as US or SG.")
region_code = RegexValidator(r"^[A-Z]{2}-[A-Z0-9]{1,3}$", "Use an ISO 3166-2 code such as US-CA.")


class UserManager(BaseUserManager):
    use_in_migrations = True

    def _create_user(self, email, password, **extra_fields):
        if not email:
            raise ValueError("An account needs an email address.")
        user = self.model(email=self.normalize_email(email).lower(), **extra_fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email, password=None, **extra_fields):
        extra_fields.setdefault("is_staff", False)
        extra_fields.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra_fields)

    def create_superuser(self, email, password=None, **extra_fields):
        extra_fields.setdefault("is_staff", True)
        extra_fields.setdefault("is_superuser", True)
        if not extra_fields["is_staff"] or not extra_fields["is_superuser"]:
            raise ValueError("A superuser must have is_staff and is_superuser set.")
        return self._create_user(email, password, **extra_fields)


class User(AbstractBaseUser, PermissionsMixin):
    """An account: a data subject of the chat service (PM-I-1), or a member of staff."""

    email = models.EmailField("email address", unique=True)
    name = models.CharField(max_length=200, blank=True)
    subject_ref = models.UUIDField(
        default=uuid.uuid4,
        unique=True,
        editable=False,
        help_text="Random identifier that ledgers and logs use instead of the person's name or email.",
    )
    country = models.CharField(max_length=2, blank=True, validators=[country_code], help_text="ISO 3166-1 alpha-2, e.g. SG.")
    region = models.CharField(
        max_length=6,
        blank=True,
        validators=[region_code],
        help_text="ISO 3166-2 subdivision, e.g. US-CA; must belong to the country.",
    )
    date_of_birth = models.DateField(null=True, blank=True)
    last_activity_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True, help_text="Account closure; retention may count from it.")
    is_staff = models.BooleanField(default=False, help_text="Can sign in to the workbench.")
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    EMAIL_FIELD = "email"
    USERNAME_FIELD = "email"
    REQUIRED_FIELDS = []

    class Meta:
        verbose_name = "user"
        verbose_name_plural = "users"
        constraints = [
            models.CheckConstraint(
                name="user_region_in_country",
                condition=models.Q(region="") | models.Q(region__startswith=Concat(models.F("country"), models.Value("-"))),
                violation_error_message="The region must be a subdivision of the country (US-CA goes with US).",
            ),
            models.CheckConstraint(
                name="user_closed_after_joined",
                condition=models.Q(closed_at__isnull=True) | models.Q(closed_at__gte=models.F("date_joined")),
            ),
        ]
        indexes = [models.Index(fields=["closed_at"]), models.Index(fields=["last_activity_at"])]

    def __str__(self):
        return self.email

    def clean(self):
        super().clean()
        self.email = self.__class__.objects.normalize_email(self.email).lower()

    def get_full_name(self):
        return self.name or self.email

    def get_short_name(self):
        return self.name or self.email


class SocialIdentity(models.Model):
    """A sign-in link to a social network account: Account Information from a third party (PM-I-8)."""

    class Provider(models.TextChoices):
        GOOGLE = "google", "Google"
        GITHUB = "github", "GitHub"

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="social_identities")
    provider = models.CharField(max_length=20, choices=Provider.choices)
    provider_uid = models.CharField(max_length=255)
    linked_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "social identities"
        constraints = [
            models.UniqueConstraint(fields=["provider", "provider_uid"], name="social_identity_unique_uid"),
            models.CheckConstraint(name="social_identity_known_provider", condition=models.Q(provider__in=["google", "github"])),
        ]

    def __str__(self):
        return f"{self.get_provider_display()} link of {self.user_id}"
