-- Postern's account directory: one schema, three dialects (sqlite, postgres, mysql).
-- Types are kept to what decodes on every backend: VARCHAR, INTEGER flags, BIGINT epoch seconds.

CREATE TABLE domains (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name VARCHAR(253) NOT NULL UNIQUE,
    created BIGINT NOT NULL
);

CREATE TABLE accounts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    address VARCHAR(320) NOT NULL UNIQUE,
    domain VARCHAR(253) NOT NULL,
    password VARCHAR(512) NOT NULL,
    quota_bytes BIGINT NOT NULL DEFAULT 0,
    enabled INTEGER NOT NULL DEFAULT 1,
    created BIGINT NOT NULL
);
CREATE INDEX accounts_domain ON accounts (domain);

-- source is an address or '@domain' (catch-all); one row per destination.
CREATE TABLE aliases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source VARCHAR(320) NOT NULL,
    destination VARCHAR(320) NOT NULL,
    domain VARCHAR(253) NOT NULL,
    created BIGINT NOT NULL,
    UNIQUE (source, destination)
);
CREATE INDEX aliases_domain ON aliases (domain);

-- login (an account address) may send as address (an address or '@domain').
CREATE TABLE sender_logins (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    address VARCHAR(320) NOT NULL,
    login VARCHAR(320) NOT NULL,
    created BIGINT NOT NULL,
    UNIQUE (address, login)
);
CREATE INDEX sender_logins_login ON sender_logins (login);

-- Brute-force defence, shared by every authd on this database.
-- scope is 'ip' or 'account'; times are epoch seconds.
CREATE TABLE auth_failures (
    scope VARCHAR(16) NOT NULL,
    subject VARCHAR(320) NOT NULL,
    failures INTEGER NOT NULL,
    first_failure BIGINT NOT NULL,
    last_failure BIGINT NOT NULL,
    locked_until BIGINT NOT NULL DEFAULT 0,
    lockouts INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, subject)
);
