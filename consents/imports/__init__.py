"""Bulk import of historical consents into the ledger: the workbench's import screen (`admin`) and the
django-import-export resource behind it (`resources`). The engine they share, `consents.bulk` (parsing,
checking, the ledger writes) and `consents.importing` (the command's COPY path), stays beside the ledger
for now: it is being tuned for the benchmarks, and moves here once that work has landed.
"""
