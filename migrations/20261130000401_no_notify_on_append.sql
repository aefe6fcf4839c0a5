-- The relay is woken by a NATS message from the process that appended (workers/src/relay.rs) and polls.
-- NOTIFY took a database-wide lock from before commit until after the WAL flush of every appending
-- transaction, which serialised commits (no group commit) and capped the command rate.
DROP TRIGGER IF EXISTS events_appended ON events;
DROP FUNCTION IF EXISTS notify_events_appended();
