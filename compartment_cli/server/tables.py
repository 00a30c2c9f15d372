"""The control plane's SQLite tables, as ``Store`` creates them on first start.

``CREATE ... IF NOT EXISTS``: an existing data dir keeps its rows. The event
log's ids come from AUTOINCREMENT, so an id is never reused, even after the
log's oldest events are pruned.
"""

SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS environments (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id),
    name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (project_id, name)
);
CREATE TABLE IF NOT EXISTS artifacts (
    digest TEXT PRIMARY KEY,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cleaned_artifacts (digest TEXT PRIMARY KEY, cleaned_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    project_id TEXT NOT NULL REFERENCES projects(id),
    environment_id TEXT NOT NULL REFERENCES environments(id),
    source_environment_id TEXT REFERENCES environments(id),
    move_key TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    completed_at TEXT
);
CREATE TABLE IF NOT EXISTS deployments (
    id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(id),
    environment_id TEXT NOT NULL REFERENCES environments(id),
    service_name TEXT NOT NULL,
    artifact_digest TEXT NOT NULL REFERENCES artifacts(digest),
    config TEXT NOT NULL,
    status TEXT NOT NULL,
    promotion_stage TEXT NOT NULL,
    health TEXT NOT NULL,
    is_active INTEGER NOT NULL DEFAULT 0,
    failure_message TEXT,
    created_at TEXT NOT NULL,
    completed_at TEXT,
    previous_id TEXT
);
CREATE INDEX IF NOT EXISTS deployments_by_env ON deployments (environment_id, created_at);
CREATE INDEX IF NOT EXISTS deployments_by_run ON deployments (run_id);
CREATE TABLE IF NOT EXISTS routes (
    environment_id TEXT NOT NULL REFERENCES environments(id),
    service_name TEXT NOT NULL,
    port INTEGER NOT NULL UNIQUE,
    PRIMARY KEY (environment_id, service_name)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_name TEXT NOT NULL,
    environment_name TEXT NOT NULL,
    type TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_env ON events (project_name, environment_name, id);
"""
