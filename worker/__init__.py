"""worker: the Celery layer only (tasks, the process's models and batcher, guards, sweeper, devices, metrics);
the job domain is `cmet_jobs`."""
