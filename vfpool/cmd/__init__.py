"""Console scripts.

oslo.service must run on its threading backend; it is chosen here,
before any module that pulls oslo.service (oslo.messaging does) is
imported, so eventlet is never selected.
"""

import warnings

from oslo_service import backend

# futurist imports eventlet whenever it is installed (oslo.service still
# depends on it); vfpool never uses it, so its deprecation notice is noise.
warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')

backend.init_backend(backend.BackendType.THREADING)
