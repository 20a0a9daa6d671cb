"""The curator's page ``/learn`` (docs/curation.md): login, the pool, query strategies, moderation.

``auth`` (password hash, signed session cookie, CSRF, failed-login limit),
``strategies`` (which drawings to look at next), ``pool`` (the readings,
embeddings and contrast maps, computed on the engine threads), ``routes``
(the HTTP endpoints), ``pages`` (the HTML).
"""
