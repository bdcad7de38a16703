"""The request context that carries a DB transaction through a call."""

from oslo_context import context
from oslo_db.sqlalchemy import enginefacade


@enginefacade.transaction_context_provider
class RequestContext(context.RequestContext):
    """oslo.context's context, able to hold an enginefacade session."""


def get_admin_context() -> RequestContext:
    return RequestContext(is_admin=True, overwrite=False)
