"""Forms for sign-in, companies, role grants and the audit filters."""

from __future__ import annotations

from datetime import date
from typing import Any
from urllib.parse import urlsplit

from django import forms
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm, SetPasswordForm
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db.models import QuerySet

from vbsf.forms import IdChoiceField, IdMultipleChoiceField
from vbsf.http import OutboundError, check_webhook_url

from . import signin_throttle
from .audit import client_ip
from .models import Company, NotificationChannel, Role
from .people import Roles
from .selectors import audit_category_choices
from .services import signin_failed, signin_locked_out, signin_succeeded


class ThrottledAuthenticationForm(AuthenticationForm):
    """The one password sign-in of the console and the admin site alike,
    throttled per username at an address, per username and per address
    (``signin_throttle``)."""

    error_messages = AuthenticationForm.error_messages | {
        "throttled": "Too many failed sign-in attempts. Wait %(wait)s and try again.",
    }

    def clean(self) -> dict[str, object]:
        username = self.cleaned_data.get("username")
        if username is None or not self.cleaned_data.get("password"):
            # A field was refused (no username or password): nothing is
            # tried, so there is nothing to throttle or audit.
            return super().clean()
        # Every attempt is audited: success, failure (the username typed,
        # never the password) and refusal while locked out.
        address = client_ip(self.request) if self.request is not None else None
        refusal = signin_throttle.lockout(username, address)
        if refusal is not None:
            signin_locked_out(
                username=username,
                ip_address=address,
                locked=refusal.locked,
                rules=refusal.rule_names,
            )
            raise ValidationError(
                self.error_messages["throttled"],
                code="throttled",
                params={"wait": refusal.wait},
            )
        try:
            cleaned = super().clean()
        except ValidationError:
            signin_throttle.record_failure(username, address)
            signin_failed(username=username, ip_address=address)
            raise
        signin_throttle.record_success(username, address)
        signin_succeeded(user=self.user_cache, ip_address=address)
        return cleaned


class CompanyForm(forms.ModelForm):
    class Meta:
        model = Company
        fields = ["name", "contact_emails"]
        labels = {"name": "Company name", "contact_emails": "Alert contacts"}
        widgets = {"contact_emails": forms.TextInput()}

    def clean_contact_emails(self) -> str:
        raw = self.cleaned_data.get("contact_emails", "")
        emails = [e.strip() for e in raw.split(",") if e.strip()]
        validator = forms.EmailField()
        for email in emails:
            try:
                validator.clean(email)
            except ValidationError:
                raise ValidationError(
                    f"{email[:80]} is not an email address.", code="invalid_email"
                ) from None
        return ", ".join(emails)


class MoveOrgsForm(forms.Form):
    """Move orgs of one company to another company the user manages."""

    to_company = IdChoiceField(
        queryset=Company.objects.none(),
        label="Move to company",
        error_messages={
            "invalid_choice": "Pick one of the listed companies.",
        },
    )
    orgs = IdMultipleChoiceField(
        queryset=None,
        label="Organizations",
        widget=forms.CheckboxSelectMultiple,
        error_messages={"invalid_choice": "Pick orgs of this company only."},
    )

    def __init__(self, *args: object, company: Company, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["to_company"].queryset = Company.objects.exclude(pk=company.pk)
        self.fields["orgs"].queryset = company.orgs.order_by("alias")
        self.fields["orgs"].initial = list(company.orgs.values_list("pk", flat=True))

    def error_list(self) -> list[str]:
        return [error for errors in self.errors.values() for error in errors]


AUDIT_DATE_MIN = date(2000, 1, 1)
AUDIT_DATE_MAX = date(2099, 12, 31)
_DATE_ERRORS = {"invalid": "Enter a date as YYYY-MM-DD, e.g. 2026-01-31."}


def _printable(value: str) -> None:
    if not value.isprintable():
        raise ValidationError(
            "Remove the control or invisible characters.", code="unprintable"
        )


def _date_input() -> forms.DateInput:
    return forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")


class AuditFilterForm(forms.Form):
    """The audit page's filters, shared by its CSV export. Every value is
    bounded and checked; invalid filters show no events rather than more
    events than were asked for."""

    category = forms.ChoiceField(
        label="Action",
        required=False,
        choices=[("", "All actions"), *audit_category_choices()],
        error_messages={"invalid_choice": "Pick one of the listed kinds of action."},
    )
    # An internal action code or prefix (org.update, org.), as links from
    # other pages carry; not shown as a field.
    action = forms.CharField(
        required=False,
        max_length=64,
        widget=forms.HiddenInput,
        validators=[
            RegexValidator(
                r"\A[a-z0-9_.]+\Z",
                "An action code has lowercase letters, digits, dots and "
                "underscores, e.g. org.update.",
                code="invalid_action",
            )
        ],
    )
    actor = forms.CharField(
        label="User", required=False, max_length=150, validators=[_printable]
    )
    company = IdChoiceField(
        label="Company",
        required=False,
        queryset=Company.objects.none(),
        empty_label="All companies",
        error_messages={"invalid_choice": "Pick one of the listed companies."},
    )
    org = forms.CharField(
        label="Org", required=False, max_length=80, validators=[_printable]
    )
    date_from = forms.DateField(
        label="From",
        required=False,
        widget=_date_input(),
        error_messages=_DATE_ERRORS,
    )
    date_to = forms.DateField(
        label="To",
        required=False,
        widget=_date_input(),
        error_messages=_DATE_ERRORS,
    )

    def __init__(self, *args: Any, companies: QuerySet[Company], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["company"].queryset = companies
        self.fields["actor"].widget.attrs["placeholder"] = "Username"
        self.fields["org"].widget.attrs["placeholder"] = "Org alias or ID"

    def _clean_day(self, name: str) -> date | None:
        day = self.cleaned_data.get(name)
        if day is not None and not AUDIT_DATE_MIN <= day <= AUDIT_DATE_MAX:
            raise ValidationError(
                f"Pick a date between {AUDIT_DATE_MIN} and {AUDIT_DATE_MAX}.",
                code="out_of_range",
            )
        return day

    def clean_date_from(self) -> date | None:
        return self._clean_day("date_from")

    def clean_date_to(self) -> date | None:
        return self._clean_day("date_to")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", "The end date is before the start date.")
        return cleaned

    def selector_filters(self) -> dict[str, Any]:
        """The filters as ``audit_event_list`` arguments; call when valid."""
        data = self.cleaned_data
        return {
            "category": data["category"],
            "action": data["action"],
            "actor": data["actor"],
            "company_id": data["company"].pk if data["company"] else None,
            "org": data["org"],
            "date_from": data["date_from"],
            "date_to": data["date_to"],
        }


# --- people -----------------------------------------------------------------

COMPANY_ROLE_CHOICES = [
    ("", "No access"),
    (Role.OPERATOR.value, Role.OPERATOR.label),
    (Role.SUPPORT.value, Role.SUPPORT.label),
    (Role.VIEWER.value, Role.VIEWER.label),
]


class RolesForm(forms.Form):
    """Administrator of every company, or a role in each company."""

    administrator = forms.BooleanField(
        label="Administrator (every company)", required=False
    )

    def __init__(
        self, *args: Any, companies: QuerySet[Company], initial_roles: Roles, **kw: Any
    ) -> None:
        super().__init__(*args, **kw)
        self.companies = list(companies)
        self.fields["administrator"].initial = initial_roles.administrator
        for company in self.companies:
            self.fields[f"company_{company.pk}"] = forms.ChoiceField(
                label=f"Role in {company.name}",
                choices=COMPANY_ROLE_CHOICES,
                required=False,
                initial=(initial_roles.companies or {}).get(company.pk, ""),
                error_messages={"invalid_choice": "Pick one of the listed roles."},
            )

    def company_fields(self) -> list[forms.BoundField]:
        return [self[f"company_{c.pk}"] for c in self.companies]

    def roles(self) -> Roles:
        data = self.cleaned_data
        if data["administrator"]:
            return Roles(administrator=True, companies={})
        return Roles(
            companies={
                c.pk: data[f"company_{c.pk}"]
                for c in self.companies
                if data.get(f"company_{c.pk}")
            }
        )


class InviteForm(RolesForm):
    email = forms.EmailField(label="Email", max_length=254)

    field_order = ["email", "administrator"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if not self.errors and not (
            self.roles().administrator or self.roles().companies
        ):
            raise ValidationError(
                "Give the new user a role: Administrator, or a role in a company.",
                code="no_role",
            )
        return cleaned


class InvitationAcceptForm(SetPasswordForm):
    """Django's set-password form: its validators, its two fields."""


# --- notifications ----------------------------------------------------------


class WriteOnlyURLInput(forms.URLInput):
    """A URL field that never shows a value, not even the one just typed
    when the form comes back with errors: the URL may be a credential."""

    def format_value(self, value: Any) -> None:
        return None


class NotificationsForm(forms.Form):
    """A company's email recipients and webhook."""

    contact_emails = forms.CharField(
        label="Email recipients",
        required=False,
        max_length=2000,
        help_text="Comma-separated addresses.",
    )
    # Never filled in from the stored URL: it is a credential, shown only by
    # host and fingerprint once saved; empty keeps the current webhook.
    webhook_url = forms.CharField(
        label="Webhook URL",
        required=False,
        max_length=500,
        help_text="https only.",
        widget=WriteOnlyURLInput(attrs={"autocomplete": "off"}),
    )
    webhook_enabled = forms.BooleanField(label="Send to the webhook", required=False)
    webhook_remove = forms.BooleanField(label="Remove the webhook", required=False)

    def __init__(
        self,
        *args: Any,
        company: Company,
        channel: NotificationChannel | None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault(
            "initial",
            {
                "contact_emails": company.contact_emails,
                "webhook_enabled": channel.enabled if channel else True,
            },
        )
        super().__init__(*args, **kwargs)
        if channel is None:
            del self.fields["webhook_remove"]
        else:
            self.fields["webhook_url"].label = "New webhook URL"
            self.fields["webhook_url"].help_text = (
                f"https only. Leave empty to keep the webhook to {channel.url_host} "
                f"(fingerprint {channel.url_fingerprint})."
            )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if cleaned.get("webhook_remove") and cleaned.get("webhook_url"):
            raise ValidationError(
                "Enter a new webhook URL or remove the webhook, not both.",
                code="remove_and_replace",
            )
        return cleaned

    def clean_contact_emails(self) -> str:
        return CompanyForm.clean_contact_emails(self)  # type: ignore[arg-type]

    def clean_webhook_url(self) -> str:
        url = self.cleaned_data.get("webhook_url", "").strip()
        if not url:
            return ""
        try:
            forms.URLField(assume_scheme="https").clean(url)
            url = check_webhook_url(url)
        except ValidationError:
            raise ValidationError(
                "Enter a full https:// address.", code="invalid_url"
            ) from None
        except OutboundError as exc:
            raise ValidationError(str(exc), code="refused_url") from None
        # localhost names are loopback by definition (RFC 6761): say so now,
        # not at the first send (other names meet the guard after DNS).
        host = (urlsplit(url).hostname or "").rstrip(".")
        if (host == "localhost" or host.endswith(".localhost")) and (
            host not in settings.WEBHOOK_ALLOWED_HOSTS
        ):
            raise ValidationError(
                "The address is not a public one.", code="refused_url"
            )
        return url
