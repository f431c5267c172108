"""HTML for each page, as plain strings.

Element ids are a contract with the example SOPs: change them only together
with the SOPs. Everything that came from a user goes through ``_e``.
"""

from __future__ import annotations

import html
import json

from .store import IN_REVIEW, LANGUAGES, Post, Settings, Task

_CSS = """
:root{--bg:#fafafa;--fg:#111827;--muted:#6b7280;--line:#e5e7eb;--brand:#d62976;
--ok:#15803d;--warn:#b45309;--err:#b91c1c}
*{box-sizing:border-box}
[hidden]{display:none !important}
html{-webkit-text-size-adjust:100%}
body{margin:0;font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
background:var(--bg);color:var(--fg)}
.bar{position:sticky;top:0;z-index:1;display:flex;align-items:center;
justify-content:space-between;gap:12px;padding:12px 16px;background:#fff;
border-bottom:1px solid var(--line)}
.logo{font-weight:800;font-size:24px;letter-spacing:-.5px;color:var(--brand)}
#whoami{font-weight:600;color:var(--muted)}
main{max-width:560px;margin:0 auto;padding:16px}
h1{font-size:22px;margin:4px 0 16px}
.btn{display:inline-flex;align-items:center;justify-content:center;min-height:48px;
padding:0 18px;border:1px solid var(--line);border-radius:12px;background:#fff;
color:var(--fg);font:inherit;font-weight:600;text-decoration:none;cursor:pointer}
.btn.primary{background:var(--brand);border-color:var(--brand);color:#fff}
.btn.block{width:100%;margin-top:12px}
.actions{display:grid;grid-template-columns:1fr 1fr;gap:8px;margin-bottom:16px}
.actions form{display:contents}
.card{background:#fff;border:1px solid var(--line);border-radius:16px;padding:16px}
label{display:block;font-weight:600;margin:12px 0 6px}
input[type=text],input[type=password],textarea,select{width:100%;min-height:48px;
padding:12px;border:1px solid #d1d5db;border-radius:12px;font:inherit;background:#fff}
.check{display:flex;align-items:center;justify-content:space-between;gap:12px;
min-height:48px;font-weight:500}
.check input{width:26px;height:26px;accent-color:var(--brand)}
.error{color:var(--err);font-weight:600}
.notice{color:var(--ok);font-weight:600}
.muted{color:var(--muted)}
#feed,#review-queue{list-style:none;margin:0;padding:0;display:grid;gap:16px}
.post,.review-item{background:#fff;border:1px solid var(--line);border-radius:16px;
overflow:hidden}
.post-head{display:flex;align-items:center;gap:10px;padding:10px 12px}
.avatar{width:36px;height:36px;border-radius:50%;display:grid;place-items:center;
color:#fff;font-weight:700;background:var(--brand)}
.age{margin-left:auto;color:var(--muted);font-size:14px}
.photo{aspect-ratio:4/3;background:linear-gradient(135deg,hsl(var(--h) 80% 65%),
hsl(calc(var(--h) + 60) 70% 45%))}
.caption{margin:10px 12px 6px;white-space:pre-wrap;overflow-wrap:anywhere}
.status{display:inline-block;margin:0 12px 12px;padding:2px 10px;border-radius:999px;
font-size:13px;font-weight:600;background:#dcfce7;color:var(--ok)}
.status.in-review{background:#fef3c7;color:var(--warn)}
.row{display:flex;gap:8px;padding:0 12px 12px}
.row form{flex:1}.row .btn{width:100%}
#feed-end{text-align:center;color:var(--muted);padding:24px 0 40px}
.processing{color:var(--warn);font-weight:600}
#post-published{color:var(--ok);font-weight:700;font-size:20px}
#tasks{list-style:none;margin:0 0 16px;padding:0;display:grid;gap:8px}
.task{display:flex;align-items:center;gap:10px;min-height:56px;padding:8px 12px;background:#fff;
border:1px solid var(--line);border-radius:12px;touch-action:pan-y;user-select:none}
.task-title{flex:1;min-width:0}
.task-handle{touch-action:none;cursor:grab;font-size:22px;padding:4px 6px;color:var(--muted)}
.task-done{width:26px;height:26px;flex:none;accent-color:var(--brand)}
.task-edit{flex:1;min-width:0;min-height:40px;padding:6px 8px;font:inherit}
.task.dragging{opacity:.6}
#tasks-status{min-height:1.5em}
"""
# The classic view: a desktop page from before phones, without a viewport meta tag, so a phone
# shows it zoomed out: a side column, and the list beside it with each checkbox at the row's side.
_CLASSIC_CSS = """
*{box-sizing:border-box}
body{margin:0;font:15px/1.4 Georgia,serif;min-width:980px}
.classic{display:flex}
.side{width:320px;flex:none;padding:16px;background:#eef}
.list{flex:1;padding:16px}
#tasks-status{min-height:1.5em}
#cookie-banner{position:fixed;top:0;left:0;width:320px;min-height:240px;padding:16px;background:#333;color:#fff}
#tasks{list-style:none;margin:0;padding:0}
.task{display:flex;align-items:center;gap:12px;padding:10px 4px;border-bottom:1px solid #ccc}
.task-done{width:40px;height:40px;margin:0;flex:none}
"""
# Tasks: a tick saves at once; a double tap on a title edits it in place and the edit saves when
# the field loses its focus (an empty title deletes the task, as in many list apps); press and hold
# a row, or swipe it left, to show its Delete button; drag a row by its handle to move it. The
# status line changes once the server has the change.
_TASKS_JS = """
const list = document.getElementById("tasks");
const post = (path, data) => fetch(path, {method: "POST", body: new URLSearchParams(data || {})});
const status = (text) => { document.getElementById("tasks-status").textContent = text; };
const titleOf = (row) => (row.querySelector(".task-title") || row).textContent.trim();
const url = (row, what) => "/tasks/" + row.dataset.id + "/" + what;
list.addEventListener("change", (e) => {
  if (!e.target.classList.contains("task-done")) return;
  const row = e.target.closest(".task"), done = e.target.checked;
  post(url(row, "done"), {done: done ? "1" : ""}).then(() => status((done ? "Done: " : "Not done: ") + titleOf(row)));
});
const edit = (row) => {
  const title = row.querySelector(".task-title");
  if (!title || document.getElementById("task-edit")) return;
  const input = document.createElement("input");
  Object.assign(input, {type: "text", id: "task-edit", className: "task-edit", value: title.textContent});
  input.setAttribute("aria-label", "Task title");
  title.hidden = true;
  title.after(input);
  input.focus();
  let cancelled = false, closed = false;
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter") input.blur();
    if (e.key === "Escape") { cancelled = true; input.blur(); }
  });
  input.addEventListener("blur", () => {
    if (closed) return;
    closed = true;
    const text = input.value.trim();
    input.remove();
    title.hidden = false;
    if (cancelled) return;
    if (!text) {
      row.remove();
      post(url(row, "delete")).then(() => status("Deleted: " + title.textContent));
      return;
    }
    title.textContent = text;
    post(url(row, "rename"), {title: text}).then(() => status("Saved: " + text));
  });
};
list.addEventListener("dblclick", (e) => {
  const row = e.target.closest(".task");
  if (row && !e.target.closest(".task-done, .task-handle, .task-delete, .task-edit")) edit(row);
});
const showDelete = (row, shown) => { const b = row.querySelector(".task-delete"); if (b) b.hidden = !shown; };
let press = null, dragging = null, longPressed = false;
list.addEventListener("pointerdown", (e) => {
  const row = e.target.closest(".task");
  if (!row) return;
  if (e.target.closest(".task-handle")) {
    dragging = row;
    row.classList.add("dragging");
    return;
  }
  if (e.target.closest(".task-done, .task-delete, .task-edit")) return;
  longPressed = false;
  press = {row, x: e.clientX, y: e.clientY, timer: setTimeout(() => {
    press.timer = null;
    longPressed = true;
    showDelete(row, true);
    status("Held: " + titleOf(row));
  }, 600)};
});
list.addEventListener("pointermove", (e) => {
  if (press && press.timer && Math.hypot(e.clientX - press.x, e.clientY - press.y) > 10) {
    clearTimeout(press.timer);
    press.timer = null;
  }
});
const lift = (e) => {
  if (press) {
    if (press.timer) clearTimeout(press.timer);
    const dx = e.clientX - press.x;
    if (e.type === "pointerup" && dx < -40) { showDelete(press.row, true); status("Swiped: " + titleOf(press.row)); }
    if (e.type === "pointerup" && dx > 40) showDelete(press.row, false);
    press = null;
  }
  if (dragging) {
    const row = dragging;
    dragging = null;
    row.classList.remove("dragging");
    const under = document.elementFromPoint(e.clientX, e.clientY);
    const over = under && under.closest(".task");
    if (e.type !== "pointerup" || !over || over === row) return;
    const rows = Array.from(list.children);
    if (rows.indexOf(over) > rows.indexOf(row)) over.after(row); else over.before(row);
    const position = Array.from(list.children).indexOf(row);
    post(url(row, "move"), {position: String(position)}).then(() => status("Moved: " + titleOf(row)));
  }
};
document.addEventListener("pointerup", lift);
document.addEventListener("pointercancel", lift);
list.addEventListener("click", (e) => {
  const row = e.target.closest(".task");
  if (!row) return;
  if (e.target.closest(".task-delete")) {
    row.remove();
    post(url(row, "delete")).then(() => status("Deleted: " + titleOf(row)));
    return;
  }
  if (e.target.closest(".task-done, .task-handle, .task-edit")) return;
  if (longPressed) { longPressed = false; return; }
  status("Opened: " + titleOf(row));
});
// A link straight into renaming a task: /tasks?edit=ID.
const editing = document.getElementById("task-" + new URLSearchParams(location.search).get("edit"));
if (editing) edit(editing);
// The cookie banner asks once per browser, as such banners do.
const banner = document.getElementById("cookie-banner");
if (banner && localStorage.getItem("cookies-ok")) banner.remove();
else if (banner) document.getElementById("cookie-ok").addEventListener("click", () => {
  localStorage.setItem("cookies-ok", "1");
  banner.remove();
});
"""


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def page(title: str, body: str, *, user: str | None = None, script: str = "") -> str:
    who = f'<span id="whoami">{_e(user)}</span>' if user is not None else ""
    tail = f"<script>{script}</script>" if script else ""
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Snapgram · {_e(title)}</title><style>{_CSS}</style></head>"
        f'<body><header class="bar"><span class="logo">Snapgram</span>{who}</header>'
        f"<main>{body}</main>{tail}</body></html>\n"
    )


def classic_page(title: str, body: str, *, script: str = "") -> str:
    """A page as desktop sites were made: no viewport meta tag, so a phone lays it out 980 pixels wide."""
    return (
        "<!doctype html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>Snapgram · {_e(title)}</title>'
        f"<style>{_CLASSIC_CSS}</style></head><body>{body}<script>{script}</script></body></html>\n"
    )


def _age(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 1:
        return "just now"
    if minutes < 60:
        return f"{minutes}m"
    if minutes < 24 * 60:
        return f"{minutes // 60}h"
    return f"{minutes // (24 * 60)}d"


def _status_class(status: str) -> str:
    return "status in-review" if status == IN_REVIEW else "status"


def login(*, username: str = "", error: bool = False) -> str:
    # The heading avoids the words "Sign in" so a text locator hits only the button.
    err = '<p id="login-error" class="error" role="alert">Wrong username or password</p>'
    body = (
        '<h1>Welcome back</h1><form class="card" method="post" action="/login">'
        '<label for="username">Username</label>'
        f'<input type="text" id="username" name="username" value="{_e(username)}" '
        'autocomplete="username" autocapitalize="none" autocorrect="off" '
        'spellcheck="false">'
        '<label for="password">Password</label>'
        '<input type="password" id="password" name="password" '
        'autocomplete="current-password">'
        f"{err if error else ''}"
        '<button type="submit" id="sign-in" class="btn primary block">Sign in</button>'
        "</form>"
    )
    return page("Sign in", body)


def _post_item(post: Post, now: float) -> str:
    return (
        f'<li class="post" id="post-{post.id}" data-id="{post.id}">'
        '<div class="post-head">'
        f'<span class="avatar">{_e(post.author[:1].upper())}</span>'
        f'<span class="author">{_e(post.author)}</span>'
        f'<span class="age">{_age(now - post.created)}</span></div>'
        # A coloured block stands in for the photo and makes the feed scroll.
        f'<div class="photo" style="--h:{post.id * 47 % 360}"></div>'
        f'<p class="caption">{_e(post.caption)}</p>'
        f'<span class="{_status_class(post.status)}">{_e(post.status)}</span></li>'
    )


def feed(user: str, posts: list[Post], now: float) -> str:
    items = "".join(_post_item(p, now) for p in posts)
    body = (
        '<nav class="actions">'
        '<a id="compose" class="btn primary" href="/compose">New post</a>'
        '<a id="open-review" class="btn" href="/review">Review queue</a>'
        '<a id="open-settings" class="btn" href="/settings">Settings</a>'
        '<a id="open-tasks" class="btn" href="/tasks">Tasks</a>'
        # Signing out changes state, so it is a POST, not a link.
        '<form method="post" action="/logout">'
        '<button type="submit" id="sign-out" class="btn">Sign out</button></form>'
        f'</nav><ul id="feed">{items}</ul>'
        '<footer id="feed-end">You\'re all caught up</footer>'
    )
    return page("Feed", body, user=user)


def compose(user: str, *, caption: str = "", needs_review: bool = False, error: str = "") -> str:
    err = f'<p id="compose-error" class="error" role="alert">{_e(error)}</p>' if error else ""
    checked = " checked" if needs_review else ""
    body = (
        '<h1>New post</h1><form class="card" method="post" action="/compose">'
        '<label for="caption">Caption</label>'
        '<textarea id="caption" name="caption" rows="4" '
        'placeholder="Write a caption...">'
        f"{_e(caption)}</textarea>{err}"
        '<label class="check" for="needs-review">Needs review before publishing'
        '<input type="checkbox" id="needs-review" name="needs_review" '
        f'value="1"{checked}>'
        "</label>"
        '<button type="submit" id="publish" class="btn primary block">Publish</button>'
        '<a id="cancel" class="btn block" href="/feed">Cancel</a></form>'
    )
    return page("New post", body, user=user, script=_DRAFT_JS % json.dumps(f"snapgram-draft:{user}"))


# The caption being written is kept on the device, as a phone app keeps a draft: it is still there
# when the page opens again (the browser profile is the device's own), and gone once published.
_DRAFT_JS = (
    "(function(){var k=%s,c=document.getElementById('caption');"
    "try{if(!c.value&&localStorage.getItem(k))c.value=localStorage.getItem(k);"
    "c.addEventListener('input',function(){localStorage.setItem(k,c.value);});"
    "c.form.addEventListener('submit',function(){localStorage.removeItem(k);});}catch(e){}})();"
)


# Swap in a freshly created node rather than un-hiding one, so a presence
# check on #post-published cannot pass before the delay is over.
_REVEAL_JS = (
    "setTimeout(function(){var p=document.getElementById('post-processing');"
    "var d=document.createElement('p');d.id='post-published';d.textContent='Posted';"
    "p.replaceWith(d);},%d);"
)


def posted(user: str, post: Post, *, remaining: float) -> str:
    if remaining > 0:
        state = '<p id="post-processing" class="processing" role="status">Processing…</p>'
        script = _REVEAL_JS % max(1, round(remaining * 1000))
    else:
        state = '<p id="post-published">Posted</p>'
        script = ""
    body = (
        f'<section class="card">{state}'
        f'<p id="posted-caption" class="caption">{_e(post.caption)}</p>'
        f'<span id="posted-status" class="{_status_class(post.status)}">'
        f"{_e(post.status)}</span>"
        '<a id="back-to-feed" class="btn block" href="/feed">Back to feed</a></section>'
    )
    return page("Posted", body, user=user, script=script)


def _review_item(post: Post) -> str:
    return (
        f'<li class="review-item" id="review-{post.id}" data-id="{post.id}">'
        f'<p class="caption">{_e(post.caption)}</p><div class="row">'
        f'<form method="post" action="/review/{post.id}/approve">'
        f'<button type="submit" id="approve-{post.id}" class="btn primary approve">'
        "Approve</button>"
        f'</form><form method="post" action="/review/{post.id}/reject">'
        f'<button type="submit" id="reject-{post.id}" class="btn reject">'
        "Reject</button>"
        "</form></div></li>"
    )


def review(user: str, queue: list[Post], *, result: str = "") -> str:
    note = f'<p id="review-result" class="notice" role="status">{_e(result)}</p>' if result else ""
    empty = '<p id="review-empty" class="muted">Nothing to review</p>' if not queue else ""
    body = (
        f"<h1>Review queue</h1>{note}"
        f'<ul id="review-queue">{"".join(_review_item(p) for p in queue)}</ul>{empty}'
        '<a id="back-to-feed" class="btn block" href="/feed">Back to feed</a>'
    )
    return page("Review queue", body, user=user)


def settings(user: str, current: Settings, *, saved: bool = False) -> str:
    options = "".join(
        f'<option value="{code}"{" selected" if code == current.language else ""}>{label}</option>'
        for code, label in LANGUAGES.items()
    )
    checked = " checked" if current.notifications else ""
    note = '<p id="settings-saved" class="notice" role="status">Settings saved</p>'
    body = (
        f"<h1>Settings</h1>{note if saved else ''}"
        '<form class="card" method="post" action="/settings">'
        '<label class="check" for="notifications">Push notifications'
        '<input type="checkbox" id="notifications" name="notifications" '
        f'value="on"{checked}>'
        '</label><label for="language">Language</label>'
        f'<select id="language" name="language">{options}</select>'
        '<button type="submit" id="save-settings" class="btn primary block">'
        "Save</button></form>"
        '<a id="back-to-feed" class="btn block" href="/feed">Back to feed</a>'
    )
    return page("Settings", body, user=user)


def _task_item(task: Task) -> str:
    done = " checked" if task.done else ""
    return (
        f'<li class="task" id="task-{task.id}" data-id="{task.id}">'
        f'<span class="task-handle" id="task-{task.id}-handle" aria-label="Move">&#9776;</span>'
        f'<span class="task-title" id="task-{task.id}-title">{_e(task.title)}</span>'
        f'<button type="button" class="btn task-delete" id="task-{task.id}-delete" hidden>Delete</button>'
        f'<input type="checkbox" class="task-done" id="task-{task.id}-done" aria-label="Done"{done}></li>'
    )


def tasks(user: str, items: list[Task]) -> str:
    body = (
        '<h1>Tasks</h1><p id="tasks-status" class="notice" role="status"></p>'
        f'<ul id="tasks">{"".join(_task_item(t) for t in items)}</ul>'
        '<p class="muted">Double tap a task to rename it; press and hold it, or swipe it left, to delete '
        "it; drag it by &#9776; to move it.</p>"
        '<a id="open-classic" class="btn block" href="/tasks/classic">Classic view</a>'
        '<a id="back-to-feed" class="btn block" href="/feed">Back to feed</a>'
    )
    return page("Tasks", body, user=user, script=_TASKS_JS)


def _classic_item(task: Task) -> str:
    done = " checked" if task.done else ""
    # The title is the row's own text, as in hand-written HTML of the time.
    return (
        f'<li class="task" id="task-{task.id}" data-id="{task.id}">'
        f'<input type="checkbox" class="task-done" id="task-{task.id}-done" aria-label="Done"{done}>'
        f"{_e(task.title)}</li>"
    )


def classic_tasks(user: str, items: list[Task]) -> str:
    body = (
        '<div class="classic"><div class="side"><h2>Snapgram</h2>'
        f'<p>Signed in as <b id="whoami">{_e(user)}</b></p>'
        '<p><a id="classic-home" href="/feed">Snapgram home</a></p>'
        '<p><a id="mobile-view" href="/tasks">Mobile view</a></p></div>'
        '<div class="list"><h1>Tasks</h1><p id="tasks-status" role="status"></p>'
        f'<ul id="tasks">{"".join(_classic_item(t) for t in items)}</ul></div></div>'
        '<div id="cookie-banner">We use cookies to remember you. '
        '<button type="button" id="cookie-ok">OK</button></div>'
    )
    return classic_page("Tasks", body, script=_TASKS_JS)


def not_found() -> str:
    body = '<h1>Page not found</h1><a id="go-home" class="btn block" href="/">Go home</a>'
    return page("Not found", body)
