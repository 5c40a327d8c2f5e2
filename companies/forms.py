"""Forms for sign-in, companies and role grants."""

from __future__ import annotations

import hashlib

from django import forms
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from vbsf.forms import IdChoiceField, IdMultipleChoiceField

from .models import Company


def _throttle_keys(request: HttpRequest | None, username: str) -> list[str]:
    name = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:16]
    keys = [f"login-fail:user:{name}"]
    if request is not None and (ip := request.META.get("REMOTE_ADDR")):
        keys.append(f"login-fail:ip:{ip}")
    return keys


class ThrottledAuthenticationForm(AuthenticationForm):
    """Sign-in that locks out a username or address after repeated failures."""

    error_messages = AuthenticationForm.error_messages | {
        "throttled": (
            "Too many failed sign-in attempts. Wait %(minutes)d minutes and try again."
        ),
    }

    def clean(self) -> dict[str, object]:
        username = self.cleaned_data.get("username") or ""
        keys = _throttle_keys(self.request, username)
        limit = settings.LOGIN_MAX_FAILURES
        if any((cache.get(k) or 0) >= limit for k in keys):
            raise ValidationError(
                self.error_messages["throttled"],
                code="throttled",
                params={"minutes": max(1, settings.LOGIN_LOCKOUT_SECONDS // 60)},
            )
        try:
            cleaned = super().clean()
        except ValidationError:
            for key in keys:
                cache.add(key, 0, settings.LOGIN_LOCKOUT_SECONDS)
                try:
                    cache.incr(key)
                except ValueError:
                    cache.set(key, 1, settings.LOGIN_LOCKOUT_SECONDS)
            raise
        cache.delete_many(keys)
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
