-- Tokens issued before a password change stop working: auth compares their `iat` with this.
ALTER TABLE users ADD COLUMN password_changed_at TIMESTAMPTZ;
ALTER TABLE agents ADD COLUMN password_changed_at TIMESTAMPTZ;
