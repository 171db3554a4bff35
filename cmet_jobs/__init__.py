"""The job domain shared by the API (`service/`) and the workers (`worker/`).

Records and their state machine, the wire schemas, storage, webhooks and their signing, the
network guard, queue names and the settings: everything about a job that is neither HTTP nor
Celery. It imports `cmet_core` for the edit options and never imports `service` or `worker`.
"""
