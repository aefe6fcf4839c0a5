-- One snapshot row per aggregate, keyed by the aggregate alone: appends upsert it in the same statement as
-- the events (commands/src/store.rs). postgres-es's key included last_sequence, which every append
-- changes, so each update was a new index entry in every index (no HOT update) and lookups walked the
-- dead ones. With the key on the aggregate, an update touches no indexed column and stays on its page.
ALTER TABLE snapshots DROP CONSTRAINT snapshots_pkey;
ALTER TABLE snapshots ADD PRIMARY KEY (aggregate_type, aggregate_id);
ALTER TABLE snapshots SET (fillfactor = 50);
ALTER TABLE users_view SET (fillfactor = 70);
