-- Every node reads the sessions signed out in the last day when it starts (their access tokens are
-- refused): a small partial index, so that read does not scan the whole event store.
CREATE INDEX events_session_ended ON events (recorded_at)
    WHERE aggregate_type = 'User' AND event_type = 'SessionEnded';
