# vfpool documentation build configuration (sphinx-build -W).

import os
import sys

sys.path.insert(0, os.path.abspath('../..'))

extensions = [
    'oslo_config.sphinxext',
    'oslo_config.sphinxconfiggen',
]

# oslo_config.sphinxconfiggen: writes _static/vfpool.conf.sample from the
# same generator config as "tox -e genconfig".
config_generator_config_file = '../../etc/vfpool/vfpool-config-generator.conf'
sample_config_basename = '_static/vfpool'

project = 'vfpool'
copyright = 'vfpool developers'
master_doc = 'index'
source_suffix = {'.rst': 'restructuredtext'}
exclude_patterns = ['_build']
pygments_style = 'sphinx'
html_theme = 'alabaster'
html_static_path = ['_static']
html_theme_options = {
    'description': 'SR-IOV VF inventory and allocator for live migration',
}
