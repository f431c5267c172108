"""HTML for each page, as plain strings.

Element ids are a contract with the example SOPs: change them only together
with the SOPs. Everything that came from a user goes through ``_e``.
"""

from __future__ import annotations

import html
import json

from .store import IN_REVIEW, LANGUAGES, Post, Settings

_CSS = """
:root{--bg:#fafafa;--fg:#111827;--muted:#6b7280;--line:#e5e7eb;--brand:#d62976;
--ok:#15803d;--warn:#b45309;--err:#b91c1c}
*{box-sizing:border-box}
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


def not_found() -> str:
    body = '<h1>Page not found</h1><a id="go-home" class="btn block" href="/">Go home</a>'
    return page("Not found", body)
