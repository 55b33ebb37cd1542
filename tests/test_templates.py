"""No template runs inline JavaScript or carries inline CSS: scripts are static files the
pages include (``src=``) and configuration is data (``json_script``), so the demo's pages
can send a Content-Security-Policy without 'unsafe-inline'."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from chatdemo.views import CONTENT_SECURITY_POLICY
from tests.daphne import ROOT

TEMPLATES = sorted(
    [*(ROOT / "templates").rglob("*.html"), *(ROOT / "wsauth" / "templates").rglob("*.html")]
)
DEMO_TEMPLATES = [t for t in TEMPLATES if t.is_relative_to(ROOT / "templates")]


class Inline(HTMLParser):
    """The inline code of a page: script bodies, <style> bodies, on* and style attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._in: tuple[str, dict[str, str | None]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        self.found += [f"<{tag} {n}=...>" for n in named if n.startswith("on") or n == "style"]
        if tag in ("script", "style"):
            self._in = (tag, named)

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in is None or not data.strip():
            return
        tag, attrs = self._in
        if tag == "script" and attrs.get("type") == "application/json":
            return  # json_script: data, never run
        self.found.append(f"<{tag}> {data.strip()[:60]!r}")


def inline(html: str) -> list[str]:
    parser = Inline()
    parser.feed(html)
    return parser.found


def test_the_scan_sees_inline_code():
    assert inline("<script>alert(1)</script>") == ["<script> 'alert(1)'"]
    assert inline('<script type="module">import "x";</script>')
    assert inline("<b onclick='x()'>") == ["<b onclick=...>"]
    assert inline("<style>b{}</style>")
    assert inline('<script src="/static/a.js"></script>') == []
    assert inline('<script type="application/json" id="c">{"a": 1}</script>') == []


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: str(t.relative_to(ROOT)))
def test_no_template_contains_an_inline_script(template: Path):
    # (wsauth's admin page keeps an inline <style>: the admin sends no CSP of its own.)
    scripts = [f for f in inline(template.read_text()) if f.startswith("<script") or " on" in f]
    assert scripts == []


@pytest.mark.parametrize("template", DEMO_TEMPLATES, ids=lambda t: str(t.relative_to(ROOT)))
def test_the_demo_templates_have_no_inline_code_at_all(template: Path):
    assert inline(template.read_text()) == []


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/", "/chat/lobby/", "/echo/"])
def test_the_demo_pages_send_a_strict_csp_and_include_only_static_files(client, url):
    user = get_user_model().objects.create_user("ann", first_name="Ann")
    client.force_login(user)
    response = client.get(url)
    assert response.status_code == 200
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "unsafe" not in CONTENT_SECURITY_POLICY
    html = response.content.decode()
    assert inline(html) == []
    if url != "/":
        assert '<script type="module" src="/static/chatdemo/' in html
    if url == "/chat/lobby/":
        assert '<script id="room-name" type="application/json">"lobby"</script>' in html
