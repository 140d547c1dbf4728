-- What the mirror's idempotent upserts need beyond the seed.
--
-- Every mirrored row is keyed by a Kubernetes UID or by a UUIDv5 derived
-- from a natural key (see operator/src/mirror/ids.rs); the unique keys below
-- are the natural keys themselves, so a replayed event hits the same row.

-- The operator itself: owner of every workspace it creates (workspaces.owner_id
-- is NOT NULL) and author of the rows it writes. It cannot log in.
INSERT INTO users (id, email, name, password_hash, is_active, is_verified, is_admin)
VALUES ('5111ce00-0000-4000-8000-000000000001', 'operator@sluice.invalid',
        'sluice-operator', '!', TRUE, TRUE, FALSE)
ON CONFLICT (id) DO NOTHING;

-- One row per attempt of a node; forEach items are node ids `name[index]`.
ALTER TABLE node_executions ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0;
-- What sanitising did to input_data/output_data/error (escaped NULs, caps).
ALTER TABLE node_executions ADD COLUMN payload_notes JSONB;
CREATE UNIQUE INDEX node_executions_execution_node_attempt_key
    ON node_executions (execution_id, node_id, attempt);

-- The runner numbers the log lines of a run; (execution_id, seq) is the
-- idempotency key of a line.
ALTER TABLE execution_logs ADD COLUMN seq BIGINT;
CREATE UNIQUE INDEX execution_logs_execution_seq_key
    ON execution_logs (execution_id, seq);
CREATE INDEX idx_execution_logs_node_execution ON execution_logs (node_execution_id);

-- At most one queue entry per run.
CREATE UNIQUE INDEX execution_queue_execution_key ON execution_queue (execution_id);

-- The node catalog is keyed by name and version.
CREATE UNIQUE INDEX node_definitions_name_version_key ON node_definitions (name, version);

-- A workflow's spec.env entries belong to that workflow (NULL: workspace-wide).
ALTER TABLE environment_variables
    ADD COLUMN workflow_id UUID REFERENCES workflows(id) ON DELETE CASCADE;
CREATE INDEX idx_environment_variables_workflow ON environment_variables (workflow_id);

-- The Schedule object's name (the seed keeps only the cron and time zone).
ALTER TABLE workflow_schedules ADD COLUMN name VARCHAR(255);

-- DECIMAL(10,2) overflows for an average above ~27.7 hours.
ALTER TABLE workflow_metrics ALTER COLUMN avg_duration_ms TYPE DECIMAL(15,2);
ALTER TABLE node_metrics ALTER COLUMN avg_duration_ms TYPE DECIMAL(15,2);

-- One usage row per workspace, metric and day.
CREATE UNIQUE INDEX usage_records_workspace_metric_time_key
    ON usage_records (workspace_id, metric, timestamp);

-- Looking up the history of one object.
CREATE INDEX idx_audit_logs_resource ON audit_logs (resource_type, resource_id);

-- Metric recomputation scans executions by workflow and day.
CREATE INDEX idx_workflow_executions_workflow_started
    ON workflow_executions (workflow_id, started_at);
