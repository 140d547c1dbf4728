-- Custom node types (NodeType, ClusterNodeType) in the mirror.
-- A ClusterNodeType belongs to no workspace.
ALTER TABLE custom_nodes ALTER COLUMN workspace_id DROP NOT NULL;
-- One installation of a type name per workspace: the upserts' key (a
-- namespace's NodeType shadows a ClusterNodeType of the same name).
CREATE UNIQUE INDEX installed_nodes_workspace_name_key ON installed_nodes (workspace_id, name);
