"""In-memory, per-account state of the demo app, guarded by one lock.

Handler threads only ever get frozen snapshots back, so pages can be
rendered outside the lock without racing a concurrent request.
"""

from __future__ import annotations

import hmac
import itertools
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

PUBLISHED = "Published"
IN_REVIEW = "In review"
REJECTED = "Rejected"

# Option values are what SOPs select; labels are what users read.
LANGUAGES: dict[str, str] = {
    "en": "English",
    "fr": "Français",
    "de": "Deutsch",
    "es": "Español",
}

# ASCII on purpose: SOP authors match these by text and type them by hand.
SEED_CAPTIONS: tuple[str, ...] = (
    "Sunrise over the harbour",
    "First coffee of the day",
    "Trail run before work",
    "Street art downtown",
    "Homemade pizza night",
    "Rainy window, good book",
    "Farmers market haul",
    "New plant, who dis",
    "Concert lights",
    "Lazy Sunday with the cat",
    "Bike repair success",
    "Beach cleanup crew",
    "Museum day",
    "Late night ramen",
    "Hello Snapgram!",
)


# Wide on purpose: a row's text fills the row, its checkbox at the side.
SEED_TASKS: tuple[str, ...] = (
    "Reply to the comments on the harbour sunrise post before the weekend",
    "Order new prints of the farmers market photos for the shop window",
    "Ask the museum about using the gallery photos in the autumn feature",
    "Clean up the drafts folder and archive last month's stories",
    "Plan the beach cleanup crew post with the volunteers' names",
)


@dataclass(frozen=True)
class Task:
    id: int
    title: str
    done: bool = False


@dataclass(frozen=True)
class Post:
    id: int
    author: str
    caption: str
    status: str
    created: float


@dataclass(frozen=True)
class Settings:
    notifications: bool = True
    language: str = "en"


class Store:
    """All mutable state; every public method takes the lock."""

    def __init__(
        self,
        accounts: Mapping[str, str],
        *,
        seed_posts: int = len(SEED_CAPTIONS),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._accounts = dict(accounts)
        self._seed_posts = seed_posts
        self._clock = clock
        self._lock = threading.Lock()
        self._posts: dict[str, dict[int, Post]] = {}
        self._settings: dict[str, Settings] = {}
        self._tasks: dict[str, list[Task]] = {}
        self._sessions: dict[str, str] = {}
        self._ids: itertools.count[int] = itertools.count(1)
        self.reset()

    @property
    def usernames(self) -> list[str]:
        return list(self._accounts)

    def reset(self) -> None:
        """Back to the seeded state; also signs everyone out."""
        with self._lock:
            # Restarting ids keeps them predictable for SOPs (pub1 owns 1..15).
            self._ids = itertools.count(1)
            self._sessions.clear()
            self._settings = {name: Settings() for name in self._accounts}
            now = self._clock()
            self._posts = {}
            for name in self._accounts:
                posts: dict[int, Post] = {}
                # Oldest first, so the newest seeded post gets the highest id.
                for age in range(self._seed_posts, 0, -1):
                    caption = SEED_CAPTIONS[(age - 1) % len(SEED_CAPTIONS)]
                    post = Post(next(self._ids), name, caption, PUBLISHED, now - age * 3 * 3600)
                    posts[post.id] = post
                self._posts[name] = posts
            # Task ids restart per account: task 1 is every account's first task.
            self._tasks = {name: [Task(i, t) for i, t in enumerate(SEED_TASKS, 1)] for name in self._accounts}

    # -- auth ---------------------------------------------------------------

    def check_password(self, username: str, password: str) -> bool:
        expected = self._accounts.get(username)
        if expected is None:
            return False
        return hmac.compare_digest(expected.encode(), password.encode())

    def open_session(self, username: str) -> str:
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._sessions[token] = username
        return token

    def session_user(self, token: str) -> str | None:
        with self._lock:
            return self._sessions.get(token)

    def close_session(self, token: str) -> None:
        with self._lock:
            self._sessions.pop(token, None)

    # -- posts --------------------------------------------------------------

    def feed(self, username: str) -> list[Post]:
        """Newest first; rejected posts never show up."""
        with self._lock:
            posts = self._posts.get(username, {}).values()
            return sorted((p for p in posts if p.status != REJECTED), key=lambda p: -p.id)

    def publish(self, username: str, caption: str, *, needs_review: bool) -> Post:
        with self._lock:
            status = IN_REVIEW if needs_review else PUBLISHED
            post = Post(next(self._ids), username, caption, status, self._clock())
            self._posts[username][post.id] = post
            return post

    def get_post(self, username: str, post_id: int) -> Post | None:
        """Only the author can see a post: other accounts get None (a 404)."""
        with self._lock:
            return self._posts.get(username, {}).get(post_id)

    def review_queue(self, username: str) -> list[Post]:
        """Oldest first, like a real moderation queue."""
        with self._lock:
            posts = self._posts.get(username, {}).values()
            return sorted((p for p in posts if p.status == IN_REVIEW), key=lambda p: p.id)

    def decide(self, username: str, post_id: int, *, approve: bool) -> Post | None:
        """Approve or reject a queued post; None if it is not in the queue."""
        with self._lock:
            posts = self._posts.get(username, {})
            post = posts.get(post_id)
            if post is None or post.status != IN_REVIEW:
                return None
            post = replace(post, status=PUBLISHED if approve else REJECTED)
            posts[post_id] = post
            return post

    # -- settings -----------------------------------------------------------

    def settings(self, username: str) -> Settings:
        with self._lock:
            return self._settings.get(username, Settings())

    def save_settings(self, username: str, settings: Settings) -> None:
        with self._lock:
            self._settings[username] = settings

    # -- tasks --------------------------------------------------------------

    def tasks(self, username: str) -> list[Task]:
        """In the account's own order."""
        with self._lock:
            return list(self._tasks.get(username, []))

    def _change(self, username: str, task_id: int, change: Callable[[Task], Task | None]) -> bool:
        """Replace (or, when ``change`` returns None, remove) one task; False if there is no such task."""
        tasks = self._tasks.get(username, [])
        for i, task in enumerate(tasks):
            if task.id == task_id:
                new = change(task)
                if new is None:
                    del tasks[i]
                else:
                    tasks[i] = new
                return True
        return False

    def set_done(self, username: str, task_id: int, *, done: bool) -> bool:
        with self._lock:
            return self._change(username, task_id, lambda t: replace(t, done=done))

    def rename(self, username: str, task_id: int, title: str) -> bool:
        """An empty title deletes the task, as clearing a row's text does in most list apps."""
        title = title.strip()
        with self._lock:
            return self._change(username, task_id, lambda t: replace(t, title=title) if title else None)

    def delete_task(self, username: str, task_id: int) -> bool:
        with self._lock:
            return self._change(username, task_id, lambda t: None)

    def move_task(self, username: str, task_id: int, position: int) -> bool:
        """Put the task at ``position`` (0 = first) in the account's order."""
        with self._lock:
            tasks = self._tasks.get(username, [])
            found = [t for t in tasks if t.id == task_id]
            if not found:
                return False
            tasks.remove(found[0])
            tasks.insert(max(0, min(position, len(tasks))), found[0])
            return True
