"""The consent a visitor gives when teaching, word for word as the page shows it (static/teach.js,
``CONSENT_TEXT``; a test keeps the two equal).  The export's datasheet quotes it."""

CONSENT_TEXT = ("Store this drawing so the network can learn from it. Stored: the strokes you drew, "
                "the digit you choose and what the network read. Nothing about you: no name, no address, no cookie. "
                "A curator checks every drawing before a model learns from it.")
