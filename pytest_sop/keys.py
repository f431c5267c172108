"""Key names for ``press_key``: which names exist (checked at lint time) and what each platform sends.

A name is one key, never a combination (``CTRL+A`` is refused): the same SOP must mean the same key
on a phone and in a browser. Android's own ``KEYCODE_*`` names reach Android only. Collection reads
this module: no Selenium here (session.py maps the names to a browser's keys).
"""

from __future__ import annotations

# The names every platform knows, as a person calls the keys.
COMMON_KEYS = (
    "ENTER", "TAB", "DELETE", "BACKSPACE", "SPACE", "ESCAPE", "HOME", "END",
    "UP", "DOWN", "LEFT", "RIGHT", "PAGE_UP", "PAGE_DOWN", "BACK",
)  # fmt: skip
# Phone buttons without a browser key; kept from the first release's press_key.
PHONE_KEYS = ("SEARCH", "MENU", "VOLUME_UP", "VOLUME_DOWN", "APP_SWITCH")

# android.view.KeyEvent codes (developer.android.com/reference/android/view/KeyEvent).
ANDROID_KEYCODES: dict[str, int] = {
    "KEYCODE_HOME": 3, "KEYCODE_BACK": 4, "KEYCODE_CALL": 5, "KEYCODE_ENDCALL": 6,
    **{f"KEYCODE_{d}": 7 + d for d in range(10)},
    "KEYCODE_STAR": 17, "KEYCODE_POUND": 18, "KEYCODE_DPAD_UP": 19, "KEYCODE_DPAD_DOWN": 20,
    "KEYCODE_DPAD_LEFT": 21, "KEYCODE_DPAD_RIGHT": 22, "KEYCODE_DPAD_CENTER": 23, "KEYCODE_VOLUME_UP": 24,
    "KEYCODE_VOLUME_DOWN": 25, "KEYCODE_POWER": 26, "KEYCODE_CAMERA": 27, "KEYCODE_CLEAR": 28,
    **{f"KEYCODE_{chr(ord('A') + i)}": 29 + i for i in range(26)},
    "KEYCODE_COMMA": 55, "KEYCODE_PERIOD": 56, "KEYCODE_TAB": 61, "KEYCODE_SPACE": 62, "KEYCODE_ENTER": 66,
    "KEYCODE_DEL": 67, "KEYCODE_GRAVE": 68, "KEYCODE_MINUS": 69, "KEYCODE_EQUALS": 70, "KEYCODE_AT": 77,
    "KEYCODE_MENU": 82, "KEYCODE_NOTIFICATION": 83, "KEYCODE_SEARCH": 84, "KEYCODE_MEDIA_PLAY_PAUSE": 85,
    "KEYCODE_MEDIA_STOP": 86, "KEYCODE_MEDIA_NEXT": 87, "KEYCODE_MEDIA_PREVIOUS": 88, "KEYCODE_PAGE_UP": 92,
    "KEYCODE_PAGE_DOWN": 93, "KEYCODE_ESCAPE": 111, "KEYCODE_FORWARD_DEL": 112, "KEYCODE_MOVE_HOME": 122,
    "KEYCODE_MOVE_END": 123, "KEYCODE_VOLUME_MUTE": 164, "KEYCODE_SETTINGS": 176, "KEYCODE_APP_SWITCH": 187,
    "KEYCODE_BRIGHTNESS_DOWN": 220, "KEYCODE_BRIGHTNESS_UP": 221,
}  # fmt: skip

ANDROID_KEYS: dict[str, int] = {
    "ENTER": 66, "TAB": 61, "DELETE": 112, "BACKSPACE": 67, "SPACE": 62, "ESCAPE": 111,
    # HOME is the phone's home button, as in the first release; END moves to the end of the text.
    "HOME": 3, "END": 123, "UP": 19, "DOWN": 20, "LEFT": 21, "RIGHT": 22, "PAGE_UP": 92, "PAGE_DOWN": 93,
    "BACK": 4, "SEARCH": 84, "MENU": 82, "VOLUME_UP": 24, "VOLUME_DOWN": 25, "APP_SWITCH": 187,
    **ANDROID_KEYCODES,
}  # fmt: skip
KNOWN_KEYS = (*COMMON_KEYS, *PHONE_KEYS)


def key_name(written: str) -> str | None:
    """The key's name as ``press_key`` knows it (``enter`` is ``ENTER``), or None for no such key."""
    name = written.strip().upper()
    return name if name in KNOWN_KEYS or name in ANDROID_KEYCODES else None


def known_keys_text() -> str:
    return f"{', '.join(KNOWN_KEYS)}, or an Android KEYCODE_* name such as KEYCODE_DPAD_CENTER"
