-- Per-project HSTS: when set, HTTPS answers for the project's hosts carry
-- `Strict-Transport-Security`. Integers for booleans, as in every other table, so that one
-- query text serves both backends.
ALTER TABLE projects ADD COLUMN hsts BIGINT NOT NULL DEFAULT 0;
