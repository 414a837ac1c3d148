-- A connection stores credentials only when its marketplace takes any: the
-- demo marketplace takes none, and its connections used to store an
-- encrypted empty object, which the API then reported as credentials
-- (`has_credentials: true`). NULL now means "none stored"; the demo
-- credentials type has no fields, so every existing demo token held `{}`.
ALTER TABLE marketplace_connections ALTER COLUMN credentials_encrypted DROP NOT NULL;
UPDATE marketplace_connections SET credentials_encrypted = NULL WHERE kind = 'demo';
-- Every other marketplace needs its credentials to sync.
ALTER TABLE marketplace_connections ADD CONSTRAINT marketplace_connections_credentials_check
    CHECK (kind = 'demo' OR credentials_encrypted IS NOT NULL);
