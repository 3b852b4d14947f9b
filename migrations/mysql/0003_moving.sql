-- Cluster: the node an account is being moved to (`mailctl user move`); empty = not moving.
-- While set, every node answers the account with a temporary failure.
ALTER TABLE accounts ADD COLUMN moving_to VARCHAR(253) NOT NULL DEFAULT '';
