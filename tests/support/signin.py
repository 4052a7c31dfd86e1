"""Signing in to a hub through the emulated Entra ID page, the way a browser does (no back doors)."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urljoin

import requests

from aml_jupyterhub.emulator.core.config import default_config

USERNAME_FIELDS = ("username", "login", "loginfmt", "email")


@dataclass
class Form:
    action: str
    method: str
    inputs: dict[str, str] = field(default_factory=dict)
    password_field: str | None = None


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(Form(a.get("action", ""), a.get("method", "get").lower()))
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1].inputs[a["name"]] = a.get("value", "")
            if a.get("type") == "password":
                self.forms[-1].password_field = a["name"]


def login_form(html: str) -> Form:
    parser = _FormParser()
    parser.feed(html)
    forms = [f for f in parser.forms if f.password_field]
    assert forms, "no sign-in form with a password field on the page"
    return forms[0]


def submit_credentials(
    session: requests.Session, authorize_url: str, username: str, password: str, ca_bundle: str
) -> requests.Response:
    """Open the emulated Entra authorize page and post the sign-in form; returns the 302 back to the app."""
    page = session.get(authorize_url, verify=ca_bundle, timeout=30)
    page.raise_for_status()
    form = login_form(page.text)
    data = dict(form.inputs)
    for name in USERNAME_FIELDS:
        if name in data:
            data[name] = username
    data[form.password_field] = password
    return session.post(urljoin(page.url, form.action), data=data, verify=ca_bundle, allow_redirects=False, timeout=30)


def hub_sign_in(
    hub_url: str, username: str, ca_bundle: str, password: str = "password", session: requests.Session | None = None
) -> tuple[requests.Session, requests.Response]:
    """The whole browser round trip: hub -> Entra page -> hub callback. Returns the callback's answer."""
    session = session or requests.Session()
    start = session.get(f"{hub_url}/hub/oauth_login", allow_redirects=False, timeout=30)
    assert start.status_code == 302, start.text
    back = submit_credentials(session, start.headers["Location"], username, password, ca_bundle)
    assert back.status_code == 302, back.text[:500]
    callback = session.get(back.headers["Location"], allow_redirects=False, timeout=60)
    return session, callback


def instance_session(url: str, username: str, ca_bundle: str, password: str | None = None) -> tuple[requests.Session, requests.Response]:
    """A browser-like session let in by an emulated instance's gateway: opens ``url``, signs in at the
    emulated Entra ID page when sent there, and follows the redirects back; returns the last answer."""
    session = requests.Session()
    password = password or default_config().user(username).password
    response = session.get(url, verify=ca_bundle, allow_redirects=False, timeout=30)
    for _ in range(10):
        if response.status_code not in (301, 302, 303):
            break
        location = urljoin(response.url, response.headers["Location"])
        if "/oauth2/v2.0/authorize" in location:
            response = submit_credentials(session, location, username, password, ca_bundle)
        else:
            response = session.get(location, verify=ca_bundle, allow_redirects=False, timeout=30)
    return session, response
