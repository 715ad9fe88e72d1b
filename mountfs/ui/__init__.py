"""``dsmount ui``: a local web page over the same catalogue and store as the CLI.

``queries`` answers in plain dicts (the JSON API's bodies), ``server`` serves them under
``/api`` and mounts ``pages`` (the HTML shells and their static assets) beside them.
"""
