#    Licensed under the Apache License, Version 2.0 (the "License"); you may
#    not use this file except in compliance with the License. You may obtain
#    a copy of the License at
#
#         http://www.apache.org/licenses/LICENSE-2.0
#
#    Unless required by applicable law or agreed to in writing, software
#    distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
#    WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
#    License for the specific language governing permissions and limitations
#    under the License.

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
