"""The ``tollgate`` command line: serve, simulate, keys, budgets, report.

Exit status: 0 success, 1 a runtime failure, 2 a bad invocation or an invalid configuration file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tollgate.errors import ConfigError
from tollgate.settings import Settings, export_config_path, hash_key, load_settings

DEFAULT_CONFIG = "tollgate.yaml"


def _load(path: str) -> Settings:
    from tollgate.budgets.pricing_check import check_budget_prices
    from tollgate.pricing import PriceTable

    try:
        settings = load_settings(path)
        check_budget_prices(settings, PriceTable(settings.prices).price_for)
        return settings
    except ConfigError as exc:
        print(f"tollgate: invalid configuration: {exc.message}", file=sys.stderr)
        raise SystemExit(2) from None


def _serve(args: argparse.Namespace) -> int:
    from tollgate.logs import configure_logging
    from tollgate.workers import serve

    settings = _load(args.config)  # validate before any worker starts
    configure_logging(settings.log_level)
    export_config_path(args.config)
    serve(
        "tollgate.app:create_app_from_environment",
        host=args.host,
        port=args.port,
        workers=args.workers,
        factory=True,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        proxy_headers=False,  # the gateway reads no X-Forwarded-*; the middleware cost ~1 µs per request for nothing
        server_header=False,
        log_config=None,
        timeout_graceful_shutdown=30,
    )
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from tollgate.simulator import run_simulator

    run_simulator(
        host=args.host,
        port=args.port,
        latency_ms=args.latency_ms,
        chunk_delay_ms=args.chunk_delay_ms,
        record=not args.no_record,
        require_key=args.require_key,
        reply_words=args.reply_words,
    )
    return 0


def _keys_generate(args: argparse.Namespace) -> int:
    from tollgate.services.authenticator import new_virtual_key

    key = new_virtual_key()
    print(f"key:    {key}")
    print(f'config: key: "sha256:{hash_key(key)}"')
    return 0


def _config_check(args: argparse.Namespace) -> int:
    settings = _load(args.config)
    print(
        f"{args.config}: ok ({len(settings.providers)} providers, {len(settings.models)} models, "
        f"{len(settings.keys)} keys, {len(settings.budgets)} budgets)"
    )
    return 0


def _budgets_status(args: argparse.Namespace) -> int:
    from tollgate.cli_budgets import budgets_status

    return budgets_status(_load(args.config), as_json=args.json, out=sys.stdout)


def _period_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--period", help="2026, 2026-11 or 2026-11-05 (default: the current month)")
    parser.add_argument("--from", dest="date_from", help="first day, YYYY-MM-DD")
    parser.add_argument("--to", dest="date_to", help="last day, YYYY-MM-DD (default: today)")


def _report(args: argparse.Namespace) -> int:
    from tollgate.cli_ledger import report

    by = [part for value in args.by for part in value.split(",") if part]
    return report(
        _load(args.config),
        by=by,
        period=args.period,
        date_from=args.date_from,
        date_to=args.date_to,
        daily=args.daily,
        fmt=args.format,
        out=sys.stdout,
    )


def _chargeback(args: argparse.Namespace) -> int:
    from tollgate.cli_ledger import chargeback

    return chargeback(
        _load(args.config),
        period=args.period,
        date_from=args.date_from,
        date_to=args.date_to,
        team=args.team,
        out=sys.stdout,
    )


def _focus(args: argparse.Namespace) -> int:
    from tollgate.cli_ledger import focus_export

    return focus_export(
        _load(args.config),
        period=args.period,
        date_from=args.date_from,
        date_to=args.date_to,
        fmt=args.format,
        by=args.by.split(",") if args.by else None,
        out=sys.stdout,
    )


def _verify(args: argparse.Namespace) -> int:
    from tollgate.cli_ledger import verify

    return verify(_load(args.config), as_json=args.json, out=sys.stdout)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tollgate", description="A token gateway for LLM APIs.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", default=DEFAULT_CONFIG, help="configuration file (default ./tollgate.yaml)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=_positive_int, default=1, help="worker processes (default 1)")
    serve.set_defaults(run=_serve)

    simulate = commands.add_parser("simulate", help="run the simulated OpenAI/Anthropic provider")
    simulate.add_argument("--host", default="127.0.0.1")
    simulate.add_argument("--port", type=int, default=8100)
    simulate.add_argument("--latency-ms", type=float, default=0.0, help="delay before the response headers")
    simulate.add_argument("--chunk-delay-ms", type=float, default=0.0, help="delay between stream chunks")
    simulate.add_argument("--reply-words", type=int, default=16, help="words in a reply without max_tokens")
    simulate.add_argument("--require-key", default=None, help="answer 401 unless this provider key is sent")
    simulate.add_argument("--no-record", action="store_true", help="keep no record of requests (load tests)")
    simulate.set_defaults(run=_simulate)

    keys = commands.add_parser("keys", help="virtual keys").add_subparsers(dest="keys_command", required=True)
    generate = keys.add_parser("generate", help="print a new key and the hash to put in the config")
    generate.set_defaults(run=_keys_generate)

    config = commands.add_parser("config", help="configuration").add_subparsers(dest="config_command", required=True)
    check = config.add_parser("check", help="validate a configuration file")
    check.add_argument("--config", default=DEFAULT_CONFIG)
    check.set_defaults(run=_config_check)

    budgets = commands.add_parser("budgets", help="budgets").add_subparsers(dest="budgets_command", required=True)
    status = budgets.add_parser("status", help="used, reserved and remaining for the current windows")
    status.add_argument("--config", default=DEFAULT_CONFIG)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(run=_budgets_status)

    report = commands.add_parser("report", help="usage and cost from the ledger, grouped")
    _period_options(report)
    report.add_argument("--by", action="append", default=[], help="team,developer,repo,model,env,key,… (repeatable)")
    report.add_argument("--daily", action="store_true", help="one row per local day as well")
    report.add_argument("--format", choices=("table", "csv", "json"), default="table")
    report.set_defaults(run=_report)

    ledger = commands.add_parser("ledger", help="the usage ledger").add_subparsers(dest="ledger_command", required=True)
    charge = ledger.add_parser("chargeback", help="one CSV line per team: requests, tokens, cost")
    _period_options(charge)
    charge.add_argument("--team", help="only this team")
    charge.set_defaults(run=_chargeback)
    focus = ledger.add_parser("focus", help="a FOCUS-shaped export to load beside cloud bills")
    _period_options(focus)
    focus.add_argument("--format", choices=("csv", "json"), default="csv")
    focus.add_argument("--by", help="grain: comma-separated attribution columns (default: full attribution)")
    focus.set_defaults(run=_focus)
    check_ledger = ledger.add_parser(
        "verify", help="check every budget counter of the current windows against the ledger"
    )
    check_ledger.add_argument("--config", default=DEFAULT_CONFIG)
    check_ledger.add_argument("--json", action="store_true", help="machine-readable output")
    check_ledger.set_defaults(run=_verify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
