"""Tests of the Snapgram demo app over real HTTP, with no browser.

Pages are parsed into a small id/class index so the tests check the same
element ids the example SOPs rely on, not just substrings of the HTML.
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.cookiejar import CookieJar

import pytest

from pytest_sop.demo import DEFAULT_ACCOUNTS, DemoServer, serve
from pytest_sop.demo.store import SEED_TASKS

ACCOUNTS = {"alice": "alice-pw", "bob": "bob-pw"}
SEEDED = 15
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
         "source", "track", "wbr"}  # fmt: skip


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    chunks: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.chunks).split())

    @property
    def classes(self) -> list[str]:
        return self.attrs.get("class", "").split()


class Page(HTMLParser):
    """Every element with its (descendant) text, indexed by id and class."""

    def __init__(self, status: int, url: str, body: str) -> None:
        super().__init__()
        self.status, self.url, self.body = status, url, body
        self.elements: list[Element] = []
        self._open: list[Element] = []
        self.feed(body)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.elements.append(element)
        if tag not in _VOID:
            self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i].tag == tag:
                del self._open[i:]
                return

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element.chunks.append(data)

    def maybe(self, element_id: str) -> Element | None:
        found = [e for e in self.elements if e.attrs.get("id") == element_id]
        assert len(found) <= 1, f"duplicate id {element_id!r}"
        return found[0] if found else None

    def by_id(self, element_id: str) -> Element:
        element = self.maybe(element_id)
        assert element is not None, f"no #{element_id} on {self.url}"
        return element

    def by_class(self, name: str) -> list[Element]:
        return [e for e in self.elements if name in e.classes]

    @property
    def path(self) -> str:
        return urllib.parse.urlsplit(self.url).path


class Client:
    """One browser-like session: its own cookie jar, follows redirects."""

    def __init__(self, server: DemoServer) -> None:
        self.base = server.url
        self.jar = CookieJar()
        self._opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def _open(self, request: urllib.request.Request) -> Page:
        try:
            with self._opener.open(request, timeout=5) as response:
                return Page(response.status, response.url, response.read().decode())
        except urllib.error.HTTPError as err:
            with err:
                return Page(err.code, err.url, err.read().decode())

    def get(self, path: str) -> Page:
        return self._open(urllib.request.Request(urllib.parse.urljoin(self.base, path)))

    def post(self, path: str, form: dict[str, str] | None = None) -> Page:
        data = urllib.parse.urlencode(form or {}).encode()
        url = urllib.parse.urljoin(self.base, path)
        return self._open(urllib.request.Request(url, data=data, method="POST"))

    def login(self, username: str, password: str | None = None) -> Page:
        secret = ACCOUNTS[username] if password is None else password
        return self.post("/login", {"username": username, "password": secret})

    def publish(self, caption: str, *, needs_review: bool = False) -> Page:
        form = {"caption": caption}
        if needs_review:
            form["needs_review"] = "1"
        return self.post("/compose", form)


def captions(page: Page) -> list[str]:
    return [e.text for e in page.by_class("caption")]


def post_id(page: Page) -> int:
    match = re.fullmatch(r"/posted/(\d+)", page.path)
    assert match, page.url
    return int(match.group(1))


@pytest.fixture(scope="module")
def server() -> Iterator[DemoServer]:
    # No delay here: the processing state has its own server in its own test.
    with serve(accounts=ACCOUNTS, publish_delay=0) as running:
        yield running


@pytest.fixture
def alice(server: DemoServer) -> Client:
    server.reset()
    client = Client(server)
    assert client.login("alice").path == "/feed"
    return client


@pytest.fixture
def bob(server: DemoServer, alice: Client) -> Client:
    # Depends on alice only so the reset happens before both log in.
    client = Client(server)
    assert client.login("bob").path == "/feed"
    return client


def test_health(server: DemoServer) -> None:
    assert server.url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(server.url + "__health", timeout=5) as response:
        assert response.read() == b"ok"


def test_login_success_shows_whoami_and_seeded_feed(server: DemoServer) -> None:
    server.reset()
    client = Client(server)
    login = client.get("/login")
    assert login.by_id("username").tag == "input"
    assert login.by_id("password").attrs["type"] == "password"
    assert login.by_id("sign-in").text == "Sign in"
    assert login.maybe("login-error") is None

    feed = client.login("alice")
    assert (feed.status, feed.path) == (200, "/feed")
    assert feed.by_id("whoami").text == "alice"
    posts = feed.by_class("post")
    assert len(posts) == SEEDED
    assert all(p.attrs["data-id"].isdigit() for p in posts)
    assert [e.text for e in feed.by_class("status")] == ["Published"] * SEEDED
    assert feed.by_id("feed-end").text == "You're all caught up"
    assert feed.by_id("compose").text == "New post"
    assert feed.by_id("open-settings").text == "Settings"
    assert feed.by_id("open-review").text == "Review queue"
    assert feed.by_id("sign-out").text == "Sign out"
    # The root redirects a signed-in user straight to the feed.
    assert client.get("/").path == "/feed"


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("alice", "wrong"),
        ("alice", ""),
        ("mallory", "alice-pw"),
        ("", ""),
        ("bob", "alice-pw"),
    ],
)
def test_login_failure(server: DemoServer, username: str, password: str) -> None:
    client = Client(server)
    page = client.login(username, password)
    assert (page.status, page.path) == (401, "/login")
    assert page.by_id("login-error").text == "Wrong username or password"
    assert page.by_id("username").attrs["value"] == username
    assert len(client.jar) == 0
    assert client.get("/feed").path == "/login"


@pytest.mark.parametrize("path", ["/", "/feed", "/compose", "/review", "/settings", "/posted/1"])
def test_pages_need_login(server: DemoServer, path: str) -> None:
    page = Client(server).get(path)
    assert (page.status, page.path) == (200, "/login")
    assert page.maybe("sign-in") is not None


def test_unauthenticated_post_changes_nothing(server: DemoServer, alice: Client) -> None:
    assert Client(server).publish("sneaky").path == "/login"
    assert "sneaky" not in captions(alice.get("/feed"))


def test_publish_flow(alice: Client) -> None:
    compose = alice.get("/compose")
    assert compose.by_id("caption").tag == "textarea"
    assert compose.by_id("needs-review").attrs["type"] == "checkbox"
    assert compose.by_id("publish").text == "Publish"
    assert compose.by_id("cancel").attrs["href"] == "/feed"

    posted = alice.publish("  Lunch at the beach  ")
    new_id = post_id(posted)
    assert posted.by_id("post-published").text == "Posted"
    assert posted.maybe("post-processing") is None
    assert posted.by_id("posted-caption").text == "Lunch at the beach"
    assert posted.by_id("posted-status").text == "Published"
    assert posted.by_id("back-to-feed").attrs["href"] == "/feed"

    feed = alice.get("/feed")
    top = feed.by_class("post")[0]
    assert top.attrs["data-id"] == str(new_id)
    assert captions(feed)[0] == "Lunch at the beach"
    assert len(feed.by_class("post")) == SEEDED + 1
    assert feed.by_class("status")[0].text == "Published"


def test_processing_then_posted() -> None:
    # 5 s: the page is still processing when it arrives, however slow this host is today.
    with serve(accounts=ACCOUNTS, publish_delay=5) as slow:
        client = Client(slow)
        client.login("alice")
        posted = client.publish("Slow upload")
        assert posted.by_id("post-processing").text == "Processing…"
        assert posted.maybe("post-published") is None
        # The page swaps itself after the remaining delay, in milliseconds.
        delay = re.search(r"},(\d+)\);", posted.body)
        assert delay and 0 < int(delay.group(1)) <= 5000
        time.sleep(int(delay.group(1)) / 1000 + 0.1)  # the remaining delay, as the page counts it
        again = client.get(posted.path)
        assert again.by_id("post-published").text == "Posted"
        assert again.maybe("post-processing") is None


@pytest.mark.parametrize("caption", ["", "   ", "\n\t"])
def test_empty_caption_is_rejected(alice: Client, caption: str) -> None:
    page = alice.publish(caption, needs_review=True)
    assert (page.status, page.path) == (400, "/compose")
    assert page.by_id("compose-error").text == "Caption is required"
    assert "checked" in page.by_id("needs-review").attrs
    assert len(alice.get("/feed").by_class("post")) == SEEDED
    assert alice.get("/compose").maybe("compose-error") is None


def test_accounts_are_isolated(alice: Client, bob: Client) -> None:
    posted = alice.publish("Only for alice")
    assert "Only for alice" in captions(alice.get("/feed"))
    bob_feed = bob.get("/feed")
    assert bob_feed.by_id("whoami").text == "bob"
    assert "Only for alice" not in captions(bob_feed)
    assert len(bob_feed.by_class("post")) == SEEDED
    # Bob can neither see nor review alice's post, even by guessing its id.
    assert bob.get(posted.path).status == 404
    queued = post_id(alice.publish("Alice needs review", needs_review=True))
    assert bob.get("/review").maybe("review-empty") is not None
    assert bob.post(f"/review/{queued}/approve").status == 404
    assert alice.get("/review").by_id(f"approve-{queued}").text == "Approve"


def test_review_approve(alice: Client) -> None:
    empty = alice.get("/review")
    assert empty.by_id("review-empty").text == "Nothing to review"
    assert empty.by_class("review-item") == []

    queued = post_id(alice.publish("Check my hat", needs_review=True))
    assert alice.get(f"/posted/{queued}").by_id("posted-status").text == "In review"
    feed = alice.get("/feed")
    assert feed.by_class("status")[0].text == "In review"

    review = alice.get("/review")
    assert review.maybe("review-empty") is None
    (item,) = review.by_class("review-item")
    assert item.text.startswith("Check my hat")
    approve = review.by_id(f"approve-{queued}")
    assert (approve.text, "approve" in approve.classes) == ("Approve", True)
    assert review.by_id(f"reject-{queued}").text == "Reject"

    after = alice.post(f"/review/{queued}/approve")
    assert after.path == "/review"
    assert after.by_id("review-result").text == "Post approved"
    assert after.by_id("review-empty").text == "Nothing to review"
    top = alice.get("/feed").by_class("post")[0]
    assert top.attrs["data-id"] == str(queued)
    assert top.text.endswith("Check my hat Published")
    # Deciding twice is an error, not a silent no-op.
    assert alice.post(f"/review/{queued}/reject").status == 404


def test_review_reject_hides_post(alice: Client) -> None:
    queued = post_id(alice.publish("Blurry photo", needs_review=True))
    page = alice.post(f"/review/{queued}/reject")
    assert page.by_id("review-result").text == "Post rejected"
    assert "Blurry photo" not in captions(alice.get("/feed"))


def test_settings_persisted(alice: Client, bob: Client) -> None:
    page = alice.get("/settings")
    assert "checked" in page.by_id("notifications").attrs
    assert page.by_id("language").tag == "select"
    assert page.by_id("save-settings").text == "Save"
    assert page.maybe("settings-saved") is None

    saved = alice.post("/settings", {"language": "fr"})  # checkbox left unticked
    assert saved.by_id("settings-saved").text == "Settings saved"

    reloaded = alice.get("/settings")
    assert "checked" not in reloaded.by_id("notifications").attrs
    selected = [e for e in reloaded.elements if e.tag == "option" and "selected" in e.attrs]
    assert [(e.attrs["value"], e.text) for e in selected] == [("fr", "Français")]
    assert reloaded.maybe("settings-saved") is None

    # Bob keeps the defaults; an unknown language keeps the previous one.
    assert "checked" in bob.get("/settings").by_id("notifications").attrs
    alice.post("/settings", {"notifications": "on", "language": "xx"})
    final = alice.get("/settings")
    assert "checked" in final.by_id("notifications").attrs
    assert 'value="fr" selected' in final.body


def test_user_input_is_escaped(alice: Client) -> None:
    evil = '<script>alert("x")</script> & <b>bold</b>'
    posted = alice.publish(evil, needs_review=True)
    feed = alice.get("/feed")
    review = alice.get("/review")
    for page in (posted, feed, review):
        assert "<script>alert" not in page.body
        assert "<b>bold" not in page.body
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp;" in page.body
    assert posted.by_id("posted-caption").text == evil
    assert captions(feed)[0] == evil


def test_login_echo_is_escaped(server: DemoServer) -> None:
    # A failed login echoes the username back into an attribute.
    page = Client(server).login('"><script>x()</script>', "pw")
    assert "<script>x()" not in page.body
    assert page.by_id("username").attrs["value"] == '"><script>x()</script>'


def test_sign_out(alice: Client) -> None:
    page = alice.post("/logout")
    assert page.path == "/login"
    assert alice.get("/feed").path == "/login"


def test_reset(server: DemoServer, alice: Client) -> None:
    alice.publish("Before reset", needs_review=True)
    alice.post("/settings", {"language": "de"})
    assert alice.post("/__reset").body == "ok"
    # Everyone is signed out and the seeded state is back.
    assert alice.get("/feed").path == "/login"
    alice.login("alice")
    feed = alice.get("/feed")
    assert "Before reset" not in captions(feed)
    assert len(feed.by_class("post")) == SEEDED
    assert alice.get("/review").maybe("review-empty") is not None
    assert 'value="en" selected' in alice.get("/settings").body
    # Ids restart, so SOPs can rely on them after a reset.
    assert feed.by_class("post")[-1].attrs["data-id"] == "1"

    alice.publish("Second life")
    server.reset()
    assert alice.get("/feed").path == "/login"


def test_unknown_paths_and_methods(server: DemoServer, alice: Client) -> None:
    assert alice.get("/nope").status == 404
    assert alice.get("/__reset").status == 405
    assert alice.post("/feed").status == 405


def test_default_accounts_and_close() -> None:
    with serve() as demo:
        assert demo.accounts == list(DEFAULT_ACCOUNTS) == ["pub1", "pub2"]
        client = Client(demo)
        assert client.login("pub1", "password1").by_id("whoami").text == "pub1"
        url = demo.url
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "__health", timeout=2)
    demo.close()  # idempotent


# -- tasks: a list with checkboxes, an editor that saves on blur, a page without a viewport meta tag -----


def task_titles(page: Page) -> list[str]:
    return [e.text for e in page.by_class("task-title")]


def test_tasks_page_lists_seeded_tasks_with_their_controls(alice: Client) -> None:
    page = alice.get("/tasks")
    assert page.status == 200
    assert task_titles(page) == list(SEED_TASKS)
    for n in range(1, len(SEED_TASKS) + 1):
        assert page.by_id(f"task-{n}-done").attrs["type"] == "checkbox"
        assert "checked" not in page.by_id(f"task-{n}-done").attrs
        assert "hidden" in page.by_id(f"task-{n}-delete").attrs
        assert page.by_id(f"task-{n}-handle").tag == "span"
    assert 'name="viewport"' in page.body
    assert page.by_id("tasks-status").text == ""
    assert alice.get("/feed").by_id("open-tasks").attrs["href"] == "/tasks"


def test_classic_tasks_page_has_no_viewport_meta_and_row_text_of_its_own(alice: Client) -> None:
    page = alice.get("/tasks/classic")
    assert page.status == 200
    assert "viewport" not in page.body
    row = page.by_id("task-2")
    assert row.text == SEED_TASKS[1]  # the row's own text: a text locator finds the row
    assert page.by_id("task-2-done").attrs["type"] == "checkbox"
    assert page.by_id("cookie-banner").text.startswith("We use cookies") and page.maybe("cookie-ok") is not None


def test_task_changes_are_saved_per_account(alice: Client, bob: Client) -> None:
    assert alice.post("/tasks/2/done", {"done": "1"}).status == 204
    assert alice.post("/tasks/1/rename", {"title": "  Renamed  "}).status == 204
    assert alice.post("/tasks/5/move", {"position": "0"}).status == 204
    page = alice.get("/tasks")
    assert task_titles(page) == [SEED_TASKS[4], "Renamed", *SEED_TASKS[1:4]]
    assert "checked" in page.by_id("task-2-done").attrs
    assert alice.post("/tasks/2/done", {"done": ""}).status == 204
    assert "checked" not in alice.get("/tasks").by_id("task-2-done").attrs
    assert task_titles(bob.get("/tasks")) == list(SEED_TASKS)  # bob's list is his own


def test_an_empty_title_deletes_the_task_and_unknown_tasks_are_404(server: DemoServer, alice: Client) -> None:
    assert alice.post("/tasks/3/rename", {"title": "   "}).status == 204
    assert alice.post("/tasks/4/delete").status == 204
    assert task_titles(alice.get("/tasks")) == [SEED_TASKS[0], SEED_TASKS[1], SEED_TASKS[4]]
    assert alice.post("/tasks/3/done", {"done": "1"}).status == 404
    assert alice.post("/tasks/99/delete").status == 404
    assert alice.post("/tasks/1/move", {"position": "first"}).status == 404
    assert alice.get("/tasks/1/done").status == 405
    server.reset()
    alice.login("alice")
    assert task_titles(alice.get("/tasks")) == list(SEED_TASKS)


def test_tasks_need_login(server: DemoServer) -> None:
    client = Client(server)
    assert client.get("/tasks").path == "/login"
    assert client.get("/tasks/classic").path == "/login"
    assert client.post("/tasks/1/delete").path == "/login"


def test_task_titles_are_escaped(alice: Client) -> None:
    alice.post("/tasks/1/rename", {"title": "<script>alert(1)</script>"})
    for path in ("/tasks", "/tasks/classic"):
        body = alice.get(path).body
        assert "<script>alert(1)</script>" not in body
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
