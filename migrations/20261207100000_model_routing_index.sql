-- Which model answers is read from the Model aggregate's events (default model, aliases, the version deployed
-- before: bonsai_commands::routing); this index keeps those reads to the few such events.
CREATE INDEX events_model_routing ON events (event_type, global_position)
    WHERE aggregate_type = 'Model' AND event_type IN ('ModelMadeDefault', 'ModelAliasSet', 'ModelDeployed');
