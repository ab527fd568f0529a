-- Where a dispatched build runs (a process id, an ECS task ARN), to stop it or check on it.
ALTER TABLE deployments ADD COLUMN execution TEXT;
