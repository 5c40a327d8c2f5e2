"""Connection pages, one module per capability: the wizard, the OAuth
redirect and callback, the org page and its connection actions, progress
partials, and sign-in."""
