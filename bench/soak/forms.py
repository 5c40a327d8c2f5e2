"""HTML forms as a browser sees them, for journeys driven over plain HTTP.

Own code (the standard library's ``html.parser``, some 80 lines) rather than
a scraping library: the console's pages are server-rendered and regular, and
a journey only needs what a browser would send for one form: its hidden
fields, checked radios, selected options, fields outside the form that name
it with ``form=``, and the pressed button.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class Field:
    tag: str
    name: str
    value: str
    type: str = ""
    checked: bool = False
    text: str = ""


@dataclass
class Form:
    attrs: dict[str, str]
    fields: list[Field] = field(default_factory=list)

    @property
    def action(self) -> str:
        return self.attrs.get("action", "")

    def buttons(self) -> list[Field]:
        return [f for f in self.fields if f.tag == "button" or f.type == "submit"]

    def has_button(self, name: str = "", text: str = "") -> bool:
        return self.button(name, text) is not None

    def button(self, name: str = "", text: str = "") -> Field | None:
        for b in self.buttons():
            if (not name or b.name == name) and (not text or text in b.text):
                return b
        return None

    def data(
        self, overrides: dict[str, str] | None = None, *, press: Field | None = None
    ) -> dict[str, str]:
        """What a browser posts: every successful control, and ``press``."""
        posted: dict[str, str] = {}
        for f in self.fields:
            if not f.name or f.tag == "button" or f.type == "submit":
                continue
            if f.type in ("radio", "checkbox") and not f.checked:
                continue
            if f.tag == "select" and f.name in posted:
                continue
            posted[f.name] = f.value
        if press is not None and press.name:
            posted[press.name] = press.value
        posted.update(overrides or {})
        return posted


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self.by_id: dict[str, Form] = {}
        self.current: Form | None = None
        self.loose: list[tuple[str, Field]] = []  # fields with form="id"
        self.select: Field | None = None
        self.select_first: str | None = None
        self.button: Field | None = None

    def _add(self, attrs: dict[str, str], item: Field) -> None:
        if owner := attrs.get("form"):
            self.loose.append((owner, item))
        elif self.current is not None:
            self.current.fields.append(item)

    def handle_starttag(self, tag: str, raw: list[tuple[str, str | None]]) -> None:
        attrs = {k: v or "" for k, v in raw}
        if tag == "form":
            self.current = Form(attrs)
            self.forms.append(self.current)
            if attrs.get("id"):
                self.by_id[attrs["id"]] = self.current
        elif tag == "input":
            kind = attrs.get("type", "text").lower()
            item = Field("input", attrs.get("name", ""), attrs.get("value", ""), kind)
            item.checked = "checked" in attrs
            self._add(attrs, item)
        elif tag == "button":
            kind = attrs.get("type", "submit").lower()
            self.button = Field("button", attrs.get("name", ""), attrs.get("value", ""))
            self.button.type = kind
            self._add(attrs, self.button)
        elif tag == "select":
            self.select = Field("select", attrs.get("name", ""), "")
            self.select_first = None
            self._add(attrs, self.select)
        elif tag == "option" and self.select is not None:
            value = attrs.get("value", "")
            if self.select_first is None:
                self.select_first = value
                self.select.value = value
            if "selected" in attrs:
                self.select.value = value
        elif tag == "textarea":
            self._add(attrs, Field("textarea", attrs.get("name", ""), ""))

    def handle_data(self, data: str) -> None:
        if self.button is not None:
            self.button.text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.current = None
        elif tag == "select":
            self.select = None
        elif tag == "button":
            self.button = None


def forms(page: str) -> list[Form]:
    parser = _FormParser()
    parser.feed(page)
    for owner, item in parser.loose:
        if owner in parser.by_id:
            parser.by_id[owner].fields.append(item)
    return parser.forms


def find_form(
    page: str, *, button: str = "", text: str = "", action: str = "", form_id: str = ""
) -> Form | None:
    """The first form with that button (name or text), action part or id."""
    for form in forms(page):
        if form_id and form.attrs.get("id") != form_id:
            continue
        if action and action not in form.action:
            continue
        if (button or text) and not form.has_button(button, text):
            continue
        return form
    return None
