# vfpool release notes build configuration (sphinx-build -W).

extensions = ['reno.sphinxext']

project = 'vfpool Release Notes'
copyright = 'vfpool developers'
master_doc = 'index'
source_suffix = {'.rst': 'restructuredtext'}
exclude_patterns = ['_build']
html_theme = 'alabaster'
html_static_path = []
