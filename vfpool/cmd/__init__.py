"""Console scripts.

oslo.service must run on its threading backend; it is chosen here,
before any module that pulls oslo.service (oslo.messaging does) is
imported, so eventlet is never selected.
"""

from oslo_service import backend

backend.init_backend(backend.BackendType.THREADING)
