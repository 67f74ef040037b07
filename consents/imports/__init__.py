"""Bulk import of historical consents into the ledger.

`bulk` holds the rules (parsing, checking) and the writer the workbench uses; `file_import` the command's
two paths (COPY on PostgreSQL, portable elsewhere) under the same rules; `resources` the
django-import-export resource and `admin` the workbench's import screen built on them.
"""
