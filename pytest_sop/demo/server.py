"""HTTP layer: routing, cookies and form handling on top of ``http.server``.

Every state change is a plain HTML form POST answered by a 303 redirect, so
WebDriver clicks and typing work without relying on JavaScript.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self
from urllib.parse import parse_qs, urlsplit

from . import views
from .store import LANGUAGES, Settings, Store

DEFAULT_ACCOUNTS: Mapping[str, str] = {"pub1": "password1", "pub2": "password2"}

_COOKIE = "snapgram_session"
_SIGNED_IN_FOR = 30 * 24 * 3600  # seconds
_MAX_BODY = 64 * 1024  # forms are tiny; refuse anything that is not a form


class _AppServer(ThreadingHTTPServer):
    daemon_threads = True  # a stuck keep-alive browser must not block close()

    def __init__(
        self,
        address: tuple[str, int],
        store: Store,
        *,
        publish_delay: float,
        log_requests: bool,
    ) -> None:
        self.store = store
        self.publish_delay = publish_delay
        self.log_requests = log_requests
        super().__init__(address, _Handler)


_Form = dict[str, list[str]]


class _Handler(BaseHTTPRequestHandler):
    server_version = "Snapgram/1.0"

    # -- plumbing -----------------------------------------------------------

    @property
    def app(self) -> _AppServer:
        assert isinstance(self.server, _AppServer)
        return self.server

    def log_message(self, format: str, *args: object) -> None:
        if self.app.log_requests:
            super().log_message(format, *args)

    def _send(
        self,
        status: HTTPStatus,
        body: str = "",
        *,
        content_type: str = "text/html; charset=utf-8",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        # Back/forward must re-fetch, or an SOP could read stale state.
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _redirect(self, location: str, *, headers: Mapping[str, str] | None = None) -> None:
        self._send(HTTPStatus.SEE_OTHER, headers={"Location": location, **(headers or {})})

    def _token(self) -> str | None:
        cookie = SimpleCookie()
        try:
            cookie.load(self.headers.get("Cookie", ""))
        except CookieError:
            return None
        morsel = cookie.get(_COOKIE)
        return morsel.value if morsel else None

    def _user(self) -> str | None:
        token = self._token()
        return self.app.store.session_user(token) if token else None

    def _form(self) -> _Form | None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_BODY:
            return None
        raw = self.rfile.read(length).decode("utf-8", errors="replace")
        return parse_qs(raw, keep_blank_values=True)

    # -- dispatch -----------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        allowed = False
        for route_method, pattern, public, handler in _ROUTES:
            match = pattern.fullmatch(parts.path)
            if match is None:
                continue
            allowed = True
            if route_method != method:
                continue
            form: _Form = {}
            if method == "POST":
                parsed = self._form()
                if parsed is None:
                    self._send(
                        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                        "form too large\n",
                        content_type="text/plain; charset=utf-8",
                    )
                    return
                form = parsed
            user = self._user()
            if not public and user is None:
                self._redirect("/login")
                return
            handler(self, _Request(user or "", form, query, match.groups()))
            return
        if allowed:
            self._send(
                HTTPStatus.METHOD_NOT_ALLOWED,
                "method not allowed\n",
                content_type="text/plain; charset=utf-8",
            )
        else:
            self._send(HTTPStatus.NOT_FOUND, views.not_found())

    # -- pages --------------------------------------------------------------

    def health(self, req: _Request) -> None:
        self._send(HTTPStatus.OK, "ok", content_type="text/plain; charset=utf-8")

    def reset(self, req: _Request) -> None:
        self.app.store.reset()
        self._send(HTTPStatus.OK, "ok", content_type="text/plain; charset=utf-8")

    def home(self, req: _Request) -> None:
        self._redirect("/feed" if self._user() else "/login")

    def login_form(self, req: _Request) -> None:
        self._send(HTTPStatus.OK, views.login())

    def login(self, req: _Request) -> None:
        username = req.field("username").strip()
        if not self.app.store.check_password(username, req.field("password")):
            self._send(HTTPStatus.UNAUTHORIZED, views.login(username=username, error=True))
            return
        token = self.app.store.open_session(username)
        # Signed in until signing out, as in a phone app: the cookie outlives the browser (its profile keeps it).
        cookie = f"{_COOKIE}={token}; Path=/; Max-Age={_SIGNED_IN_FOR}; HttpOnly; SameSite=Lax"
        self._redirect("/feed", headers={"Set-Cookie": cookie})

    def logout(self, req: _Request) -> None:
        token = self._token()
        if token:
            self.app.store.close_session(token)
        expired = f"{_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"
        self._redirect("/login", headers={"Set-Cookie": expired})

    def feed(self, req: _Request) -> None:
        posts = self.app.store.feed(req.user)
        self._send(HTTPStatus.OK, views.feed(req.user, posts, time.time()))

    def compose_form(self, req: _Request) -> None:
        self._send(HTTPStatus.OK, views.compose(req.user))

    def compose(self, req: _Request) -> None:
        caption = req.field("caption").strip()
        needs_review = bool(req.field("needs_review"))
        if not caption:
            page = views.compose(req.user, needs_review=needs_review, error="Caption is required")
            self._send(HTTPStatus.BAD_REQUEST, page)
            return
        post = self.app.store.publish(req.user, caption, needs_review=needs_review)
        self._redirect(f"/posted/{post.id}")

    def posted(self, req: _Request) -> None:
        post = self.app.store.get_post(req.user, int(req.groups[0]))
        if post is None:
            self._send(HTTPStatus.NOT_FOUND, views.not_found())
            return
        # Derived from the publish time, so a reload shows the right state.
        remaining = post.created + self.app.publish_delay - time.time()
        self._send(HTTPStatus.OK, views.posted(req.user, post, remaining=remaining))

    def review_queue(self, req: _Request) -> None:
        done = req.query.get("done", [""])[0]
        result = {"approved": "Post approved", "rejected": "Post rejected"}.get(done, "")
        queue = self.app.store.review_queue(req.user)
        self._send(HTTPStatus.OK, views.review(req.user, queue, result=result))

    def review_decide(self, req: _Request) -> None:
        post_id, action = req.groups
        approve = action == "approve"
        if self.app.store.decide(req.user, int(post_id), approve=approve) is None:
            self._send(HTTPStatus.NOT_FOUND, views.not_found())
            return
        self._redirect("/review?done=" + ("approved" if approve else "rejected"))

    def tasks(self, req: _Request) -> None:
        self._send(HTTPStatus.OK, views.tasks(req.user, self.app.store.tasks(req.user)))

    def classic_tasks(self, req: _Request) -> None:
        self._send(HTTPStatus.OK, views.classic_tasks(req.user, self.app.store.tasks(req.user)))

    def task_change(self, req: _Request) -> None:
        """The tasks page's script saves each change here; 204, or 404 for a task that is not there."""
        task_id, what = int(req.groups[0]), req.groups[1]
        store, user = self.app.store, req.user
        if what == "done":
            found = store.set_done(user, task_id, done=bool(req.field("done")))
        elif what == "rename":
            found = store.rename(user, task_id, req.field("title"))
        elif what == "move":
            position = req.field("position")
            found = position.isdigit() and store.move_task(user, task_id, int(position))
        else:
            found = store.delete_task(user, task_id)
        if not found:
            self._send(HTTPStatus.NOT_FOUND, views.not_found())
            return
        self._send(HTTPStatus.NO_CONTENT)

    def settings_form(self, req: _Request) -> None:
        saved = req.query.get("saved") == ["1"]
        current = self.app.store.settings(req.user)
        self._send(HTTPStatus.OK, views.settings(req.user, current, saved=saved))

    def settings_save(self, req: _Request) -> None:
        language = req.field("language")
        if language not in LANGUAGES:
            language = self.app.store.settings(req.user).language
        # An unchecked checkbox is simply absent from the form.
        new = Settings(notifications=bool(req.field("notifications")), language=language)
        self.app.store.save_settings(req.user, new)
        self._redirect("/settings?saved=1")


class _Request:
    __slots__ = ("form", "groups", "query", "user")

    def __init__(self, user: str, form: _Form, query: _Form, groups: tuple[str | None, ...]) -> None:
        self.user = user
        self.form = form
        self.query = query
        self.groups = tuple(g or "" for g in groups)

    def field(self, name: str) -> str:
        return self.form.get(name, [""])[0]


_Route = tuple[str, re.Pattern[str], bool, Callable[[_Handler, _Request], None]]

# (method, path, public, handler); a path matching with another method is a 405.
_ROUTES: list[_Route] = [
    ("GET", re.compile(r"/__health"), True, _Handler.health),
    ("POST", re.compile(r"/__reset"), True, _Handler.reset),
    ("GET", re.compile(r"/"), True, _Handler.home),
    ("GET", re.compile(r"/login"), True, _Handler.login_form),
    ("POST", re.compile(r"/login"), True, _Handler.login),
    ("POST", re.compile(r"/logout"), True, _Handler.logout),
    ("GET", re.compile(r"/feed"), False, _Handler.feed),
    ("GET", re.compile(r"/compose"), False, _Handler.compose_form),
    ("POST", re.compile(r"/compose"), False, _Handler.compose),
    ("GET", re.compile(r"/posted/(\d{1,9})"), False, _Handler.posted),
    ("GET", re.compile(r"/review"), False, _Handler.review_queue),
    (
        "POST",
        re.compile(r"/review/(\d{1,9})/(approve|reject)"),
        False,
        _Handler.review_decide,
    ),
    ("GET", re.compile(r"/tasks"), False, _Handler.tasks),
    ("GET", re.compile(r"/tasks/classic"), False, _Handler.classic_tasks),
    ("POST", re.compile(r"/tasks/(\d{1,9})/(done|rename|move|delete)"), False, _Handler.task_change),
    ("GET", re.compile(r"/settings"), False, _Handler.settings_form),
    ("POST", re.compile(r"/settings"), False, _Handler.settings_save),
]


def make_server(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    accounts: Mapping[str, str] | None = None,
    publish_delay: float = 1.0,
    log_requests: bool = False,
) -> _AppServer:
    """Bind (but do not start) a server; ``serve`` is the usual entry point."""
    store = Store(DEFAULT_ACCOUNTS if accounts is None else accounts)
    return _AppServer((host, port), store, publish_delay=publish_delay, log_requests=log_requests)


class DemoServer:
    """A running demo app; close it, or use it as a context manager."""

    def __init__(self, httpd: _AppServer) -> None:
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, name="snapgram-demo", daemon=True)
        self._thread.start()
        self._closed = False

    @property
    def host(self) -> str:
        host = str(self._httpd.server_address[0])
        # A wildcard bind is not a connectable address.
        return "127.0.0.1" if host in ("", "0.0.0.0") else host

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    @property
    def accounts(self) -> list[str]:
        return self._httpd.store.usernames

    def reset(self) -> None:
        """Same as POST /__reset: seeded posts, default settings, nobody signed in."""
        self._httpd.store.reset()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DemoServer(url={self.url!r})"


def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    accounts: Mapping[str, str] | None = None,
    publish_delay: float = 1.0,
    log_requests: bool = False,
) -> DemoServer:
    """Start the demo app in a daemon thread; port 0 picks a free port.

    ``accounts`` maps username to password; ``publish_delay`` is how long the
    posted page shows "Processing…" before "Posted".
    """
    httpd = make_server(
        host,
        port,
        accounts=accounts,
        publish_delay=publish_delay,
        log_requests=log_requests,
    )
    return DemoServer(httpd)
