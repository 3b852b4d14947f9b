-- Cluster: the node an account lives on ([proxy]); empty = this node.
ALTER TABLE accounts ADD COLUMN host VARCHAR(253) NOT NULL DEFAULT '';
