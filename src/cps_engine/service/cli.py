"""``cps-engine serve``: run the HTTP service, and administer its tenants, keys and webhooks.

``cps-engine serve --db URL [--host --port --workers]`` runs the app under uvicorn (``--workers``
processes; each runs a webhook delivery thread unless ``--no-deliver``).  Admin commands::

    cps-engine serve tenant add acme --db URL --policy policy.toml [--hold-days 7 ...]
    cps-engine serve tenant terms acme --db URL --policy new.toml     # a new terms version
    cps-engine serve key add acme --db URL [--label ci]               # prints the key once
    cps-engine serve key list --db URL [--tenant acme]
    cps-engine serve key revoke <key id> --db URL
    cps-engine serve webhook add acme --url https://... --db URL      # prints the signing secret once
    cps-engine serve webhook list|remove ...
    cps-engine serve deliver --db URL                                 # drain the outbox once
    cps-engine serve openapi [-o docs/openapi.json]

The service's modules (FastAPI, uvicorn, httpx: the ``service`` extra) are imported only by these
commands, so the rest of the CLI works without them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cps_engine.cli_common import bad_input_exits, err, fail, missing_extra, output_file, safe, write_stdout
from cps_engine.limits import MAX_DAYS

if TYPE_CHECKING:
    from cps_engine.service.store import Admin

__all__ = ["serve_app"]

serve_app = typer.Typer(name="serve", help="The HTTP service (FastAPI + uvicorn) and its admin commands.",
                        invoke_without_command=True, add_completion=False, pretty_exceptions_enable=False)
tenant_app = typer.Typer(help="Tenants (merchants' programmes), one ledger each.", no_args_is_help=True)
key_app = typer.Typer(help="API keys (several active per tenant; revoke to rotate).", no_args_is_help=True)
webhook_app = typer.Typer(help="Webhook endpoints for balance changes.", no_args_is_help=True)
serve_app.add_typer(tenant_app, name="tenant")
serve_app.add_typer(key_app, name="key")
serve_app.add_typer(webhook_app, name="webhook")

DbOpt = Annotated[str, typer.Option("--db", help="SQLAlchemy URL (postgresql+psycopg://...) or a SQLite file")]


def _admin(db: str) -> Admin:
    try:
        from cps_engine.service.store import Admin, make_engine
    except ImportError as exc:  # the extra is missing: one sentence naming it
        fail(missing_extra(exc) or f"the service needs its extra: pip install 'cps-engine[service]' ({exc})")
    return Admin(make_engine(db))


@serve_app.callback()
def serve(
    ctx: typer.Context,
    db: Annotated[str | None, typer.Option("--db", help="SQLAlchemy URL or SQLite file")] = None,
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option("--workers", min=1, max=64, help="uvicorn worker processes")] = 1,
    deliver: Annotated[bool, typer.Option("--deliver/--no-deliver", help="deliver webhooks in-process")] = True,
    log_level: Annotated[str, typer.Option("--log-level")] = "info",
) -> None:
    """Run the service (without a sub-command); the sub-commands administer it."""
    if ctx.invoked_subcommand is not None:
        return
    if db is None:
        fail("--db is required to run the service")
    try:
        import uvicorn
    except ImportError as exc:  # the extra is missing: one sentence naming it
        fail(missing_extra(exc) or f"the service needs its extra: pip install 'cps-engine[service]' ({exc})")
    with bad_input_exits(ValueError):
        _admin(db)  # create the service tables before the workers start
    os.environ["CPS_SERVICE_DB"] = db
    os.environ["CPS_SERVICE_DELIVER"] = "1" if deliver else "0"
    uvicorn.run("cps_engine.service.app:create_app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level=log_level, access_log=False)


@tenant_app.command("add")
def tenant_add(
    tenant: Annotated[str, typer.Argument(help="tenant id: lower-case letters, digits, _")],
    db: DbOpt,
    policy: Annotated[Path, typer.Option("--policy", help="policy config (TOML/JSON)")],
    hold_days: Annotated[int | None, typer.Option("--hold-days", min=0, max=MAX_DAYS)] = None,
    min_payout: Annotated[list[str] | None, typer.Option("--min-payout", help="e.g. '10.00 CNY'")] = None,
    payout_fee: Annotated[list[str] | None, typer.Option("--payout-fee", help="'1%' or '2.00 CNY'")] = None,
    binding: Annotated[str | None, typer.Option("--binding", help="binding mode")] = None,
) -> None:
    """Create a tenant and its ledger."""
    with bad_input_exits(ValueError):
        _admin(db).add_tenant(tenant, policy, hold_days=hold_days, min_payout=min_payout or None,
                              payout_fee=payout_fee or None, binding=binding)
    err.print(f"tenant {safe(tenant)} created", highlight=False)


@tenant_app.command("terms")
def tenant_terms(
    tenant: Annotated[str, typer.Argument()],
    db: DbOpt,
    policy: Annotated[Path | None, typer.Option("--policy")] = None,
    hold_days: Annotated[int | None, typer.Option("--hold-days", min=0, max=MAX_DAYS)] = None,
    min_payout: Annotated[list[str] | None, typer.Option("--min-payout")] = None,
    payout_fee: Annotated[list[str] | None, typer.Option("--payout-fee")] = None,
) -> None:
    """Add a terms version (effective after every event recorded so far); restart servers to use it."""
    with bad_input_exits(ValueError):
        v = _admin(db).set_terms(tenant, policy, hold_days=hold_days, min_payout=min_payout or None,
                                 payout_fee=payout_fee or None)
    err.print(f"tenant {safe(tenant)}: terms version {v}", highlight=False)


@tenant_app.command("list")
def tenant_list(db: DbOpt) -> None:
    """Tenant ids, one a line."""
    with bad_input_exits(ValueError):
        write_stdout("".join(t + "\n" for t in _admin(db).tenants()))


@key_app.command("add")
def key_add(tenant: Annotated[str, typer.Argument()], db: DbOpt,
            label: Annotated[str, typer.Option("--label", help="a note (who uses it)")] = "") -> None:
    """Create an API key and print it (shown this once; only its salted hash is stored)."""
    with bad_input_exits(ValueError):
        key = _admin(db).add_key(tenant, label)
    write_stdout(key + "\n")


@key_app.command("list")
def key_list(db: DbOpt, tenant: Annotated[str | None, typer.Option("--tenant")] = None) -> None:
    """Key ids with their tenant, label and state (JSON Lines; never the keys)."""
    with bad_input_exits(ValueError):
        rows = _admin(db).keys(tenant)
    write_stdout("".join(json.dumps({"key_id": k.key_id, "tenant": k.tenant, "label": k.label,
                                     "active": k.revoked_us is None}, ensure_ascii=False) + "\n" for k in rows))


@key_app.command("revoke")
def key_revoke(key_id: Annotated[str, typer.Argument(help="the key id (or the whole key)")], db: DbOpt) -> None:
    """Revoke a key: refused from the next request on."""
    with bad_input_exits(ValueError):
        _admin(db).revoke_key(key_id)
    err.print("revoked", highlight=False)


@webhook_app.command("add")
def webhook_add(tenant: Annotated[str, typer.Argument()], db: DbOpt,
                url: Annotated[str, typer.Option("--url", help="http(s) endpoint receiving POSTs")]) -> None:
    """Register an endpoint; prints its id and signing secret (shown this once)."""
    with bad_input_exits(ValueError):
        wid, secret = _admin(db).add_webhook(tenant, url)
    write_stdout(json.dumps({"id": wid, "secret": secret}) + "\n")


@webhook_app.command("list")
def webhook_list(db: DbOpt, tenant: Annotated[str | None, typer.Option("--tenant")] = None) -> None:
    """Endpoints (JSON Lines; never the secrets)."""
    with bad_input_exits(ValueError):
        rows = _admin(db).webhooks(tenant)
    write_stdout("".join(json.dumps({"id": w.id, "tenant": w.tenant, "url": w.url,
                                     "active": w.disabled_us is None}) + "\n" for w in rows))


@webhook_app.command("remove")
def webhook_remove(webhook_id: Annotated[int, typer.Argument()], db: DbOpt) -> None:
    """Stop delivering to an endpoint."""
    with bad_input_exits(ValueError):
        _admin(db).remove_webhook(webhook_id)
    err.print("removed", highlight=False)


@serve_app.command("deliver")
def deliver_cmd(db: DbOpt, timeout: Annotated[float, typer.Option("--timeout", help="seconds at most")] = 60.0,
                tenant: Annotated[str | None, typer.Option("--tenant", help="only this tenant's messages")] = None
                ) -> None:
    """Deliver every webhook message due now, once (exit 1 if some failed and wait for a retry)."""
    with bad_input_exits(ValueError):
        from cps_engine.service.webhooks import Deliverer

        deliverer = Deliverer(_admin(db).engine, tenant=tenant)
        try:
            stats = deliverer.drain(timeout_s=timeout)
            left = deliverer.pending()
        finally:
            deliverer.client.close()
    err.print(f"delivered {stats.delivered}, failed {stats.failed} ({stats.dead} given up), {left} pending",
              highlight=False)
    if stats.failed:
        raise typer.Exit(1)


@serve_app.command("openapi")
def openapi_cmd(out: Annotated[Path | None, typer.Option("-o", "--output")] = None) -> None:
    """Write the OpenAPI document (docs/openapi.json is this, checked in)."""
    with bad_input_exits():
        from cps_engine.service.app import openapi_document
    with bad_input_exits(), output_file(out) as fh:
        fh.write(json.dumps(openapi_document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n")
