"""The suite: every SOP file under the suite folder, checked against ``sop.yaml`` and each other.

Per-file checks live in :mod:`sopfile`; here are the checks that need the whole suite:
apps, requirements, ``${account.X}``/``${device.X}``/``${vars.X}`` names, ``run`` references
and cycles, the ``${params.X}`` a run step must pass, unique ids. The result for a file is its
cases (none for a ``kind: flow`` SOP, which only other SOPs run) or all its errors.
"""

from __future__ import annotations

import fnmatch
import gc
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

from .actions import ActionRegistry
from .checker import did_you_mean
from .errors import SopSyntaxError
from .matching import candidate_accounts, candidate_devices, discovered_may_match
from .model import Args, Case, Shared, Sop, Step, SuiteConfig
from .sopfile import NO_POSITIONS, ParsedSop, parse_sop_file
from .yamlsafe import Path_, format_path

DEVICE_FIELDS = ("id", "platform")
ACCOUNT_BUILTINS = ("id", "role")
COMMON_PLATFORMS = frozenset(("android", "ios", "web"))
SKIP_DIRS = {".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", "venv", ".tox", ".nox"}


@dataclass(frozen=True)
class FileResult:
    path: str
    cases: tuple[Case, ...]
    errors: tuple[SopSyntaxError, ...]


def display_path(path: str, base: str) -> str:
    """Paths in messages are relative to where pytest was started, when they can be."""
    abspath = os.path.abspath(path)
    rel = os.path.relpath(abspath, base)
    return abspath if rel.startswith("..") else rel


class Suite:
    def __init__(
        self,
        config: SuiteConfig,
        registry: ActionRegistry,
        root: str,
        patterns: Sequence[str] = ("*.sop.yaml", "*.sop.yml"),
        base: str | None = None,
        ignore: Sequence[str] = (),
    ) -> None:
        self.config = config
        self.registry = registry
        self.root = os.path.abspath(root)
        self.patterns = tuple(patterns)
        self.base = base or os.getcwd()
        self.ignore = tuple(ignore)
        self._parsed: dict[str, ParsedSop] | None = None
        self._by_id: dict[str, list[ParsedSop]] = {}
        self._results: dict[str, FileResult] = {}
        self.shared = Shared()  # equal names, templates, locators and step parameters: one object each
        self.scan_errors: list[SopSyntaxError] = []

    def matches(self, filename: str) -> bool:
        return any(fnmatch.fnmatch(filename, p) for p in self.patterns)

    def scan(self) -> Iterator[str]:
        """Every path named like a SOP file, in name order; folders so named too (each is an error).

        FIFOs and devices are listed as well: reading one reports it instead of waiting on it.
        A folder that cannot be listed is in ``scan_errors``: its SOP files are not silently missed.
        """
        self.scan_errors = []
        for dirpath, dirnames, filenames in os.walk(self.root, onerror=self._cannot_list):
            dirnames[:] = sorted(
                d for d in dirnames
                if d not in SKIP_DIRS and not d.startswith(".")
                and not any(fnmatch.fnmatch(d, pat) for pat in self.ignore)
            )  # fmt: skip
            named = [n for n in filenames if self.matches(n)] + [d for d in dirnames if self.matches(d)]
            for name in sorted(named):
                yield os.path.join(dirpath, name)

    def _cannot_list(self, error: OSError) -> None:
        folder = display_path(str(error.filename), self.base)
        self.scan_errors.append(SopSyntaxError(folder, 1, 1, "", f"cannot list folder: {error.strerror}"))

    def unusable_files(self) -> tuple[SopSyntaxError, ...]:
        """Errors pytest would not show: paths named like SOP files that are not regular files
        (folders, FIFOs, devices; pytest collects regular files only) and folders that cannot be listed.
        """
        index = self._index()
        return tuple(self.scan_errors) + tuple(
            e
            for path, parsed in index.items()
            if parsed.sop is None and not os.path.isfile(path)
            for e in parsed.errors
        )

    def _index(self) -> dict[str, ParsedSop]:
        if self._parsed is None:
            self._parsed = {}
            # Parsing builds many small acyclic objects; collector passes over a growing
            # heap would only slow it down (refcounting frees what is dropped).
            was_enabled = gc.isenabled()
            gc.disable()
            try:
                for path in self.scan():
                    self._add(path)
            finally:
                if was_enabled:
                    gc.enable()
        return self._parsed

    def _add(self, abspath: str) -> ParsedSop:
        assert self._parsed is not None
        parsed = parse_sop_file(abspath, self.registry, display_path(abspath, self.base), self.shared)
        self._parsed[abspath] = parsed
        sop_id = parsed.raw_id
        if sop_id:
            self._by_id.setdefault(sop_id, []).append(parsed)
        return parsed

    def get_sop(self, sop_id: str) -> Sop | None:
        """The valid SOP with that id, if exactly one file defines it."""
        self._index()
        found = self._by_id.get(sop_id, [])
        return found[0].sop if len(found) == 1 and not found[0].errors else None

    def result(self, path: str) -> FileResult:
        abspath = os.path.abspath(path)
        index = self._index()
        if abspath not in self._results:
            parsed = index.get(abspath) or self._add(abspath)
            self._results[abspath] = _SuiteCheck(self, parsed).run()
            self._release(abspath, parsed)
        return self._results[abspath]

    def _release(self, abspath: str, parsed: ParsedSop) -> None:
        """Once a file is checked, other files only need its SOP and errors, not its positions."""
        slim = replace(parsed, templates=(), run_steps=(), positions=NO_POSITIONS, platforms=())
        self._parsed[abspath] = slim  # type: ignore[index]
        same = self._by_id.get(parsed.raw_id or "", [])
        for i, p in enumerate(same):
            if p is parsed:
                same[i] = slim


class _SuiteCheck:
    def __init__(self, suite: Suite, parsed: ParsedSop) -> None:
        self.suite = suite
        self.config = suite.config
        self.parsed = parsed
        self.errors: list[SopSyntaxError] = list(parsed.errors)

    def error(self, path: Path_, message: str) -> None:
        p = self.parsed.at(path)
        self.errors.append(SopSyntaxError(self.parsed.path, p.line, p.col, format_path(path), message))

    def run(self) -> FileResult:
        sop = self.parsed.sop
        if sop is not None:
            self.unique_id(sop)
            self.app(sop)
            if sop.kind == "case":  # a flow runs on its caller's device and account
                self.requirements(sop)
            self.run_refs(sop)
            self.template_names(sop)
            self.platforms()
        if self.errors or sop is None:
            return FileResult(self.parsed.path, (), tuple(sorted(self.errors, key=SopSyntaxError.sort_key)))
        return FileResult(self.parsed.path, self.cases(sop), ())

    def unique_id(self, sop: Sop) -> None:
        others = [p for p in self.suite._by_id.get(sop.id, []) if p.path != self.parsed.path]
        if others:
            where = ", ".join(p.path for p in others)
            self.error(("id",), f"SOP id {sop.id!r} is also used by {where}; ids must be unique in the suite")

    def app(self, sop: Sop) -> None:
        if sop.app is not None and sop.app not in self.config.apps:
            known = ", ".join(self.config.apps) or "none"
            self.error(
                ("app",),
                f"unknown app {sop.app!r}; apps in {self.config_name()}: {known}"
                f"{did_you_mean(sop.app, self.config.apps)}",
            )

    def config_name(self) -> str:
        return self.config.path or "sop.yaml (not found)"

    def requirements(self, sop: Sop) -> None:
        devices = candidate_devices(self.config, sop.device)
        if not devices and not discovered_may_match(self.config, sop.device):
            pool = ", ".join(f"{d.id} ({d.platform}, tags [{', '.join(d.tags)}])" for d in self.config.devices)
            what = f"no device in {self.config_name()} matches {sop.device or 'any device'}"
            self.error(("requires", "device") if sop.device else ("id",), f"{what}; devices: {pool or 'none'}")
            return
        if sop.account is None:
            return
        if not candidate_accounts(self.config, sop.device, sop.account, devices):
            pool = ", ".join(
                f"{a.id} (role {a.role}, tags [{', '.join(a.tags)}]"
                + (f", devices [{', '.join(a.devices)}])" if a.devices is not None else ")")
                for a in self.config.accounts
            )
            self.error(
                ("requires", "account"),
                f"no account in {self.config_name()} matches {sop.account} and may use a device "
                f"matching {sop.device or 'any device'}; accounts: {pool or 'none'}",
            )

    def closure(self, sop: Sop) -> list[Sop]:
        """``sop`` and every SOP it runs, directly or not (cycles are reported elsewhere)."""
        seen: dict[str, Sop] = {sop.id: sop}
        todo = [sop]
        while todo:
            for step in _all_steps(todo.pop()):
                if step.action == "run":
                    target = self.suite.get_sop(step.params["sop"])
                    if target and target.id not in seen:
                        seen[target.id] = target
                        todo.append(target)
        return list(seen.values())

    def run_refs(self, sop: Sop) -> None:
        for step, path in self.parsed.run_steps:
            ref = step.params["sop"]
            found = self.suite._by_id.get(ref, [])
            if not found:
                self.error(
                    path + ("run",),
                    f"unknown SOP {ref!r}; no SOP file under {self.suite.root} has that id"
                    f"{did_you_mean(ref, self.suite._by_id)}",
                )
            elif len(found) > 1:
                self.error(
                    path + ("run",), f"SOP id {ref!r} is defined more than once: {', '.join(p.path for p in found)}"
                )
            elif found[0].sop is None or found[0].errors:
                self.error(path + ("run",), f"SOP {ref!r} ({found[0].path}) has errors of its own")
            else:
                cycle = self.cycle_from(found[0].sop, [sop.id])
                if cycle:
                    self.error(path + ("run",), f"run cycle: {' -> '.join(cycle)}")
                else:
                    self.params_passed(step, found[0].sop, path)
                    self.allowed_in_run(sop, found[0].sop, path)
                    # A target refused for what it runs (e.g. outside its own allowed_actions) refuses its callers.
                    target_file = os.path.join(self.suite.base, found[0].path)  # its path as shown, from base
                    if any(e.field.endswith(".run") for e in self.suite.result(target_file).errors):
                        self.error(path + ("run",), f"SOP {ref!r} ({found[0].path}) has errors in what it runs")

    def params_passed(self, step: Step, target: Sop, path: Path_) -> None:
        """A run step passes exactly the ``${params.X}`` its target reads: a missing one would stop the
        case mid-way, and one the target never reads is most likely a typo of one it does."""
        args = step.params.get("with")
        passed = [name for name, _ in args.values] if isinstance(args, Args) else []
        reads = ", ".join(target.params) or "none"
        for name in target.params:
            if name not in passed:
                self.error(
                    path + ("run",),
                    f"SOP {target.id!r} reads ${{params.{name}}}, which this run step does not pass; pass it with "
                    f"`run: {{sop: {target.id}, with: {{{name}: VALUE}}}}`{did_you_mean(name, passed)}",
                )
        for name in passed:
            if name not in target.params:
                self.error(
                    path + ("run", "with", name),
                    f"SOP {target.id!r} does not read ${{params.{name}}}; it reads: {reads}"
                    f"{did_you_mean(name, target.params)}",
                )

    def cycle_from(self, sop: Sop, trail: list[str]) -> list[str] | None:
        if sop.id in trail:
            return [*trail, sop.id]
        for step in _all_steps(sop):
            if step.action == "run":
                target = self.suite.get_sop(step.params["sop"])
                if target is not None:
                    found = self.cycle_from(target, [*trail, sop.id])
                    if found and found[0] == trail[0]:
                        return found
        return None

    def allowed_in_run(self, sop: Sop, target: Sop, path: Path_) -> None:
        if sop.allowed_actions is None:
            return
        for inner in self.closure(target):
            for step in _all_steps(inner):
                if step.action not in sop.allowed_actions:
                    self.error(
                        path + ("run",),
                        f"runs {target.id!r} whose step {step.action!r} ({step.pos.file}:{step.pos.line}) "
                        f"is not in allowed_actions",
                    )
                    return

    def template_names(self, sop: Sop) -> None:
        saved = {s.params["as"] for s2 in self.closure(sop) for s in _all_steps(s2) if s.action == "save_text"}
        accounts = candidate_accounts(self.config, sop.device, sop.account) if sop.account is not None else None
        for template, path in self.parsed.templates:
            for ns, name in template.refs:
                ref = f"${{{ns}.{name}}}"
                if ns == "vars" and name not in saved:
                    self.error(
                        path,
                        f"{ref} is never saved; add a save_text step with 'as: {name}' before it"
                        f"{did_you_mean(name, saved)}",
                    )
                elif ns == "device" and name not in DEVICE_FIELDS:
                    self.error(
                        path,
                        f"{ref} is not a device field; expected one of: {', '.join(DEVICE_FIELDS)}"
                        f"{did_you_mean(name, DEVICE_FIELDS)}",
                    )
                elif ns == "account" and name not in ACCOUNT_BUILTINS:
                    if accounts is None:
                        self.error(path, f"{ref} is used but the SOP requires no account (add requires.account)")
                        continue
                    missing = [a.id for a in accounts if name not in a.fields]
                    if missing:
                        fields = {f for a in accounts for f in a.fields} | set(ACCOUNT_BUILTINS)
                        self.error(
                            path,
                            f"{ref} is not a field of account(s) {', '.join(missing)}{did_you_mean(name, fields)}",
                        )

    def platforms(self) -> None:
        """A ``platform:`` that is neither a device's in sop.yaml nor a common one would skip its step on
        every device: most likely a typo. (A common platform the suite has no device of is fine: a SOP
        written for several suites.)"""
        known = {d.platform.lower() for d in self.config.devices} | ({"android"} if self.config.discover else set())
        for name, path in self.parsed.platforms:
            if name.lower() not in known | COMMON_PLATFORMS:
                self.error(
                    path,
                    f"no device in {self.config_name()} has platform {name!r}; platforms: "
                    f"{', '.join(sorted(known)) or 'none'}{did_you_mean(name.lower(), known | COMMON_PLATFORMS)}",
                )

    def cases(self, sop: Sop) -> tuple[Case, ...]:
        if sop.kind == "flow":
            return ()  # only run by other SOPs: checked, never collected
        rows = sop.inputs or (None,)
        accounts: list[str | None] = [None]
        if sop.account is not None and sop.account.each:
            accounts = [a.id for a in candidate_accounts(self.config, sop.device, sop.account)]
        return tuple(Case(sop, row, acc) for row in rows for acc in accounts)


def _all_steps(sop: Sop) -> Iterator[Step]:
    return sop.all_steps
