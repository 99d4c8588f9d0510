-- Sessions belong to whoever started them (SPEC section 12): only a hash of the session's resume
-- secret is kept; user_verified says whether its userId was proven (userHash) or only claimed.
ALTER TABLE sessions ADD COLUMN secret_hash TEXT,
                     ADD COLUMN user_verified BOOLEAN NOT NULL DEFAULT false;
-- 'secret': resuming a session with the publishable key needs its secret (or a visitor token for
-- it); 'session_id': its id alone will do, for widgets that cannot keep a secret.
ALTER TABLE tenants ADD COLUMN session_resume TEXT NOT NULL DEFAULT 'secret'
    CHECK (session_resume IN ('secret', 'session_id'));
