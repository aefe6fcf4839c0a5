-- Data keys of erasable values (crypto-shredding, see domain/src/data_keys.rs): the text of each question and
-- of its answer is sealed with a key of its own wherever it is stored (events, snapshots, the NATS stream).
-- Deleting the question erases the key, so every copy becomes unreadable while the events stay.
CREATE TABLE data_keys (
    id uuid PRIMARY KEY,              -- the question's id
    owner text NOT NULL,              -- the record it belongs to: QaSession/<id>
    key text,                         -- base64 of 32 bytes, sealed with the key ring (DataKey/<id>) when one is set; NULL once erased
    created_at timestamptz NOT NULL DEFAULT now(),
    erased_at timestamptz,
    CHECK ((key IS NULL) = (erased_at IS NOT NULL))
);
CREATE INDEX data_keys_owner ON data_keys (owner);
