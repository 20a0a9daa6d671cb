"""The HTML of ``/learn``: the login form and the curator's page shell (its data comes from the JSON API)."""

from html import escape

from .strategies import STRATEGIES

HEAD = ('<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex"><link rel="icon" href="data:,">'
        '<link rel="stylesheet" href="/static/style.css"><link rel="stylesheet" href="/static/learn.css">')


def login_page(csrf: str, message: str = "", configured: bool = True) -> str:
    """The login form; ``message``: why the last attempt failed (plain text)."""
    note = "" if configured else ('<p class="hint">No curator password is set on this server '
                                  '(CURATOR_PASSWORD, CURATOR_PASSWORD_FILE or CURATOR_PASSWORD_HASH).</p>')
    error = f'<p class="learn-error" role="alert">{escape(message)}</p>' if message else ""
    return (f"{HEAD}<title>Curator login · xai-live</title></head><body class=\"learn\">"
            '<main class="learn-login panel"><h1>Curator login</h1>'
            f"{note}{error}"
            '<form method="post" action="/learn/login">'
            f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
            '<label>Password <input type="password" name="password" autocomplete="current-password" required '
            'autofocus></label> <button type="submit">Log in</button></form></main></body></html>')


def learn_page(csrf: str) -> str:
    """The curator's page: filled by ``static/learn.js`` from ``/learn/api/…``."""
    options = "".join(f'<option value="{name}">{escape(name.replace("_", " "))}</option>' for name in STRATEGIES)
    return (f'{HEAD}<meta name="csrf-token" content="{escape(csrf)}">'
            '<title>Teach the network · curator · xai-live</title>'
            '<script type="module" src="/static/learn.js"></script></head><body class="learn">'
            '<header class="topbar"><h1>Teach the network: curator</h1>'
            '<form method="post" action="/learn/logout">'
            f'<input type="hidden" name="csrf" value="{escape(csrf)}"><button type="submit">Log out</button>'
            '</form></header><main class="learn-layout">'
            '<section class="panel" aria-labelledby="propose-title"><h2 id="propose-title">Proposed next</h2>'
            f'<label>Query strategy <select id="strategy" data-part="strategy">{options}</select></label> '
            '<label>How many <input id="count" type="number" min="1" max="50" value="8"></label>'
            '<p id="pool-summary" class="hint" role="status"></p>'
            '<ol id="proposed" class="learn-proposed" data-part="proposed"></ol></section>'
            '<section class="panel" aria-labelledby="detail-title"><h2 id="detail-title">Why the network is unsure'
            '</h2><div id="detail" data-part="detail"><p class="hint">Pick a proposed drawing.</p></div></section>'
            '<section class="panel" aria-labelledby="map-title"><h2 id="map-title">The pool, mapped</h2>'
            '<p class="hint">Each dot a drawing, placed by the first two principal components of its hidden '
            'activations, coloured by uncertainty (1 − max p: light sure, dark unsure).</p>'
            '<div id="map" data-part="pool-map"></div></section>'
            '<section class="panel learn-rounds" aria-labelledby="rounds-title"><h2 id="rounds-title">Training rounds'
            '</h2><p class="hint">Run a round with <code>python -m model_store learn</code>; each promoted version '
            'of the serving model, newest first, with what its round measured on the held-out sets.</p>'
            '<p><button id="start-round" type="button" data-part="start-round">Run a training round now</button> '
            '<label><input id="accept-proposed" type="checkbox"> count unreviewed proposals as confirmed</label></p>'
            '<p id="round-status" class="hint" role="status"></p>'
            '<div id="rounds" data-part="rounds"></div></section></main></body></html>')
