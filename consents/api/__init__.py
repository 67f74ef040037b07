"""The consent API for other services, under /api/v1/ (docs/consent-api.md).

`views` (the endpoints), `keys` (API keys), `openapi` (the document it serves), `contract` (the limits both
state). Dependencies run one way: views -> openapi -> contract, views -> keys; nothing here imports views.
"""
