"""The ``pytest-sop`` command: init, demo, lint, schema, leases, approve, handoff, exceptions, audit verify."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .actions import build_registry
from .errors import SopError, SopInvalid, SopSyntaxError
from .model import Sop, SuiteConfig
from .schema import build_schema
from .starter import InitRefused, find_config, next_steps, no_config_message, write_starter
from .suite import Suite, display_path
from .suiteconfig import load_config


def _registry(plugins: Sequence[str], conftest_actions: Sequence[Any] = ()) -> object:
    hooks = []
    for name in plugins:
        module = importlib.import_module(name)
        hook = getattr(module, "pytest_sop_actions", None)
        if hook is None:
            raise SystemExit(f"pytest-sop: {name} has no pytest_sop_actions()")
        hooks.append(hook())
    return build_registry([*hooks, *conftest_actions])


def _conftest_actions(root: str, files: Sequence[str]) -> tuple[list[Any], list[SopSyntaxError]]:
    """What the ``pytest_sop_actions()`` of the suite's ``conftest.py`` files return, as pytest would load
    them: the one beside sop.yaml and those in the folders between it and the files. A conftest that
    cannot be loaded is a problem naming it (its actions would otherwise be reported as unknown)."""
    root = os.path.abspath(root)
    folders: dict[str, None] = {root: None}
    for path in files:
        folder = os.path.dirname(os.path.abspath(path))
        rel = os.path.relpath(folder, root)
        if rel.startswith(".."):
            continue
        parts = [] if rel == "." else rel.split(os.sep)
        for i in range(1, len(parts) + 1):
            folders.setdefault(os.path.join(root, *parts[:i]), None)
    found: list[Any] = []
    problems: list[SopSyntaxError] = []
    for folder in folders:
        path = os.path.join(folder, "conftest.py")
        if not os.path.isfile(path):
            continue
        try:
            hook = getattr(_import_conftest(path), "pytest_sop_actions", None)
            if hook is not None:
                found.append(hook())
        except Exception as e:
            shown = display_path(path, os.getcwd())
            problems.append(
                SopSyntaxError(shown, 1, 1, "", f"cannot load the project's actions: {type(e).__name__}: {e}")
            )
    return found, problems


def _import_conftest(path: str) -> Any:
    """The module at ``path``, imported as pytest's default import mode would: its folder first on sys.path."""
    import importlib.util

    folder = os.path.dirname(path)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = "conftest_" + os.path.abspath(folder).strip(os.sep).replace(os.sep, "_").replace(".", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def cmd_lint(args: argparse.Namespace) -> int:
    """Each file is checked against its suite: ``--config``, else the nearest sop.yaml at or above it."""
    registry = _registry(args.plugin)
    files: list[str] = []
    problems = 0
    for path in args.paths or ["."]:
        if os.path.isdir(path):
            scanner = Suite(SuiteConfig(path=None), registry, path)  # type: ignore[arg-type]
            files.extend(scanner.scan())
            for err in scanner.scan_errors:  # folders that could not be listed
                print(err.format())
            problems += len(scanner.scan_errors)
        elif os.path.lexists(path):
            files.append(path)
        else:
            print(f"{path}:1:1: no such file or folder")
            return 1
    by_config: dict[str | None, list[str]] = {}
    for path in files:
        by_config.setdefault(args.config or find_config(path), []).append(path)
    cases = 0
    for config_path, group in by_config.items():
        if config_path is None:
            problems += _lint_without_config(group, registry)
            continue
        try:
            config = load_config(config_path, display_path(config_path, os.getcwd()))
        except SopInvalid as e:
            print(e)
            problems += len(e.errors) or 1
            continue
        root = os.path.dirname(os.path.abspath(config_path))
        actions, broken = _conftest_actions(root, group)
        for err in broken:
            print(err.format())
        problems += len(broken)
        suite_registry = _registry(args.plugin, actions) if actions else registry
        suite = Suite(config, suite_registry, root)  # type: ignore[arg-type]
        for path in group:
            result = suite.result(path)
            problems += len(result.errors)
            cases += len(result.cases)
            for err in result.errors:
                print(err.format())
    if problems:
        print(f"{problems} problem(s) in {len(files)} file(s)", file=sys.stderr)
        return 1
    print(f"{len(files)} SOP file(s), {cases} case(s): all valid", file=sys.stderr)
    return 0


def _lint_without_config(paths: list[str], registry: object) -> int:
    """SOP files with no sop.yaml at or above them: their own errors, and that the config is missing."""
    from .sopfile import parse_sop_file

    problems = 0
    for path in paths:
        shown = display_path(path, os.getcwd())
        parsed = parse_sop_file(os.path.abspath(path), registry, shown)  # type: ignore[arg-type]
        folder = os.path.dirname(os.path.abspath(path))
        errors = [
            *parsed.errors,
            SopSyntaxError(shown, 1, 1, "", no_config_message([folder])),
        ]
        for err in sorted(errors, key=SopSyntaxError.sort_key):
            print(err.format())
        problems += len(errors)
    return problems


def cmd_schema(args: argparse.Namespace) -> int:
    schema = build_schema(_registry(args.plugin))  # type: ignore[arg-type]
    text = json.dumps(schema, indent=2) + "\n"
    if args.output:
        tmp = args.output + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, args.output)
    else:
        sys.stdout.write(text)
    return 0


def cmd_leases(args: argparse.Namespace) -> int:
    from pathlib import Path

    import pytest

    from .config import lock_dir_setting, suite_ini_lock_dir
    from .lease_backend import lease_rows, lease_target
    from .leasing import format_lease_table
    from .masking import mask

    config_path = args.config or find_config(".")
    try:
        config = load_config(config_path)
    except SopInvalid as e:
        print(e)
        return 1
    # The settings pytest would use: the suite's ini found from sop.yaml's folder (or here).
    start = Path(os.path.dirname(os.path.abspath(config_path)) if config_path else os.getcwd())
    try:
        lock_dir = lock_dir_setting(args.lock_dir, *suite_ini_lock_dir(start), Path.cwd())
    except pytest.UsageError as e:
        print(f"pytest-sop: {e}", file=sys.stderr)
        return 1
    try:
        target = lease_target(args.leases, "--leases", config.leases, lock_dir)
        rows = lease_rows(target, config.devices, config.accounts)
    except SopError as e:
        print(f"pytest-sop: {mask(str(e))}", file=sys.stderr)
        return 1
    print(format_lease_table(rows))
    return 0


class Refused(Exception):
    """``approve`` will not record this decision: the message says why (exit 2, nothing written)."""


def _checkpoint_roles(sop: Sop, checkpoint: str, get_sop: Callable[[str], Sop | None]) -> list[str]:
    """The roles asked for at ``checkpoint`` in ``sop`` itself.

    A decision is taken on the file that holds the checkpoint (its sha256 is what a change voids),
    so a checkpoint of a SOP that ``sop`` runs is refused, naming the SOP to approve instead.
    """
    roles = [s.params["role"] for s in sop.all_steps if s.action == "approve" and s.params["checkpoint"] == checkpoint]
    if roles:
        return list(dict.fromkeys(roles))
    seen, todo = {sop.id}, [sop]
    while todo:
        current = todo.pop(0)
        for step in current.all_steps:
            if step.action == "approve" and step.params["checkpoint"] == checkpoint and current is not sop:
                raise Refused(
                    f"checkpoint {checkpoint!r} is in SOP {current.id!r} ({current.path}), which {sop.id!r} runs: "
                    f"approve it there: pytest-sop approve {current.id} {checkpoint} ..."
                )
            target = get_sop(step.params["sop"]) if step.action == "run" else None
            if target is not None and target.id not in seen:
                seen.add(target.id)
                todo.append(target)
    return []


def _approval_checks(args: argparse.Namespace) -> tuple[str, str | None]:
    """The SOP file's path and the signing key (None: unsigned), once every check passed.

    :raises Refused: an unknown SOP or checkpoint, an approver without may_approve for its role,
        a key that does not prove ``--by``, or no key when the policy requires signatures.
    """
    from .policy import may_approve
    from .signing import SigningError, proves

    config_path = args.config or "sop.yaml"
    if not os.path.isfile(config_path):
        raise Refused(f"no suite config {config_path} (give --config PATH)")
    try:
        config = load_config(config_path, display_path(config_path, os.getcwd()))
    except SopInvalid as e:
        raise Refused(f"invalid suite config:\n{e}") from None
    root = os.path.dirname(os.path.abspath(config_path))
    suite = Suite(config, _registry(args.plugin), root)  # type: ignore[arg-type]
    sop = suite.get_sop(args.sop)
    if sop is None:
        raise Refused(f"unknown SOP {args.sop!r}: no valid SOP file under {root} has that id (see pytest-sop lint)")
    roles = _checkpoint_roles(sop, args.checkpoint, suite.get_sop)
    if not roles:
        raise Refused(f"SOP {args.sop!r} ({sop.path}) has no approve step with checkpoint {args.checkpoint!r}")
    policy = config.policy
    if not any(may_approve(policy, args.by, role) for role in roles):
        raise Refused(
            f"{args.by!r} may not approve checkpoint {args.checkpoint!r}: the policy gives them no may_approve "
            f"for role {' or '.join(repr(r) for r in roles)}"
        )
    key = args.key or os.environ.get("SOP_SIGNING_KEY") or None
    if key is None:
        if policy is not None and policy.require_signatures:
            raise Refused("policy.require_signatures is true: sign the decision with --key PATH (or SOP_SIGNING_KEY)")
        return sop.path, None
    key = os.path.abspath(os.path.expanduser(key))
    if policy is None or policy.signers is None:
        raise Refused(f"a signing key was given ({key}) but {config_path} has no policy.signers to check it against")
    try:
        proves(key, args.by, policy.signers)
    except SigningError as e:
        raise Refused(str(e)) from None
    return sop.path, key


def cmd_approve(args: argparse.Namespace) -> int:
    from .approvals import file_sha256, record_decision
    from .signing import SigningError

    try:
        sop_file, key = _approval_checks(args)
        d = record_decision(
            args.approvals, args.sop, args.checkpoint, by=args.by, approve=not args.reject, note=args.note or "",
            case=args.case, sop_sha256=file_sha256(sop_file), key=key,
        )  # fmt: skip
    except (Refused, SigningError) as e:
        print(f"pytest-sop approve: refused: {e}", file=sys.stderr)
        return 2
    scope = f"case {d.case}" if d.case else "every case"
    signed = f"signed with {d.fingerprint}" if d.signature else "not signed"
    print(f"{d.decision}: {d.sop} / {d.checkpoint} ({scope}) by {d.by} at {d.at}, {signed} -> {args.approvals}")
    return 0


def _ledger(args: argparse.Namespace) -> str:
    if args.ledger:
        return str(args.ledger)
    config = find_config(".")
    return os.path.join(os.path.dirname(config) if config else ".", ".sop", "ledger.sqlite")


def cmd_exceptions_list(args: argparse.Namespace) -> int:
    from .ledger import Ledger, format_exceptions

    path = _ledger(args)
    if not os.path.exists(path):
        print(f"no ledger at {path}: nothing has run yet", file=sys.stderr)
        records = []
    else:
        records = Ledger(path, create=False).exceptions(open_only=args.open, escalated_only=args.escalated)
    if args.json:
        print(json.dumps([r.to_json() for r in records], indent=2))
    else:
        print(format_exceptions(records))
    return 0


def cmd_exceptions_resolve(args: argparse.Namespace) -> int:
    from .ledger import Ledger

    record = Ledger(_ledger(args), create=False).resolve(args.id, by=args.by, note=args.note)
    print(f"resolved exception {record.id} ({record.case}) by {record.resolved_by}: {record.resolved_note}")
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from .seal import audit_verify_main

    return audit_verify_main(args.path, args.signers, args.ledger)


def cmd_init(args: argparse.Namespace) -> int:
    try:
        write_starter(args.folder)
    except InitRefused as e:
        print(f"pytest-sop init: refused: {e}", file=sys.stderr)
        return 1
    print(next_steps(args.folder), end="")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo.__main__ import run

    return run(args)


def version() -> str:
    """This package's version, and the Python and pytest it runs on."""
    import platform
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    def of(name: str) -> str:
        try:
            return installed(name)
        except PackageNotFoundError:
            return "not installed"

    return f"pytest-sop {of('pytest-sop')} (Python {platform.python_version()}, pytest {of('pytest')})"


class _Version(argparse.Action):
    """``--version``, looked up only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=kwargs.get("help"))

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        print(version())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    from .demo.__main__ import add_arguments as demo_arguments

    parser = argparse.ArgumentParser(prog="pytest-sop", description="Run and check standard operating procedures.")
    parser.add_argument("--version", action=_Version, help="show the versions of pytest-sop, Python and pytest")
    sub = parser.add_subparsers(dest="command", required=True)
    plugin_help = "import MODULE and add the actions its pytest_sop_actions() returns (repeatable)"

    init = sub.add_parser("init", help="write a starter suite: sop.yaml, a first SOP, pytest.ini, package.json")
    init.add_argument("folder", nargs="?", default=".", metavar="DIR", help="where (default: here; made if missing)")
    init.set_defaults(func=cmd_init)

    demo = sub.add_parser("demo", help="serve the demo app, Snapgram, until Ctrl-C")
    demo_arguments(demo)
    demo.set_defaults(func=cmd_demo)

    lint = sub.add_parser("lint", help="check SOP files; prints FILE:LINE:COLUMN: message lines")
    lint.add_argument("paths", nargs="*", help="SOP files or folders (default: .)")
    lint.add_argument("--config", help="suite config (default: each file's nearest sop.yaml, at or above it)")
    lint.add_argument("-p", "--plugin", action="append", default=[], metavar="MODULE", help=plugin_help)
    lint.set_defaults(func=cmd_lint)

    schema = sub.add_parser("schema", help="print the JSON Schema of SOP files, for editors")
    schema.add_argument("-o", "--output", help="write to this file instead of stdout")
    schema.add_argument("-p", "--plugin", action="append", default=[], metavar="MODULE", help=plugin_help)
    schema.set_defaults(func=cmd_schema)
    leases = sub.add_parser("leases", help="who holds which device and account")
    leases.add_argument("--config", help="suite config (default: the nearest sop.yaml)")
    leases.add_argument(
        "--lock-dir", help="lock folder (default: the one pytest uses: ini sop_lock_dir, else /tmp/pytest-sop-locks)"
    )
    leases.add_argument(
        "--leases", help="'file', or the PostgreSQL DSN of a lease server (default: sop.yaml's leases, else file)"
    )
    leases.set_defaults(func=cmd_leases)

    approve = sub.add_parser("approve", help="record a decision at a SOP's approval checkpoint")
    approve.add_argument("sop", help="the SOP id")
    approve.add_argument("checkpoint", help="the approve step's checkpoint")
    approve.add_argument("--by", required=True, help="who decides (an operator with the step's role)")
    approve.add_argument("--case", help="only this case (e.g. cat-publisher-1); default: every case")
    approve.add_argument("--note", help="why")
    approve.add_argument("--reject", action="store_true", help="reject instead: the case fails")
    approve.add_argument("--approvals", default="sop-approvals.yaml", help="approvals file (default: %(default)s)")
    approve.add_argument(
        "--key", help="sign the decision with this SSH key (a private key, or the .pub of one in ssh-agent); "
        "env SOP_SIGNING_KEY"
    )  # fmt: skip
    approve.add_argument("--config", help="suite config (default: sop.yaml in the current folder)")
    approve.add_argument("-p", "--plugin", action="append", default=[], metavar="MODULE", help=plugin_help)
    approve.set_defaults(func=cmd_approve)

    from .handoff import add_parser as handoff_commands

    handoff_commands(sub)  # handoff list|done|release

    exceptions = sub.add_parser("exceptions", help="the exception queue from the run ledger")
    exc_sub = exceptions.add_subparsers(dest="exceptions_command", required=True)
    listing = exc_sub.add_parser("list", help="failed, broken and awaiting cases, with counts and escalation")
    which = listing.add_mutually_exclusive_group()
    which.add_argument("--open", action="store_true", help="only open or escalated ones")
    which.add_argument("--escalated", action="store_true", help="only escalated ones")
    listing.add_argument("--json", action="store_true", help="a JSON list of objects")
    resolve = exc_sub.add_parser("resolve", help="close an exception (a recurrence re-opens it)")
    resolve.add_argument("id", type=int)
    resolve.add_argument("--by", required=True)
    resolve.add_argument("--note", required=True)
    for p in (listing, resolve):
        p.add_argument("--ledger", help="default: .sop/ledger.sqlite beside the nearest sop.yaml")
    listing.set_defaults(func=cmd_exceptions_list)
    resolve.set_defaults(func=cmd_exceptions_resolve)

    audit = sub.add_parser("audit", help="the audit log: verify its hash chain")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser("verify", help="exit 0 when the chain is intact, 1 naming the first bad line")
    verify.add_argument("path", help="sop-audit.jsonl")
    verify.add_argument(
        "--signers",
        metavar="FILE",
        help="OpenSSH allowed_signers file: also check every run's signed line, and that every line is signed",
    )
    verify.add_argument(
        "--ledger", metavar="PATH", help="run ledger: also check the log still has every signed head it remembers"
    )
    verify.set_defaults(func=cmd_audit_verify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SopError as e:
        print(f"pytest-sop: {e}", file=sys.stderr)
        return 1
