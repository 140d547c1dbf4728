-- The console's runs list and run detail (operator/src/console/runs.rs).
--
-- A run is found by its WorkflowRun name within its namespace; the mirror
-- writes the name with the row (older rows keep NULL and are listed, but
-- have no detail page).
ALTER TABLE workflow_executions ADD COLUMN name VARCHAR(253);
CREATE INDEX idx_workflow_executions_name ON workflow_executions (name);

-- The runs list is paginated by the key (created_at, id), newest first:
-- unfiltered, by workflow and by status, each reads one index range in
-- order and stops at the page size.
CREATE INDEX idx_workflow_executions_created_id
    ON workflow_executions (created_at DESC, id DESC);
CREATE INDEX idx_workflow_executions_workflow_created_id
    ON workflow_executions (workflow_id, created_at DESC, id DESC);
CREATE INDEX idx_workflow_executions_status_created_id
    ON workflow_executions (status, created_at DESC, id DESC);
