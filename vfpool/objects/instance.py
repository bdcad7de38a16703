"""What vfpool holds for one instance (read only)."""

from vfpool.db import api as db_api
from vfpool.objects import migration_view
from vfpool.objects import vf as vf_obj


@db_api.context_manager.reader
def get_instance(context, instance_uuid: str) -> dict:
    session = context.session
    return {
        'allocations': vf_obj.allocations(session, instance_uuid,
                                          extra=True),
        'migration': migration_view.current(session, instance_uuid),
    }
