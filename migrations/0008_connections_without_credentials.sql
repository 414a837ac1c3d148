-- A connection stores credentials only when its marketplace takes any: the
-- demo marketplace takes none, and its connections used to store an
-- encrypted empty object, which the API then reported as credentials
-- (`has_credentials: true`). New demo connections store NULL. Rows written
-- before keep their (empty) token, so a release still running during a
-- rolling deploy reads every existing row as before; the API reports
-- `has_credentials` false for every demo connection.
ALTER TABLE marketplace_connections ALTER COLUMN credentials_encrypted DROP NOT NULL;
-- Every other marketplace needs its credentials to sync.
ALTER TABLE marketplace_connections ADD CONSTRAINT marketplace_connections_credentials_check
    CHECK (kind = 'demo' OR credentials_encrypted IS NOT NULL);
