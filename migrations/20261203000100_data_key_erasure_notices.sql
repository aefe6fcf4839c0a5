-- Every node caches the data keys it has loaded (domain/src/data_keys.rs). When a key is erased, whichever way
-- (a deleted question, a cleared history, `bonsai make-erasable`, by hand), PostgreSQL tells every node at
-- commit: the channel's payload is the key's id, and each node forgets the key at once
-- (bonsai_workers::follow_key_erasures). A node that may have missed a notice reloads all its keys.
CREATE FUNCTION notify_data_key_erased() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('bonsai_data_keys_erased', NEW.id::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER data_key_erased
    AFTER UPDATE OF key ON data_keys
    FOR EACH ROW WHEN (OLD.key IS NOT NULL AND NEW.key IS NULL)
    EXECUTE FUNCTION notify_data_key_erased();
