"""``sop.yaml`` -> :class:`SuiteConfig`: the Appium server, apps, device and account pools, policy."""

from __future__ import annotations

import os
import re
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from . import templates
from .checker import ID_RE, NAME_RE, Checker, did_you_mean
from .discovery import discover_adb
from .errors import SopInvalid, SopSyntaxError
from .grid import GridError, discover_grid
from .model import Account, App, Device, Leases, Policy, Role, Secret, SourcePos, SuiteConfig
from .yamlsafe import Path_, format_path, load, read_file

CONFIG_KEYS = ("appium", "apps", "devices", "accounts", "policy", "leases")
LEASE_BACKENDS = ("file", "postgres")
DISCOVERY = ("adb", "grid")
_URL_RE = re.compile(r"https?://\S+")


def load_config(path: str | None, display: str | None = None) -> SuiteConfig:
    """Read ``sop.yaml``; ``None`` gives an empty pool. Messages name it ``display``."""
    if path is None:
        return SuiteConfig(path=None)
    try:
        loaded = load(display or path, read_file(path, display))
    except SopSyntaxError as e:
        raise SopInvalid([e]) from None
    parser = _ConfigParser(loaded)
    parser.folder = os.path.dirname(os.path.abspath(path))
    config = parser.config(loaded.data)
    if parser.errors or config is None:
        raise SopInvalid(parser.errors)
    if "adb" in config.discover:
        listed = {d.id for d in config.devices}
        found = [d for d in discover_adb(parser.pos(("devices",))) if d.id not in listed]
        config = replace(config, devices=config.devices + tuple(found))
    for url, where, field in config.grids:
        listed = {d.id for d in config.devices}
        try:
            slots = discover_grid(url, where)
        except GridError as e:
            raise SopInvalid([SopSyntaxError(where.file, where.line, where.col, field, str(e))]) from None
        config = replace(config, devices=config.devices + tuple(d for d in slots if d.id not in listed))
    return config


class _ConfigParser(Checker):
    folder = "."  # where sop.yaml is: paths inside it are relative to it

    def config(self, data: Any) -> SuiteConfig | None:
        doc = self.mapping((), data, allowed=_Extensible(CONFIG_KEYS), what="a suite config mapping")
        if doc is None:
            return None
        server = self.appium(doc["appium"]) if "appium" in doc else "local"
        apps = self.apps(doc["apps"]) if "apps" in doc else {}
        devices, discover, grids = self.devices(doc["devices"]) if "devices" in doc else ((), (), ())
        # Ids of devices written with errors count too: their own error says what is wrong.
        listed: list[Any] = doc["devices"] if isinstance(doc.get("devices"), list) else []
        written = {d["id"] for d in listed if isinstance(d, dict) and isinstance(d.get("id"), str)}
        device_ids = {d.id for d in devices} | written
        accounts = self.accounts(doc["accounts"], device_ids, bool(discover)) if "accounts" in doc else ()
        policy = self.policy(doc["policy"]) if "policy" in doc else None
        leases = self.leases(doc["leases"]) if "leases" in doc else None
        return SuiteConfig(
            path=self.path,
            appium_server=server,
            apps=MappingProxyType(apps),
            devices=devices,
            discover=discover,
            accounts=accounts,
            policy=policy,
            leases=leases,
            grids=grids,
        )

    def leases(self, value: Any) -> Leases | None:
        p: Path_ = ("leases",)
        m = self.mapping(p, value, allowed=("backend", "dsn"), required=("backend",))
        if m is None or "backend" not in m:
            return None
        backend = m["backend"]
        if backend not in LEASE_BACKENDS:
            self.error(
                p + ("backend",),
                f"expected one of: {', '.join(LEASE_BACKENDS)}, got {backend!r}"
                + did_you_mean(str(backend), LEASE_BACKENDS),
            )
            return None
        dsn = m.get("dsn")
        if backend == "file":
            if dsn is not None:
                self.error(p + ("dsn",), "a dsn is only for backend: postgres (lock files need none)")
            return Leases("file", self.pos(p))
        if dsn is None:
            self.error(p, "backend: postgres needs a dsn: a PostgreSQL connection string, or {env: NAME}")
            return None
        if isinstance(dsn, str):
            from .lease_backend import dsn_problem

            problem = dsn_problem(dsn)
            if problem:
                self.error(p + ("dsn",), problem)
                return None
        elif not (isinstance(dsn, dict) and set(dsn) == {"env"}):
            self.error(p + ("dsn",), "expected a PostgreSQL connection string or {env: NAME}")
            return None
        dsn = self.value_or_secret(p + ("dsn",), dsn)
        if not isinstance(dsn, (str, Secret)):
            return None
        return Leases("postgres", self.pos(p), dsn)

    def appium(self, value: Any) -> str:
        a = self.mapping(("appium",), value, allowed=("server",))
        server = (a or {}).get("server", "local")
        if server != "local" and not (isinstance(server, str) and _URL_RE.fullmatch(server)):
            self.error(("appium", "server"), f"expected 'local' or an http(s) URL, got {server!r}")
        return str(server)

    def capabilities(self, path: Path_, value: Any) -> MappingProxyType[str, Any]:
        caps = self.mapping(path, value, allowed=_AnyKey(), what="a mapping of Appium capabilities")
        if caps is None:
            return MappingProxyType({})
        out = {k: self.value_or_secret(path + (k,), v) for k, v in caps.items()}
        app = out.get("appium:app")
        # An app file is written relative to sop.yaml, as every path in it is.
        if isinstance(app, str) and not re.match(r"[a-z]+://", app) and not os.path.isabs(app):
            out["appium:app"] = os.path.normpath(os.path.join(self.folder, app))
        return MappingProxyType(out)

    def url_template(self, p: Path_, url: str) -> None:
        """Only ``${env.NAME}`` can fill an app's URL: it is rendered before any case has inputs."""
        try:
            template = templates.parse(url)
        except templates.TemplateError as e:
            self.error(p, str(e))
            return
        for part in template.parts:
            if isinstance(part, tuple) and part[0] != "env":
                self.error(p, f"'${{{part[0]}.{part[1]}}}' cannot be used in an app's url; only ${{env.NAME}} can")

    def apps(self, value: Any) -> dict[str, App]:
        apps = self.mapping(("apps",), value, allowed=_AnyKey(), what="a mapping of app names to {capabilities: ...}")
        out: dict[str, App] = {}
        for name, spec in (apps or {}).items():
            p: Path_ = ("apps", name)
            if not isinstance(name, str) or not NAME_RE.fullmatch(name):
                self.error(p, f"expected an app name, got {name!r}", key=True)
                continue
            s = self.mapping(p, spec, allowed=("capabilities", "url"))
            if s is None:
                continue
            url = s.get("url")
            if url is not None and not (isinstance(url, str) and _URL_RE.fullmatch(url)):
                self.error(p + ("url",), f"expected an http(s) URL, got {url!r}")
            elif url is not None:
                self.url_template(p + ("url",), url)
            caps = self.capabilities(p + ("capabilities",), s.get("capabilities", {}))
            out[name] = App(name, caps, self.pos(p), url)
        return out

    def devices(self, value: Any) -> tuple[tuple[Device, ...], tuple[str, ...], tuple[tuple[str, SourcePos, str], ...]]:
        if not isinstance(value, list):
            self.error(("devices",), "expected a list of devices")
            return (), (), ()
        devices: list[Device] = []
        discover: list[str] = []
        grids: list[tuple[str, SourcePos, str]] = []
        seen: set[str] = set()
        for i, raw in enumerate(value):
            p: Path_ = ("devices", i)
            if isinstance(raw, dict) and "discover" in raw:
                grid = raw["discover"] == "grid"
                self.mapping(
                    p, raw, allowed=("discover", "url") if grid else ("discover",), required=("url",) if grid else ()
                )
                url = raw.get("url")
                if grid and "url" in raw and not (isinstance(url, str) and _URL_RE.fullmatch(url)):
                    self.error(p + ("url",), f"expected the grid's http(s) URL, got {url!r}")
                elif grid and isinstance(url, str):
                    grids.append((url, self.pos(p + ("url",)), format_path(p + ("url",))))
                if raw["discover"] in DISCOVERY:
                    discover.append(raw["discover"])
                else:
                    self.error(
                        p + ("discover",),
                        f"expected one of: {', '.join(DISCOVERY)}, got {raw['discover']!r}"
                        + did_you_mean(str(raw["discover"]), DISCOVERY),
                    )
                continue
            d = self.mapping(
                p, raw, allowed=("id", "platform", "tags", "capabilities", "server"), required=("id", "platform")
            )
            if d is None or "id" not in d or "platform" not in d:
                continue
            dev_id = self.ident(p + ("id",), d["id"])
            platform = self.string(p + ("platform",), d["platform"])
            tags = self.strings(p + ("tags",), d["tags"], pattern=NAME_RE, what="a tag") if "tags" in d else ()
            caps = (
                self.capabilities(p + ("capabilities",), d["capabilities"])
                if "capabilities" in d
                else MappingProxyType({})
            )
            server = d.get("server")
            if server is not None and not (isinstance(server, str) and _URL_RE.fullmatch(server)):
                self.error(p + ("server",), f"expected an http(s) URL, got {server!r}")
            if dev_id is None or platform is None:
                continue
            if dev_id in seen:
                self.error(p + ("id",), f"duplicate device id {dev_id!r}")
                continue
            seen.add(dev_id)
            devices.append(Device(dev_id, platform.lower(), self.pos(p), tags, caps, server))
        return tuple(devices), tuple(discover), tuple(grids)

    def accounts(self, value: Any, device_ids: set[str], discovering: bool) -> tuple[Account, ...]:
        if not isinstance(value, list):
            self.error(("accounts",), "expected a list of accounts")
            return ()
        out: list[Account] = []
        seen: set[str] = set()
        for i, raw in enumerate(value):
            p: Path_ = ("accounts", i)
            a = self.mapping(p, raw, allowed=("id", "role", "tags", "devices", "fields"), required=("id",))
            if a is None or "id" not in a:
                continue
            acc_id = self.ident(p + ("id",), a["id"])
            role = self.string(p + ("role",), a["role"]) if "role" in a else None
            tags = self.strings(p + ("tags",), a["tags"], pattern=NAME_RE, what="a tag") if "tags" in a else ()
            affinity = None
            if "devices" in a:
                affinity = self.strings(p + ("devices",), a["devices"])
                for j, dev in enumerate(affinity):
                    if dev not in device_ids and not discovering:
                        self.error(
                            p + ("devices", j),
                            f"unknown device {dev!r}; devices are: {', '.join(sorted(device_ids)) or 'none'}"
                            + did_you_mean(dev, sorted(device_ids)),
                        )
            fields: dict[str, Any] = {}
            f = self.mapping(p + ("fields",), a["fields"], allowed=_AnyKey()) if "fields" in a else {}
            for k, v in (f or {}).items():
                fp = p + ("fields", k)
                if not isinstance(k, str) or not NAME_RE.fullmatch(k):
                    self.error(fp, f"expected a field name, got {k!r}", key=True)
                elif isinstance(v, list) or v is None:
                    self.error(fp, "expected a text value or {env: NAME}")
                else:
                    value_ = self.value_or_secret(fp, v)
                    fields[k] = value_ if value_ is None or not isinstance(value_, (int, float, bool)) else str(value_)
            if acc_id is None:
                continue
            if acc_id in seen:
                self.error(p + ("id",), f"duplicate account id {acc_id!r}")
                continue
            seen.add(acc_id)
            out.append(Account(acc_id, self.pos(p), role, tags, affinity, MappingProxyType(fields)))
        return tuple(out)

    def policy(self, value: Any) -> Policy | None:
        pol = self.mapping(("policy",), value, allowed=("roles", "operators", "signers", "require_signatures"))
        if pol is None:
            return None
        roles: dict[str, Role] = {}
        raw_roles = self.mapping(("policy", "roles"), pol.get("roles", {}), allowed=_AnyKey()) or {}
        for name, spec in raw_roles.items():
            p: Path_ = ("policy", "roles", name)
            r = self.mapping(p, spec or {}, allowed=("may_approve", "sops", "devices", "accounts"))
            if r is None:
                continue
            roles[name] = Role(
                name=str(name),
                may_approve=bool(self.boolean(p + ("may_approve",), r["may_approve"])) if "may_approve" in r else False,
                sops=self.selectors(p + ("sops",), r.get("sops", "*"), ("id", "tag")),
                devices=self.selectors(p + ("devices",), r.get("devices", "*"), ("id", "tag", "platform")),
                accounts=self.selectors(p + ("accounts",), r.get("accounts", "*"), ("id", "tag", "role")),
            )
        operators: dict[str, tuple[str, ...]] = {}
        raw_ops = self.mapping(("policy", "operators"), pol.get("operators", {}), allowed=_AnyKey()) or {}
        for name, role_names in raw_ops.items():
            p = ("policy", "operators", name)
            names = self.strings(p, role_names)
            for j, role in enumerate(names):
                if role not in roles:
                    self.error(
                        p + (j,),
                        f"unknown role {role!r}; roles are: {', '.join(roles) or 'none'}" + did_you_mean(role, roles),
                    )
            operators[str(name)] = names
        signers = self.signers(pol["signers"]) if "signers" in pol else None
        require = False
        if "require_signatures" in pol:
            require = bool(self.boolean(("policy", "require_signatures"), pol["require_signatures"]))
            if require and "signers" not in pol:
                self.error(
                    ("policy", "require_signatures"),
                    "require_signatures: true needs policy.signers, the allowed_signers file saying whose key is whose",
                )
        return Policy(MappingProxyType(roles), MappingProxyType(operators), signers, require)

    def signers(self, value: Any) -> str | None:
        """The allowed_signers file, relative to sop.yaml; it must exist now, not at the first signature."""
        p: Path_ = ("policy", "signers")
        name = self.string(p, value, what="the path of an OpenSSH allowed_signers file")
        if name is None:
            return None
        path = os.path.normpath(os.path.join(self.folder, os.path.expanduser(name)))
        if not os.path.isfile(path):
            what = "is not a file" if os.path.exists(path) else "does not exist"
            self.error(p, f"expected an OpenSSH allowed_signers file: {path} {what}")
            return None
        try:
            with open(path, "rb"):
                pass
        except OSError as e:
            self.error(p, f"allowed_signers file {path} cannot be read: {e.strerror}")
            return None
        return path

    def selectors(self, path: Path_, value: Any, kinds: tuple[str, ...]) -> tuple[str, ...]:
        out = self.strings(path, value)
        for i, sel in enumerate(out):
            kind, _, rest = sel.partition(":")
            if sel != "*" and (kind not in kinds or not rest):
                self.error(
                    path + (i,), f"expected '*' or a selector {', '.join(k + ':NAME' for k in kinds)}, got {sel!r}"
                )
        return out


class _Extensible(tuple[str, ...]):
    """Known keys plus ``x-...`` keys, which are the user's own (anchors, notes)."""

    def __contains__(self, key: object) -> bool:
        return (isinstance(key, str) and key.startswith("x-")) or super().__contains__(key)


class _AnyKey(tuple[str, ...]):
    """``allowed`` for mappings whose keys are the user's own names."""

    def __contains__(self, key: object) -> bool:
        return True


__all__ = ["ID_RE", "load_config"]
