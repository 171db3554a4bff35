"""service: the FastAPI layer only (routes, request parsing, problem+json, API metrics); the job domain is
`cmet_jobs`."""
