"""The commission service: cps_engine's engine and ledger over HTTP for backends that are not Python.

``cps-engine serve --db postgresql+psycopg://...`` runs :func:`create_app` under uvicorn.  Pieces:

- :mod:`~cps_engine.service.app`: the FastAPI app (routes, problem+json errors, OpenAPI);
- :mod:`~cps_engine.service.store`: tenants (one ledger table prefix each), hashed API keys, webhook
  endpoints, the outbox and idempotent responses (the ``svc_`` tables);
- :mod:`~cps_engine.service.webhooks`: balance-change messages, the transactional outbox, signing and
  the delivery worker;
- :mod:`~cps_engine.service.cli`: ``cps-engine serve`` and its admin commands.

Needs the ``service`` extra (``pip install 'cps-engine[service]'``): FastAPI, uvicorn, httpx.  The
names below are imported on first use, so ``cps_engine.cli`` (which mounts :mod:`.cli`) starts
without the extra.  See docs/service.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cps_engine.service.app import create_app, create_app_from_env, openapi_document
    from cps_engine.service.store import Admin, ledger_prefix, make_engine
    from cps_engine.service.webhooks import Deliverer, sign, verify_signature

__all__ = ["Admin", "Deliverer", "create_app", "create_app_from_env", "ledger_prefix", "make_engine",
           "openapi_document", "sign", "verify_signature"]

_WHERE = {"create_app": "app", "create_app_from_env": "app", "openapi_document": "app", "Admin": "store",
          "ledger_prefix": "store", "make_engine": "store", "Deliverer": "webhooks", "sign": "webhooks",
          "verify_signature": "webhooks"}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'cps_engine.service' has no attribute {name!r}")
    return getattr(importlib.import_module(f"cps_engine.service.{_WHERE[name]}"), name)
