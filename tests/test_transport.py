"""Appium's requests on connections kept open between sessions (issue 14): one TCP connection for
sessions one after another, a new one when Appium closed the old, and Selenium's own way where
this one cannot do what urllib3 would (https, a proxy)."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import pytest
from appium import webdriver
from appium.options.common import AppiumOptions
from appium.webdriver.client_config import AppiumClientConfig
from urllib3 import PoolManager

from pytest_sop.appium_server import ManagedAppium, open_sessions
from pytest_sop.background import background
from pytest_sop.model import Device, SourcePos
from pytest_sop.session import DeviceSession, SensitiveConnection
from pytest_sop.transport import KeptConnections, kept_connections

CAPS = {
    "platformName": "Fake",
    "appium:automationName": "Fake",
    "appium:app": str(Path(__file__).parent / "apps" / "fake_app.xml"),
}


def session_on(url: str) -> webdriver.Remote:
    connection = SensitiveConnection(client_config=AppiumClientConfig(remote_server_addr=url))
    return webdriver.Remote(connection, options=AppiumOptions().load_capabilities(dict(CAPS)))


def kept_ports(url: str) -> list[int]:
    """The local ports of the idle connections kept to ``url``'s Appium."""
    port = int(url.rsplit(":", 1)[1])
    return [c.sock.getsockname()[1] for c in kept_connections._idle.get(("127.0.0.1", port), []) if c.sock]


def test_sessions_one_after_another_share_one_connection(own_appium: ManagedAppium) -> None:
    """On a server of its own: the tests before it in this process keep connections to the shared one."""
    url = own_appium.url
    first = session_on(url)
    assert isinstance(first.command_executor._conn, KeptConnections)
    first.find_element("id", "username").send_keys("ann")
    first.quit()
    [port] = kept_ports(url)

    second = session_on(url)
    assert second.find_element("id", "username").text == ""  # a new session: the app as it starts
    second.quit()
    assert kept_ports(url) == [port], "the second session opened a new TCP connection"


def test_a_connection_appium_closed_is_replaced(own_appium: ManagedAppium) -> None:
    """Appium restarted between two sessions (on the same port): the kept connection is dead, and
    the next session is made on a new one rather than failing."""
    url = own_appium.url
    session_on(url).quit()
    [old] = kept_ports(url)
    own_appium.stop()
    own_appium.start()
    session = session_on(url)
    try:
        assert session.find_element("id", "username").is_displayed()
    finally:
        session.quit()
    assert kept_ports(url) != [old]
    assert open_sessions(url) == []


def test_a_request_that_finds_no_appium_fails_as_before(own_appium: ManagedAppium) -> None:
    """Appium gone: the error is a connection error (the plugin says 'cannot be reached')."""
    url = own_appium.url
    session_on(url).quit()
    own_appium.stop()
    with pytest.raises(OSError):
        session_on(url)


def test_unicode_reaches_the_app_as_typed(appium_url: str) -> None:
    """http.client would send a str body as Latin-1; the JSON goes as UTF-8, as urllib3 sends it."""
    session = session_on(appium_url)
    try:
        field = session.find_element("id", "username")
        field.send_keys("Zoë 東京 🚀")
        assert field.text == "Zoë 東京 🚀"
    finally:
        session.quit()


@pytest.mark.parametrize(
    "url, env",
    [
        ("https://appium.example.com:443", {}),  # certificates: urllib3's (and the user's options)
        ("http://appium.example.com:4723", {"http_proxy": "http://proxy.example.com:3128"}),
    ],
)
def test_https_and_proxies_keep_seleniums_way(url: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    connection = SensitiveConnection(client_config=AppiumClientConfig(remote_server_addr=url))
    assert isinstance(connection._conn, PoolManager)


def test_a_proxy_the_endpoint_is_exempt_from_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", "http://proxy.example.com:3128")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    host = socket.gethostbyname("localhost")
    connection = SensitiveConnection(client_config=AppiumClientConfig(remote_server_addr=f"http://{host}:4723"))
    assert connection._conn is kept_connections


def device_session(url: str) -> DeviceSession:
    device = Device("phone", "fake", SourcePos("sop.yaml", 1, 1), capabilities=CAPS)
    return DeviceSession.create(device, None, url, dict(CAPS))


def test_a_finished_session_is_deleted_without_waiting_for_another_thread(
    own_appium: ManagedAppium, monkeypatch: pytest.MonkeyPatch
) -> None:
    """end_soon() sends the DELETE from the case's own thread: with no other thread ever run, Appium
    has deleted the session (before, a device thread sent it once it woke: the device waited for that)."""
    session = device_session(own_appium.url)
    handed: list[object] = []
    monkeypatch.setattr(background, "submit", lambda fn: handed.append(fn) or Future())
    session.end_soon()
    deadline = time.monotonic() + 10
    while open_sessions(own_appium.url) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert open_sessions(own_appium.url) == []
    assert handed == []
    session.quit()  # reads the DELETE's answer: the connection serves the next session
    [port] = kept_ports(own_appium.url)
    device_session(own_appium.url).quit()
    assert kept_ports(own_appium.url) == [port]


def test_threads_waiting_for_one_deletion_all_return(own_appium: ManagedAppium) -> None:
    """Several threads quit() a session whose DELETE is on its way (a case's teardown, a closing
    device): one reads the answer, every one returns, and nothing is read twice from the connection."""
    session = device_session(own_appium.url)
    session.end_soon()
    threads = [threading.Thread(target=session.quit) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    assert open_sessions(own_appium.url) == []
    again = device_session(own_appium.url)  # the connection the answer was read from still works
    assert again.driver.find_element("id", "username").is_displayed()
    again.quit()


def test_a_run_leaves_no_connection_open_when_it_ends(pytester: pytest.Pytester, own_appium: ManagedAppium) -> None:
    """pytest run in this process (as an IDE or a script calling ``pytest.main`` does): when the run
    ends, the connections it kept to Appium are closed, not left open until the process exits."""
    from test_engine_fake import run_sop

    result = run_sop(pytester, own_appium.url, {"t.sop.yaml": "id: t\nsteps:\n  - tap: {id: login_button}\n"})
    result.assert_outcomes(passed=1)
    assert kept_ports(own_appium.url) == []
