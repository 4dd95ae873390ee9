"""`mmtools serve`: a warm process that keeps models and indexes loaded and answers other commands.

Two doors into the same engine: a Unix socket private to the user (used by `mmtools search` and
`mmtools embed-texts` automatically when a server runs), and an optional HTTP API (FastAPI + uvicorn) for
web apps. Importing this package is cheap: the client side (``paths``, ``protocol``, ``client``) uses the
standard library and orjson only, so a CLI command talking to a server never loads torch or numpy.
"""
