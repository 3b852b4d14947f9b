-- Cluster-wide smtpd policy state (issue 14), written by authd's socketmap maps `sendlimit`
-- and `greylist` so that every front of a cluster counts and greylists alike. Times are
-- epoch seconds; rows expire (authd sweeps them every few minutes).

-- Authenticated users who asked to send in the last hour: one row each, the lock every writer takes
-- (UPDATE) before it reads and changes that user's counts.
CREATE TABLE send_users (
    subject VARCHAR(320) NOT NULL PRIMARY KEY,
    last_seen BIGINT NOT NULL
);
CREATE INDEX send_users_last_seen ON send_users (last_seen);

-- Messages per user and minute (epoch seconds / 60): the hour is a sliding window of at
-- most 60 rows per user.
CREATE TABLE send_counts (
    subject VARCHAR(320) NOT NULL,
    minute BIGINT NOT NULL,
    messages INTEGER NOT NULL,
    PRIMARY KEY (subject, minute)
);
CREATE INDEX send_counts_minute ON send_counts (minute);

-- Greylisting triplets ("network|sender|recipient"), as smtpd's <state_dir>/greylist holds
-- them; expires = when the row is forgotten (first + retry window while deferred, last +
-- allow once passed).
CREATE TABLE greylist_triplets (
    triplet VARCHAR(600) NOT NULL PRIMARY KEY,
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    passed INTEGER NOT NULL DEFAULT 0,
    expires BIGINT NOT NULL
);
CREATE INDEX greylist_triplets_expires ON greylist_triplets (expires);
